"""``nqs run``: a variational Monte Carlo run from the command line.

Every :class:`~nqs_core.settings.RunSettings` field is a flag (``diag_shift`` → ``--diag-shift``),
generated from the settings schema (help, choices, bounds, defaults); flags left out take
RunSettings' defaults, the ``--preset``'s settings, or, with ``--resume``, the checkpoint's.
``--json`` prints one JSON object per step and a last ``{"summary": {...}}``; otherwise a
progress line every few steps and a summary that names the energy convention.  Ctrl-C stops the run cleanly (checkpoint
written, summary printed, exit code 130).  Exit codes: 0 done, 1 diverged or failed (the verdict
of ``nqs_core.verdict``, reason on stderr), 2 invalid settings, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from typing import Any

from nqs_core.checkpoint import load_checkpoint
from nqs_core.devices import start_devices
from nqs_core.presets import PRESETS, get_preset
from nqs_core.settings import RunSettings, Setting, schema

# at the end of a run, wait at most this long for the reference energy (DMRG may still be running)
REFERENCE_TIMEOUT = 300.0
EPILOG = (
    "Exit codes: 0 done, 1 diverged, 2 invalid settings, 130 interrupted (Ctrl-C stops cleanly). "
    "Environment: NQS_CACHE_DIR (compiled programs go to $NQS_CACHE_DIR/jax, default ~/.cache/nqs-lab/jax), "
    "NQS_COMPILE_CACHE=0 (no persistent compilation cache), NQS_DISTRIBUTED=1 (jax.distributed.initialize(); "
    "NQS_COORDINATOR_ADDRESS, NQS_NUM_PROCESSES, NQS_PROCESS_ID), XLA_FLAGS=--xla_force_host_platform_device_count=N "
    "(N CPU devices). Chains are split over all visible devices."
)


def _k(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.replace(" ", "").split(",") if x != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"k must be numbers separated by commas (units of π); got {text!r}")


FLAG_TYPES: dict[str, Any] = {"int": int, "float": float, "k": _k}


def _or_none(convert: Any) -> Any:
    """``convert``, but the word ``none`` gives None (an optional setting back to its default of none)."""

    def parse(text: str) -> Any:
        return None if text.strip().lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its error message
    return parse


def flag_kwargs(setting: Setting) -> dict[str, Any]:
    """``add_argument`` keywords of one setting, all from the schema (help shows allowed values and default)."""
    kwargs: dict[str, Any] = {"dest": setting.name, "default": argparse.SUPPRESS,
                              "help": setting.help_text().replace("%", "%%")}
    if setting.spec.choices is not None:
        kwargs["choices"] = setting.spec.choices
    else:
        convert = FLAG_TYPES[setting.kind]
        kwargs["type"] = _or_none(convert) if setting.optional else convert
        kwargs["metavar"] = "KX[,KY]" if setting.kind == "k" else setting.name.upper()
    return kwargs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per RunSettings field, plus --preset, --checkpoint, --resume, --json and output options."""
    parser.epilog = EPILOG
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="start from this preset's settings (nqs presets lists them); other flags override them")
    for setting in schema().values():
        parser.add_argument(setting.flag, **flag_kwargs(setting))
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="write the run (parameters, optimizer and sampler state, history) to this file")
    parser.add_argument("--resume", metavar="PATH", default=None,
                        help="continue from this checkpoint; flags left out take the checkpoint's settings, and only the "
                             "run's length, budget, targets, evaluation, trust region and point-group projection "
                             "may differ from them")
    parser.add_argument("--json", action="store_true", help="one JSON object per step, then {\"summary\": …}")
    parser.add_argument("--every", type=int, default=None, metavar="N",
                        help="progress line every N steps (default: about 30 lines per run)")
    parser.add_argument("--no-reference", action="store_true", help="do not look up a reference energy")
    parser.add_argument("--quiet", action="store_true", help="only the summary")


def settings_from_args(args: argparse.Namespace) -> RunSettings:
    """RunSettings from the explicit flags over the defaults, the preset's or the resumed checkpoint's settings."""
    explicit = {name: getattr(args, name) for name in schema() if hasattr(args, name)}
    preset, resume = getattr(args, "preset", None), getattr(args, "resume", None)
    if preset and resume:
        raise ValueError("--preset and --resume both choose the starting settings; give one")
    if resume:
        base = RunSettings.from_dict(load_checkpoint(resume).settings)
    else:
        base = get_preset(preset).settings() if preset else RunSettings()
    return base.replace(**explicit).validate()


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def print_summary(s: dict[str, Any], out: Any = None) -> None:
    """The human-readable summary of a run."""
    out = out or sys.stdout
    print("", file=out)
    if s.get("system"):
        print(s["system"], file=out)
    print(f"convention: {s.get('convention')}", file=out)
    print(f"final energy  E = {_fmt(s['final_energy'], '.6f')} ± {_fmt(s['final_error'], '.6f')}  "
          f"(E/N = {_fmt(s['final_energy_per_site'], '.6f')}; {s['final_source']})", file=out)
    if s.get("reference_energy") is not None:
        print(f"reference     E = {s['reference_energy']:.6f}  ({s['reference_method']}: {s.get('reference_detail')});  "
              f"relative error {_fmt(s['relative_error'], '.2e')}", file=out)
    else:
        print(f"reference: none ({s.get('reference_note')})", file=out)
    if s.get("exact_energy") is not None:
        print(f"exact energy of the final state ⟨ψ|H|ψ⟩/⟨ψ|ψ⟩ = {s['exact_energy']:.8f} (summed over the basis);  "
              f"relative error {_fmt(s.get('exact_relative_error'), '.2e')}", file=out)
    _print_sector(s, out)
    print(f"V-score {_fmt(s['v_score'], '.3e')};  {s['steps']} steps at {_fmt(s['iterations_per_second'], '.1f')} it/s "
          f"(compilation excluded; setup and compilation {s['compile_seconds']:.1f} s);  wall {s['wall_seconds']:.1f} s",
          file=out)
    precision = f" in {s['precision']}" if s.get("precision") else ""  # exports before the field have none
    print(f"{s['parameters']} parameters{precision};  {s['devices']} {s['device_kind']} device{'s' if s['devices'] != 1 else ''};"
          f"  {s['message']}" + (f";  checkpoint {s['checkpoint']}" if s.get("checkpoint") else ""), file=out)
    for note in s.get("restarts") or []:
        print(f"note: {note}", file=out)
    if s.get("verdict"):
        print(f"verdict: {s['verdict']}" + "".join(f"\n  - {w}" for w in s.get("warnings") or []), file=out)


def _k_text(k: list[float] | None) -> str:
    return "none" if k is None else ",".join(f"{x:g}" for x in k) + " (units of π)"


def _print_sector(s: dict[str, Any], out: Any) -> None:
    """Momentum sector and sign structure lines of the summary (only what was measured)."""
    parts = []
    if s.get("momentum") is not None or s.get("translation_eigenvalue") is not None:
        parts.append(f"momentum k = {_k_text(s.get('momentum'))}")
    if s.get("translation_eigenvalue") is not None:
        re, im = s["translation_eigenvalue"]
        parts.append(f"translation eigenvalue ⟨ψ(T_xσ)/ψ(σ)⟩ = {re:+.4f}{im:+.4f}i "
                     f"(measured k = {_k_text(s.get('measured_momentum'))})")
    if parts:
        print(";  ".join(parts), file=out)
    parts = []
    if s.get("marshall_agreement") is not None:
        parts.append(f"Marshall-sign agreement {s['marshall_agreement']:.4f}")
    if s.get("fidelity") is not None:
        parts.append(f"fidelity |⟨ψ₀|ψ⟩|² = {s['fidelity']:.6f}, sign agreement {s['sign_agreement']:.6f} "
                     f"(vs {s.get('exact_state')})")
    if parts:
        print(";  ".join(parts), file=out)


def event_printer(args: argparse.Namespace, settings: RunSettings, started: list[bool]) -> Any:
    """The run's callback: phases, the reference and step lines (JSON or readable); appends to
    ``started`` once the steps run (a ValueError after that is a bug, not a setting)."""
    # local: the engine (flax, optax, the compiled steps) is imported only when a run starts, so that
    # ``nqs --help`` and argument errors stay fast
    from nqs_core.driver import json_safe
    from nqs_core.run_reference import reference_detail

    every = args.every or max(1, settings.steps // 30)
    t_steps: list[float] = []

    def on_event(event: Any) -> None:
        if event.kind == "phase" and event.phase == "running":
            started.append(True)
        if event.kind == "phase":
            if not args.quiet:
                print(f"[{event.phase}] {event.message}", file=sys.stderr if args.json else sys.stdout, flush=True)
        elif event.kind == "reference" and not args.json and not args.quiet:
            ref = event.reference or {}
            print(f"[reference] E = {ref.get('energy'):.6f} ({ref.get('method')}: {reference_detail(ref)})", flush=True)
        elif event.kind == "steps":
            for r in event.records:
                if args.json:
                    print(json.dumps(json_safe(r.to_dict()), ensure_ascii=False), flush=True)
                else:
                    t_steps.append(r.seconds)
                    if not args.quiet and ((r.step + 1) % every == 0 or r.step + 1 == settings.steps):
                        recent = t_steps[-every:]
                        rate = len(recent) / sum(recent) if sum(recent) > 0 else float("nan")
                        print(f"step {r.step + 1:>6}/{settings.steps}  E = {r.energy:12.6f} ± {r.error:.6f}  "
                              f"var {r.variance:9.4f}  acc {r.acceptance:.2f}  R̂ {r.r_hat:.3f}  {rate:6.1f} it/s",
                              flush=True)

    return on_event


def main(args: argparse.Namespace) -> int:
    """Run VMC with the flags in ``args``; see the module docstring for exit codes."""
    start_devices()
    settings = settings_from_args(args)

    from nqs_core.driver import RunControl, json_safe, run  # local: the engine loads only for a run, after jax.distributed

    started: list[bool] = []
    on_event = event_printer(args, settings, started)
    control = RunControl()
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum: int, frame: Any) -> None:
        control.stop()
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C ends the process at once

    signal.signal(signal.SIGINT, interrupt)
    try:
        result = run(settings, callback=on_event, control=control, checkpoint=args.checkpoint,
                     resume=args.resume, reference=not args.no_reference, reference_dmrg=True,
                     reference_timeout=REFERENCE_TIMEOUT)
    except ValueError as err:
        if started:  # not an invalid setting (those fail before compiling): keep the traceback
            raise RuntimeError(f"nqs run failed after it started: {err}") from err
        raise
    finally:
        signal.signal(signal.SIGINT, previous)

    if args.json:
        print(json.dumps({"summary": json_safe(result.summary)}, ensure_ascii=False), flush=True)
    else:
        print_summary(result.summary)
    if result.phase == "diverged":
        print(f"nqs run: {result.message}", file=sys.stderr)
        return 1
    if result.phase == "stopped":
        return 130
    if result.verdict == "failed":
        print(f"nqs run: failed: {result.summary['warnings'][0]}", file=sys.stderr)
        return 1
    return 0
