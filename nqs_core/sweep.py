"""Coupling sweeps: one VMC run per value of one coupling (J2 of J1-J2, h or J of the TFIM, J, J1).

``make_sweep(settings, "h", "0.5:1.5:5")`` checks the range against the coupling's bounds in the
settings schema; ``run_sweep(sweep)`` runs every point from the same seed and returns a
:class:`SweepResult`.  The points share one compiled step and one compiled evaluation
(the engine takes the couplings as run-time arrays, ``nqs_core.vmc.hyperparameters``).  Per point:

* E/N ± δE/N and the V-score N·Var(E)/E² (final evaluation with ``eval_samples`` samples, else the
  last step), acceptance and split R̂;
* the reference (``run_reference.find_reference``: closed form > ED > DMRG > published) and the
  relative error |E − E_ref|/|E_ref|; the verdict of ``nqs_core.verdict``;
* from fresh samples of the final state, with errors from the spread over the independent chains:
  TFIM ⟨|Σσᶻ|⟩/N and ⟨σˣ⟩; S·S models S(q) and its peak; the translation eigenvalues per axis and the
  momentum they imply; the Marshall-sign agreement of the samples (bipartite S·S models);
* where ED reaches (``exact_observables``): the exact E₀/N and observables of the run's sector, the
  exact state's own Marshall-sign agreement and ground momentum, and the network's fidelity and
  sign agreement with it.

Stopping rules (time budget, targets) are not applied per point: ``make_sweep`` refuses them.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import jax
import numpy as np

from nqs_core.compile_cache import enable_compile_cache
from nqs_core.events import POLL_SECONDS, RunControl, StepRecord, records_from_stats
from nqs_core.hamiltonians import COUPLINGS
from nqs_core.run_reference import find_reference, reference_detail
from nqs_core.settings import RunSettings, SettingsError, schema
from nqs_core.exact_observables import exact_observables, exact_problem, exact_state, network_vs_exact
from nqs_core.problem import build_problem
from nqs_core.vmc import Engine, engine_for, hyperparameters, static_settings
from nqs_core.state_observables import state_observables
from nqs_core.verdict import Estimate, assess

MAX_POINTS = 101
UNSUPPORTED = ("time_budget", "target_error", "target_v_score")


# ----- what is swept ----------------------------------------------------------------------------
def coupling_name(hamiltonian: str, name: str) -> str:
    """The coupling ``name`` of ``hamiltonian`` (J stands for J1 in J1-J2); SettingsError("scan") otherwise."""
    if hamiltonian == "j1j2" and name == "J":
        return "J1"
    allowed = COUPLINGS.get(hamiltonian, ())
    if name not in allowed:
        raise SettingsError("scan", f"{name} is not a coupling of {hamiltonian}: sweep one of "
                                    f"{', '.join(allowed)}")
    return name


def range_help(name: str) -> str:
    """The accepted forms of a swept coupling, with its bounds."""
    return (f"{name} must be a range START:STOP:N (N from 2 to {MAX_POINTS} evenly spaced points, ends included) "
            f"or a list V1,V2,… of 2 to {MAX_POINTS} values, each {schema()[name].range_text()}")


def parse_values(name: str, text: str) -> tuple[float, ...]:
    """``START:STOP:N`` → N evenly spaced values (numpy.linspace), or ``V1,V2,…``; bounds from the schema."""
    problem = f"{range_help(name)}; got {text!r}"
    parts = text.replace(" ", "").split(":")
    try:
        if len(parts) == 3:
            n = int(parts[2])
            if not 2 <= n <= MAX_POINTS:
                raise ValueError
            values = tuple(float(x) for x in np.linspace(float(parts[0]), float(parts[1]), n))
        elif len(parts) == 1 and "," in text:
            values = tuple(float(x) for x in parts[0].split(",") if x != "")
        else:
            raise ValueError
    except ValueError:
        raise SettingsError(name, problem) from None
    if not 2 <= len(values) <= MAX_POINTS or len(set(values)) != len(values):
        raise SettingsError(name, problem)
    for v in values:
        message = schema()[name].check(v)
        if message:
            raise SettingsError(name, f"{message} (in the sweep {text})")
    return values


@dataclass(frozen=True)
class Sweep:
    """``settings`` with ``coupling`` taking each of ``values`` in turn."""

    settings: RunSettings
    coupling: str
    values: tuple[float, ...]

    def point_settings(self, value: float) -> RunSettings:
        return self.settings.replace(**{self.coupling: float(value)})


def make_sweep(settings: RunSettings, coupling: str, values: str | tuple[float, ...] | list[float]) -> Sweep:
    """A validated sweep: the coupling belongs to the model, the values are in range, and the settings
    are valid at every point (SettingsError naming the setting otherwise)."""
    name = coupling_name(settings.hamiltonian, coupling)
    text = values if isinstance(values, str) else ",".join(repr(float(v)) for v in values)
    vals = parse_values(name, text)  # a list given in Python passes the same checks as a typed one
    for setting in UNSUPPORTED:
        if getattr(settings, setting) is not None:
            flag = "--" + setting.replace("_", "-")
            raise SettingsError(setting, f"{setting} is not supported by a sweep (every point runs its "
                                         f"{settings.steps} steps); unset it ({flag} none)")
    if settings.hamiltonian == "j1j2" and settings.J is not None:
        settings = settings.replace(J=None, J1=settings.J if settings.J1 is None else settings.J1)
    sweep = Sweep(settings, name, vals)
    for v in vals:
        sweep.point_settings(v).validate()
    return sweep


# ----- results ----------------------------------------------------------------------------------
@dataclass
class SweepPoint:
    """One point of a sweep (``to_dict()``: what ``nqs sweep --json`` prints for it)."""

    index: int
    coupling: str
    value: float
    couplings: dict[str, float]
    phase: str
    message: str
    steps: int
    energy: float
    error: float
    variance: float
    energy_per_site: float
    error_per_site: float
    v_score: float | None
    acceptance: float
    r_hat: float
    final_source: str
    convention: str
    reference_energy_per_site: float | None
    reference_method: str | None
    reference_detail: str | None
    relative_error: float | None
    observables: dict[str, Any]
    exact: dict[str, Any] | None
    exact_note: str | None
    seconds: float
    compile_seconds: float
    verdict: str = "ok"
    warnings: list[str] = field(default_factory=list)
    history: list[StepRecord] = field(default_factory=list, repr=False)

    def to_dict(self, history: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d.pop("history")
        if history:
            d["history"] = [r.to_dict() for r in self.history]
        return d

    def row(self) -> dict[str, Any]:
        """The point's line of the final table (flat; None where not measured)."""
        ob, ex = self.observables, self.exact or {}
        row = {"value": self.value, "energy_per_site": self.energy_per_site, "error_per_site": self.error_per_site,
               "reference_energy_per_site": self.reference_energy_per_site, "reference_method": self.reference_method,
               "relative_error": self.relative_error, "v_score": self.v_score,
               "fidelity": ob.get("fidelity"), "sign_agreement": ob.get("sign_agreement"),
               "marshall_agreement": ob.get("marshall_agreement"), "measured_momentum": ob.get("measured_momentum"),
               "exact_energy_per_site": ex.get("energy_per_site"), "verdict": self.verdict}
        for key in ("magnetisation", "sigma_x"):
            if key in ob:
                row.update({key: ob[key], f"{key}_error": ob.get(f"{key}_error"), f"{key}_exact": ex.get(key)})
        if "structure_factor" in ob:
            row.update(s_q_peak=ob["structure_factor"]["peak"]["value"], s_q_peak_q=ob["structure_factor"]["peak"]["q_over_pi"],
                       s_q_peak_exact=(ex.get("structure_factor") or {}).get("peak", {}).get("value"),
                       marshall_agreement_exact=ex.get("marshall_agreement"), exact_ground_momentum=ex.get("ground_momentum"))
        return row


@dataclass
class SweepEvent:
    """What ``run_sweep`` reports: ``start`` (a point begins), ``steps`` (records of one call), ``point``
    (a point is done, ``point`` set) and ``done`` (``result`` set)."""

    kind: str
    index: int = -1
    value: float = math.nan
    records: list[StepRecord] = field(default_factory=list)
    point: SweepPoint | None = None
    result: "SweepResult | None" = None
    message: str = ""


@dataclass
class SweepResult:
    """All points of a sweep, in order of the values."""

    sweep: Sweep
    points: list[SweepPoint]
    phase: str  # "done" | "stopped" | "diverged" (some point diverged)
    seconds: float
    compile_seconds: float

    def table(self) -> list[dict[str, Any]]:
        return [p.row() for p in self.points]

    def to_dict(self) -> dict[str, Any]:
        """``nqs sweep --json``'s last line: the sweep, its settings and the table."""
        return {"coupling": self.sweep.coupling, "values": list(self.sweep.values), "phase": self.phase,
                "settings": self.sweep.settings.to_dict(), "seconds": self.seconds,
                "compile_seconds": self.compile_seconds, "convention": self.points[0].convention if self.points else None,
                "table": self.table()}


# ----- running ----------------------------------------------------------------------------------
def _steps(engine: Engine, s: RunSettings, hyper: dict[str, Any], index: int, value: float,
           emit: Callable[[SweepEvent], None], control: RunControl) -> tuple[Any, list[StepRecord], str, str, float]:
    """The optimisation of one point: (state, history, phase, message, compile seconds)."""
    state = engine.init_state(s.seed)
    history: list[StepRecord] = []
    compile_seconds = 0.0
    while len(history) < s.steps:
        while control.paused:
            control.wait(POLL_SECONDS)
        if control.stopped:
            return state, history, "stopped", f"stopped after {len(history)} steps", compile_seconds
        n = min(s.steps_per_call, s.steps - len(history))
        cached, t0 = engine.multi_step._cache_size(), time.perf_counter()
        new, stats = engine.multi_step(state, hyper, n)
        stats = {k: np.asarray(v) for k, v in stats.items()}
        dt = time.perf_counter() - t0
        if engine.multi_step._cache_size() > cached:
            compile_seconds += dt  # this call compiled (its n steps included)
        records = records_from_stats(stats, len(history), dt)
        finite = np.atleast_1d(stats["finite"])
        if not finite.all():
            history += records[: int(np.argmin(finite))]
            message = f"diverged: energy or parameters not finite at step {len(history)}"
            return new, history, "diverged", message, compile_seconds
        history += records
        state = new
        emit(SweepEvent("steps", index, value, records))
    return state, history, "done", f"done: {len(history)} steps", compile_seconds


def _evaluation(engine: Engine, s: RunSettings, state: Any, hyper: dict[str, Any],
                history: list[StepRecord], phase: str) -> tuple[dict[str, float] | None, str]:
    """The final evaluation (``eval_samples`` fresh samples, by the point's compiled step measuring without
    learning: ``Engine.evaluate_by_steps``), or None after a divergence or with 0 samples."""
    if phase == "diverged" or s.eval_samples <= 0:
        return None, f"last step ({history[-1].step})" if history else "no steps"
    n = min(s.steps_per_call, s.steps)  # the first call's size: compiled already
    out = engine.evaluate_by_steps(lambda st, h: engine.multi_step(st, h, n), state, hyper, s.eval_samples, n)
    return out, f"evaluation with {out['n_samples']} samples"


def _energy(evaluation: dict[str, float] | None, history: list[StepRecord]) -> tuple[float, float, float, float, float]:
    """(E, δE, Var E, acceptance, R̂) of the evaluation, else of the last step."""
    if evaluation is not None:
        return tuple(float(np.real(evaluation.get(k, math.nan)))  # type: ignore[return-value]
                     for k in ("energy", "error", "variance", "acceptance", "r_hat"))
    if not history:
        return (math.nan,) * 5  # type: ignore[return-value]
    r = history[-1]
    return r.energy, r.error, r.variance, r.acceptance, r.r_hat


def _reference(s: RunSettings, enabled: bool, compute_dmrg: bool) -> dict[str, Any] | None:
    if not enabled:
        return None
    try:
        return find_reference(s, compute_dmrg)
    except ValueError:  # no method reaches this system
        return None


def _exact(engine: Engine, s: RunSettings, params: Any, enabled: bool) -> tuple[dict[str, Any] | None, str | None]:
    """The exact observables and the network's fidelity / sign agreement, or (None, why not)."""
    if not enabled:
        return None, "not requested"
    problem = exact_problem(s)
    if problem is not None:
        return None, problem
    state = exact_state(s)
    return {**exact_observables(state), **network_vs_exact(_jitted_apply(engine), params, state)}, None


@functools.lru_cache(maxsize=8)
def _jitted_apply(engine: Engine) -> Callable[..., Any]:
    """``jax.jit(model.apply)`` of the points' engine, kept so that every point reuses its compilation."""
    return jax.jit(engine.model.apply)


@dataclass(frozen=True)
class Options:
    """How a sweep looks up what it compares with: reference energies (DMRG allowed?) and ED states."""

    reference: bool = True
    compute_dmrg: bool = False
    exact: bool = True


def run_point(sweep: Sweep, index: int, emit: Callable[[SweepEvent], None], control: RunControl,
              options: Options = Options()) -> SweepPoint:
    """Optimise, evaluate and measure the point ``sweep.values[index]`` (see the module docstring)."""
    t0 = time.perf_counter()
    value = sweep.values[index]
    s = sweep.point_settings(value)
    engine, hyper = engine_for(static_settings(s)), hyperparameters(s)  # one engine for every point
    ham = build_problem(s)[1]
    emit(SweepEvent("start", index, value, message=f"{sweep.coupling} = {value:g}"))
    state, history, phase, message, compile_seconds = _steps(engine, s, hyper, index, value, emit, control)
    evaluation, source = _evaluation(engine, s, state, hyper, history, phase)
    energy, error, variance, acceptance, r_hat = _energy(evaluation, history)
    ref = _reference(s, options.reference, options.compute_dmrg)
    e_ref = float(ref["energy"]) if ref is not None else None
    rel = abs(energy - e_ref) / abs(e_ref) if e_ref and math.isfinite(energy) else None
    v_score = s.n_sites * variance / energy**2 if math.isfinite(variance) and energy else None
    observables = state_observables(engine, s, state) if history and phase != "diverged" else {}
    exact, note = _exact(engine, s, state.params, options.exact and bool(history))
    if exact is not None:
        observables.update(fidelity=exact.pop("fidelity"), sign_agreement=exact.pop("sign_agreement"))
    verdict = assess(s, Estimate.of(evaluation, history, s), ref, phase, message, {"relative_error": rel, "v_score": v_score})
    n = s.n_sites
    return SweepPoint(index, sweep.coupling, value, ham.couplings, phase, message, len(history), energy, error,
                      variance, energy / n, error / n, v_score, acceptance, r_hat, source, ham.convention,
                      e_ref / n if e_ref is not None else None, ref.get("method") if ref else None,
                      reference_detail(ref) if ref else None, rel, observables, exact, note,
                      time.perf_counter() - t0, compile_seconds, verdict.verdict, list(verdict.warnings), history)


def run_sweep(sweep: Sweep, callback: Callable[[SweepEvent], None] | None = None, control: RunControl | None = None,
              options: Options = Options()) -> SweepResult:
    """Every point of ``sweep`` in order (``callback`` gets the :class:`SweepEvent` s; ``control`` pauses
    or stops between fused calls); the ``done`` event carries the result."""
    enable_compile_cache()
    t0 = time.perf_counter()
    emit = callback or (lambda event: None)
    control = control or RunControl()
    points: list[SweepPoint] = []
    for index in range(len(sweep.values)):
        if control.stopped:
            break
        point = run_point(sweep, index, emit, control, options)
        points.append(point)
        emit(SweepEvent("point", index, point.value, point=point, message=point.message))
    phases = {p.phase for p in points}
    phase = "stopped" if control.stopped else "diverged" if "diverged" in phases else "done"
    result = SweepResult(sweep, points, phase, time.perf_counter() - t0, sum(p.compile_seconds for p in points))
    emit(SweepEvent("done", result=result, message=f"{phase}: {len(points)} of {len(sweep.values)} points"))
    return result
