"""``nqs sweep``: one VMC run per value of one coupling, with a final table (``nqs_core.sweep``).

The swept coupling is given as a range, ``--h 0.5:1.5:5`` or ``--scan h=0.5:1.5:5`` (START:STOP:N, N
evenly spaced values with both ends), or a list ``--J2 0,0.3,0.5``; every other flag is a run setting
as for ``nqs run`` (same schema, same checks; ``--sweep`` stays the Metropolis sub-steps setting).  ``--json`` prints one ``{"point": {...}}`` per
point as it finishes and a last ``{"sweep": {..., "table": [...]}}``; otherwise a line per point and
the table.  Exit codes: 0 done, 1 a point diverged or failed its verdict, 2 invalid settings or range
(one line naming the setting and what is allowed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from typing import Any

from nqs_core.cli.run import flag_kwargs
from nqs_core.devices import start_devices
from nqs_core.hamiltonians import COUPLINGS
from nqs_core.presets import PRESETS, get_preset
from nqs_core.settings import RunSettings, SettingsError, schema

COUPLING_NAMES = tuple(sorted({c for names in COUPLINGS.values() for c in names}))
EPILOG = ("Exit codes: 0 done, 1 a point diverged or failed, 2 invalid settings or range, 130 interrupted. "
          "Every point starts from --seed; the points share one compiled step (the couplings are run-time values).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every run setting as a flag (the couplings also accept a range), plus --scan and output options."""
    parser.epilog = EPILOG
    parser.add_argument("--scan", metavar="NAME=RANGE", default=None,
                        help="the coupling to sweep and its values: START:STOP:N or V1,V2,… (e.g. h=0.5:1.5:5, "
                             "J2=0:1:6); the same as --NAME RANGE")
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="start from this preset's settings; other flags override them")
    for setting in schema().values():
        if setting.name in COUPLING_NAMES:
            parser.add_argument(setting.flag, dest=setting.name, default=argparse.SUPPRESS,
                                metavar="VALUE|START:STOP:N",
                                help=setting.help_text().replace("%", "%%") + "; a range or list sweeps it")
        else:
            parser.add_argument(setting.flag, **flag_kwargs(setting))
    parser.add_argument("--json", action="store_true", help="one {\"point\": …} per point, then {\"sweep\": …}")
    parser.add_argument("--history", action="store_true", help="with --json: each point's per-step records too")
    parser.add_argument("--no-reference", action="store_true", help="do not look up reference energies")
    parser.add_argument("--dmrg", action="store_true",
                        help="run DMRG for points beyond ED with no stored reference (chains; slow)")
    parser.add_argument("--no-exact", action="store_true", help="no ED state per point (fidelity, exact observables)")
    parser.add_argument("--quiet", action="store_true", help="only the table")


def _is_range(text: str) -> bool:
    return ":" in text or "," in text


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SettingsError(name, f"{name} must be a number or, to sweep it, a range START:STOP:N or a list "
                                  f"V1,V2,…; got {text!r}") from None


def sweep_from_args(args: argparse.Namespace) -> Any:
    """The validated :class:`nqs_core.sweep.Sweep` of the flags (SettingsError naming the setting)."""
    from nqs_core.sweep import make_sweep

    explicit = {name: getattr(args, name) for name in schema() if hasattr(args, name)}
    ranges: dict[str, str] = {}
    for name in COUPLING_NAMES:
        if name in explicit:
            text = str(explicit.pop(name))
            if _is_range(text):
                ranges[name] = text
            else:
                explicit[name] = None if text.strip().lower() == "none" else _number(name, text)
    if args.scan is not None:
        name, eq, text = args.scan.partition("=")
        if not eq or not name.strip() or not text.strip():
            raise SettingsError("scan", f"scan must be NAME=START:STOP:N or NAME=V1,V2,… (e.g. h=0.5:1.5:5); "
                                        f"got {args.scan!r}")
        ranges[name.strip()] = text.strip()
    base = get_preset(args.preset).settings() if args.preset else RunSettings()
    settings = base.replace(**explicit)
    if len(ranges) != 1:
        names = ", ".join(COUPLINGS.get(settings.hamiltonian, ()))
        got = "none" if not ranges else " and ".join(sorted(ranges))
        raise SettingsError("scan", f"nqs sweep needs exactly one coupling given as a range, e.g. --h 0.5:1.5:5 or "
                                    f"--scan h=0.5:1.5:5 (couplings of {settings.hamiltonian}: {names}); got {got}")
    (name, text), = ranges.items()
    return make_sweep(settings, name, text)


def _fmt(x: Any, spec: str) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def table_lines(result: Any) -> list[str]:
    """The final table as text lines (one per point; columns by what the model measures)."""
    c = result.sweep.coupling
    ising = result.sweep.settings.hamiltonian == "tfim"
    extra = "  |m| (exact)        σˣ (exact)" if ising else "  S(q*) (exact)   q*/π    Marshall (exact)"
    lines = [f"{c:>8}  {'E/N ± δ':>22}  {'E_ref/N':>11} {'method':<8} {'rel.err':>8}  {'V-score':>8}  "
             f"{'fidelity':>8}{extra}  verdict"]
    for row in result.table():
        head = (f"{row['value']:>8.4g}  {_fmt(row['energy_per_site'], '11.6f')} ± {_fmt(row['error_per_site'], '<8.1e')}  "
                f"{_fmt(row['reference_energy_per_site'], '11.6f')} {str(row['reference_method'] or '—'):<8} "
                f"{_fmt(row['relative_error'], '8.1e')}  {_fmt(row['v_score'], '8.1e')}  {_fmt(row['fidelity'], '8.5f')}")
        if ising:
            tail = (f"  {_fmt(row.get('magnetisation'), '.3f')} ({_fmt(row.get('magnetisation_exact'), '.3f')})"
                    f"      {_fmt(row.get('sigma_x'), '.3f')} ({_fmt(row.get('sigma_x_exact'), '.3f')})")
        else:
            q = row.get("s_q_peak_q")
            tail = (f"  {_fmt(row.get('s_q_peak'), '.3f')} ({_fmt(row.get('s_q_peak_exact'), '.3f')})"
                    f"  {','.join(f'{x:g}' for x in q) if q else '—':>6}  {_fmt(row.get('marshall_agreement'), '.3f')} "
                    f"({_fmt(row.get('marshall_agreement_exact'), '.3f')})")
        lines.append(head + tail + f"  {row['verdict']}")
    return lines


def event_printer(args: argparse.Namespace, started: list[bool]) -> Any:
    """The sweep's callback: a JSON line or a readable line per finished point (stderr: progress)."""
    from nqs_core.driver import json_safe  # local: the engine loads only when a sweep starts

    def on_event(event: Any) -> None:
        if event.kind == "start":
            started.append(True)
            if not args.quiet:
                print(f"[point {event.index + 1}] {event.message}: running", file=sys.stderr, flush=True)
        elif event.kind == "point":
            p = event.point
            if args.json:
                print(json.dumps({"point": json_safe(p.to_dict(history=args.history))}, ensure_ascii=False), flush=True)
            elif not args.quiet:
                rel = f";  relative error {p.relative_error:.2e} ({p.reference_method})" if p.relative_error is not None else ""
                print(f"{p.coupling} = {p.value:g}:  E/N = {p.energy_per_site:.6f} ± {p.error_per_site:.1e}{rel};  "
                      f"V-score {_fmt(p.v_score, '.2e')};  {p.steps} steps in {p.seconds:.1f} s;  {p.verdict}",
                      flush=True)

    return on_event


def _exit_code(result: Any) -> int:
    if result.phase == "stopped":
        return 130
    bad = [p for p in result.points if p.phase == "diverged" or p.verdict == "failed"]
    for p in bad:
        print(f"nqs sweep: {p.coupling} = {p.value:g}: {p.warnings[0] if p.warnings else p.message}", file=sys.stderr)
    return 1 if bad else 0


def main(args: argparse.Namespace) -> int:
    """Run the sweep of the flags in ``args``; see the module docstring for output and exit codes."""
    start_devices()
    sweep = sweep_from_args(args)

    from nqs_core.driver import json_safe
    from nqs_core.events import RunControl
    from nqs_core.sweep import Options, run_sweep

    started: list[bool] = []
    control = RunControl()
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum: int, frame: Any) -> None:
        control.stop()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, interrupt)
    options = Options(reference=not args.no_reference, compute_dmrg=args.dmrg, exact=not args.no_exact)
    try:
        result = run_sweep(sweep, event_printer(args, started), control, options)
    except ValueError as err:
        if started:
            raise RuntimeError(f"nqs sweep failed after it started: {err}") from err
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        print(json.dumps({"sweep": json_safe(result.to_dict())}, ensure_ascii=False), flush=True)
    else:
        s = result.points[0] if result.points else None
        print(f"\n{sweep.settings.hamiltonian} sweep of {sweep.coupling}; convention: {s.convention if s else '—'}")
        print("\n".join(table_lines(result)))
        print(f"{len(result.points)} points in {result.seconds:.1f} s (compilation {result.compile_seconds:.1f} s)")
    return _exit_code(result)
