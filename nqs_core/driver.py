"""The run loop: fused VMC steps, reported to a callback, controllable from another thread.

``run(settings, callback, control, checkpoint, resume)`` builds the engine
(:class:`nqs_core.vmc.VMC`), places its state over every device (:mod:`nqs_core.devices`),
compiles ``settings.steps_per_call`` steps into one function ahead of time (so compilation is
timed apart from the steps), then calls it until ``settings.steps`` steps are done.  Between
calls it

* reports the steps (``RunEvent(kind="steps")`` with one :class:`StepRecord` per step and a few
  current configurations) and, when known, the reference energy (``kind="reference"``);
* honours :class:`RunControl` (pause / resume / stop take effect before the next call);
* stops with phase ``"diverged"`` when the energy or a parameter is NaN/inf, keeping (and
  checkpointing) the last finite state;
* writes the checkpoint every ``checkpoint_every`` seconds, on pause and at the end.

At the end it evaluates the energy with ``settings.eval_samples`` samples and returns a
:class:`RunResult` whose ``summary`` is the dict printed by ``nqs run --json``.

Resuming: ``resume=path`` restores parameters, optimizer state, sampler state (incl. PRNG key)
and history; ``settings.steps`` counts all steps, those in the checkpoint included, so a run of
20 steps resumed with ``steps=40`` does 20 more and equals 40 straight steps.  All settings
except ``steps``, ``eval_samples`` and ``steps_per_call`` must equal the checkpoint's.

Callback events are delivered from the thread that runs ``run`` (the app's worker thread).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.checkpoint import load_checkpoint, restore_state, save_checkpoint
from nqs_core.compile_cache import enable_compile_cache
from nqs_core.devices import (
    chain_mesh,
    describe_devices,
    initialize_distributed,
    place_state,
    replicated,
    state_shardings,
    to_host,
)
from nqs_core.run_reference import MAX_EXACT_DIM, ExactObserver, ReferenceLookup, exact_basis_dim, reference_detail
from nqs_core.settings import RunSettings, SettingsError

PHASES = ("compiling", "running", "paused", "stopped", "diverged", "done")
# settings that may differ between a checkpoint and the run resuming it
RESUMABLE_CHANGES = ("steps", "eval_samples", "steps_per_call")
STAT_KEYS = ("energy", "error", "variance", "acceptance", "r_hat", "tau", "grad_norm", "v_score")
POLL_SECONDS = 0.05


@dataclass
class StepRecord:
    """Statistics of one VMC step (energies in the Hamiltonian's convention, float64).

    ``seconds`` is the wall time of this step (its share of one fused call, compilation excluded).
    """

    step: int
    energy: float
    error: float
    variance: float
    acceptance: float
    r_hat: float
    tau: float
    grad_norm: float
    v_score: float
    seconds: float
    translation_eigenvalue: tuple[float, float] | None = None
    marshall_agreement: float | None = None
    sign_agreement: float | None = None  # against the exact (ED) ground state, on the steps where it was measured
    fidelity: float | None = None  # |⟨ψ₀|ψ⟩|², same steps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.translation_eigenvalue is not None:
            d["translation_eigenvalue"] = list(self.translation_eigenvalue)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepRecord":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if d.get("translation_eigenvalue") is not None:
            d["translation_eigenvalue"] = tuple(d["translation_eigenvalue"])
        return cls(**d)


@dataclass(frozen=True)
class RunEvent:
    """What ``run`` reports: a phase change, a batch of steps, or the reference energy."""

    kind: str  # "phase" | "steps" | "reference"
    phase: str | None = None
    message: str = ""
    records: list[StepRecord] = field(default_factory=list)
    samples: np.ndarray | None = None
    reference: dict[str, Any] | None = None


@dataclass
class RunResult:
    """The outcome of ``run``: final phase, history, summary (as ``nqs run --json``), final state."""

    settings: RunSettings
    history: list[StepRecord]
    summary: dict[str, Any]
    state: Any
    phase: str
    message: str
    evaluation: dict[str, Any] | None = None


class RunControl:
    """Pause, resume and stop a running ``run`` from another thread (checked between calls)."""

    def __init__(self) -> None:
        self._go = threading.Event()
        self._go.set()
        self._stop = threading.Event()

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set() and not self._stop.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float) -> bool:
        """Block while paused, at most ``timeout`` seconds; True when running may go on."""
        return self._go.wait(timeout)


# ----- helpers --------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """A JSON-safe copy of a summary, history or settings value (``nqs run --json``, the app's
    export): NumPy/JAX scalars to Python, NaN/inf to None, tuples to lists, keys and unknown
    objects to strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def _float(x: Any) -> float:
    return float(np.real(x))


def _params(state: Any) -> Any:
    return getattr(state, "params", state)


def count_parameters(params: Any) -> int:
    """Number of (real or complex) scalars in a parameter pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def _records_from_stats(stats: dict[str, np.ndarray], first_step: int, seconds: float) -> list[StepRecord]:
    n = len(np.atleast_1d(stats["energy"]))
    out = []
    for i in range(n):
        values = {k: _float(np.atleast_1d(stats[k])[i]) if k in stats else float("nan") for k in STAT_KEYS}
        rec = StepRecord(step=first_step + i, seconds=seconds / n, **values)
        if "translation_eigenvalue" in stats:
            z = complex(np.atleast_1d(stats["translation_eigenvalue"])[i])
            rec.translation_eigenvalue = (z.real, z.imag)
        for key in ("marshall_agreement", "sign_agreement"):
            if key in stats:
                setattr(rec, key, _float(np.atleast_1d(stats[key])[i]))
        out.append(rec)
    return out


def _check_resumable(settings: RunSettings, saved: dict[str, Any]) -> None:
    mine = settings.to_dict()
    for name, value in saved.items():
        if name in RESUMABLE_CHANGES or name not in mine:
            continue
        if mine[name] != value:
            raise SettingsError(name, f"resume: the checkpoint was written with {name}={value!r}; these settings "
                                      f"have {name}={mine[name]!r} (only {', '.join(RESUMABLE_CHANGES)} may change)")


_COMPILED: dict[tuple[Any, ...], Any] = {}  # (engine, n, devices) -> compiled steps, oldest first
MAX_COMPILED = 32


def current_samples(vmc: Any, state: Any, n_show: int) -> np.ndarray | None:
    """A few current chain configurations (n_show, N) for the lattice view."""
    if n_show <= 0:
        return None
    if jax.process_count() > 1:  # the chains live on several processes: gather them
        return to_host(state.sampler.sigma)[:n_show]
    return to_host(vmc.samples(state, n_show))


def _params_finite(state: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(_params(state))
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def _compiled_steps(vmc: Any, n: int, state: Any, hyper: Any, shardings: Any, mesh: Any) -> tuple[Any, float]:
    """(compiled ``f(state, hyper) -> (state, stats, params_finite)`` doing n steps, compile seconds).

    Uses the engine's jitted ``multi_step(state, hyper, n)`` with the run-time values (lr, shift, …)
    as arguments, so the compiled code is shared, within the process, between runs that differ in
    them (the app's Run button); falls back to ``vmc.step(state, n)``.  Inputs and outputs carry
    the chain sharding of :mod:`nqs_core.devices`, so the state stays split across calls.
    """
    engine = getattr(vmc, "engine", None)
    shared = engine is not None and hasattr(engine, "multi_step") and hasattr(vmc, "hyper")
    key = (engine, n, tuple(d.id for d in mesh.devices.flat)) if shared else None
    if key is not None and key in _COMPILED:
        return _COMPILED[key], 0.0

    def fused(s: Any, h: Any) -> tuple[Any, dict[str, jax.Array], jax.Array]:
        new, stats = engine.multi_step(s, h, n) if shared else vmc.step(s, n)
        return new, stats, _params_finite(new)

    whole = replicated(mesh)
    t0 = time.perf_counter()
    jitted = jax.jit(fused, in_shardings=(shardings, whole), out_shardings=(shardings, whole, whole))
    compiled = jitted.lower(state, hyper).compile()
    seconds = time.perf_counter() - t0
    if key is not None:
        while len(_COMPILED) >= MAX_COMPILED:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = compiled
    return compiled, seconds


_AXIS_EIGENVALUES: dict[Any, Any] = {}  # engine -> jitted per-axis translation eigenvalues
MOMENTUM_SAMPLES = 256


def _axis_eigenvalues(vmc: Any, state: Any) -> np.ndarray:
    """(d,) ⟨ψ(shift(σ, e_a))/ψ(σ)⟩ per axis over ``MOMENTUM_SAMPLES`` fresh samples (the engine's
    sampler from the current chains; the chains' state is not advanced).  Compiled once per engine."""
    from nqs_core.observables import translation_eigenvalues

    engine = vmc.engine
    fn = _AXIS_EIGENVALUES.get(engine)
    if fn is None:
        per_chain = max(1, -(-MOMENTUM_SAMPLES // vmc.settings.chains))
        n = engine.lattice.n_sites

        @jax.jit
        def fn(params: Any, sampler_state: Any) -> jax.Array:
            _, sigma, _, _ = engine.sampler.sample(lambda x: engine.model.apply(params, x), sampler_state, per_chain)
            return translation_eigenvalues(engine.model.apply, params, sigma.reshape(-1, n), engine.lattice)

        _AXIS_EIGENVALUES[engine] = fn
    return np.array(to_host(fn(_params(state), state.sampler)), dtype=np.complex128)


def momentum_readout(vmc: Any, state: Any, evaluation: dict[str, Any] | None,
                     history: list[StepRecord]) -> dict[str, Any] | None:
    """``translation_eigenvalue`` [re, im] along x (final evaluation, else the last step),
    ``translation_eigenvalues`` per axis (y on the square from ``MOMENTUM_SAMPLES`` fresh samples) and
    the ``measured_momentum`` k/π they imply (nearest allowed momentum per axis); None without
    translations (open boundaries)."""
    from nqs_core.observables import nearest_allowed_momentum

    lattice = vmc.lattice
    if not lattice.pbc or not history:
        return None
    x = None
    if evaluation is not None and evaluation.get("translation_eigenvalue") is not None:
        x = complex(evaluation["translation_eigenvalue"])
    elif history[-1].translation_eigenvalue is not None:
        x = complex(*history[-1].translation_eigenvalue)
    if x is None or lattice.dim > 1:
        if jax.process_count() > 1:
            return None
        axes = _axis_eigenvalues(vmc, state)
        if x is not None:
            axes[0] = x
        x = complex(axes[0])
    else:
        axes = np.array([x])
    return {"translation_eigenvalue": [x.real, x.imag],
            "translation_eigenvalues": [[float(z.real), float(z.imag)] for z in axes],
            "measured_momentum": list(nearest_allowed_momentum(axes, lattice))}


# ----- the run ----------------------------------------------------------------------------------
def run(
    settings: RunSettings,
    callback: Callable[[RunEvent], None] | None = None,
    control: RunControl | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    *,
    n_show: int = 4,
    reference: bool = True,
    reference_dmrg: bool = False,
    reference_timeout: float = 10.0,
    checkpoint_every: float = 30.0,
    exact: bool = True,
) -> RunResult:
    """Run VMC for ``settings.steps`` steps (see the module docstring); return the result.

    ``n_show`` configurations are sent with every ``steps`` event.  ``reference=False`` skips
    the reference energy; otherwise it is looked up in a background thread (closed form, ED,
    cached or shipped values; a new DMRG run only with ``reference_dmrg=True``, as the CLI does,
    since a thread cannot be cancelled) and the summary waits at most ``reference_timeout``
    seconds for it at the end.  ``exact=True`` measures the fidelity and sign agreement against the
    ED state of the run's sector where ED reaches (basis ≤ ``MAX_EXACT_DIM``; ``run_reference.ExactObserver``),
    throttled to a small share of the run time, into the ``StepRecord`` of a call's last step.
    """
    t_start = time.perf_counter()
    initialize_distributed()
    enable_compile_cache()
    settings.validate()
    control = control or RunControl()
    emit = callback or (lambda event: None)

    history: list[StepRecord] = []
    saved = None
    if resume is not None:
        saved = load_checkpoint(resume)
        _check_resumable(settings, saved.settings)
        history = [StepRecord.from_dict(d) for d in saved.history]

    emit(RunEvent(kind="phase", phase="compiling", message="building the model and compiling the step"))
    lookup = ReferenceLookup(settings, reference, reference_dmrg)
    observer = ExactObserver(settings, exact)

    from nqs_core.vmc import VMC

    vmc = VMC(settings)
    state = vmc.init()
    if saved is not None:
        state = restore_state(saved, state)
    mesh = chain_mesh(settings.chains)
    shardings = state_shardings(state, settings.chains, mesh)
    state = place_state(state, shardings)
    n_devices = int(mesh.devices.size)
    n_params = count_parameters(_params(state))
    observer.set_model(vmc.model.apply, _params(state))

    compile_seconds = 0.0
    hyper = jax.device_put(getattr(vmc, "hyper", {}), replicated(mesh))

    def step_function(n: int) -> Any:
        """The AOT-compiled function doing ``n`` fused steps (compiled once per engine, n and mesh)."""
        nonlocal compile_seconds
        fn, seconds = _compiled_steps(vmc, n, state, hyper, shardings, mesh)
        compile_seconds += seconds
        return fn

    def save(st: Any, phase: str, message: str) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, st, settings.to_dict(), [r.to_dict() for r in history],
                            extra={"phase": phase, "message": message, "devices": n_devices})

    step_function(min(settings.steps_per_call, max(1, settings.steps - len(history))))
    setup_seconds = time.perf_counter() - t_start
    emit(RunEvent(kind="phase", phase="running",
                  message=f"running on {describe_devices(n_devices)}; compiled in {setup_seconds:.1f} s"))

    phase, message = "done", ""
    run_seconds = 0.0
    run_steps = 0
    reference_sent = False
    last_save = time.perf_counter()
    exact_final: tuple[int, float, float] | None = None  # (steps done, fidelity, sign agreement)

    def observe(records: list[StepRecord], st: Any, last_call: bool) -> None:
        nonlocal exact_final
        if records and observer.due(last_call):
            f, sgn = observer.measure(_params(st))
            records[-1].fidelity, records[-1].sign_agreement = f, sgn
            exact_final = (records[-1].step + 1, f, sgn)

    while len(history) < settings.steps:
        if lookup.ready and not reference_sent and lookup.result is not None:
            emit(RunEvent(kind="reference", reference=lookup.result))
            reference_sent = True
        if control.paused:
            emit(RunEvent(kind="phase", phase="paused", message=f"paused after step {len(history)}"))
            save(state, "paused", "")
            last_save = time.perf_counter()
            while not control.wait(POLL_SECONDS):
                pass
            if not control.stopped:
                emit(RunEvent(kind="phase", phase="running", message=f"resumed at step {len(history)}"))
        if control.stopped:
            phase, message = "stopped", f"stopped after step {len(history)} of {settings.steps}"
            break

        n = min(settings.steps_per_call, settings.steps - len(history))
        fn = step_function(n)
        t0 = time.perf_counter()
        new_state, stats, params_ok = fn(state, hyper)
        stats = {k: to_host(v) for k, v in stats.items()}
        params_ok = bool(to_host(params_ok))
        dt = time.perf_counter() - t0
        run_seconds += dt
        run_steps += n

        finite = np.isfinite(np.atleast_1d(stats["energy"])) & np.atleast_1d(stats.get("finite", True))
        if not finite.all() or not params_ok:
            good = int(np.argmin(finite)) if not finite.all() else n - 1
            where = len(history) + good
            what = "the energy or the parameters" if "finite" in stats else (
                "the energy" if not finite.all() else "the parameters")
            if "finite" in stats and params_ok:
                # the engine kept the last finite state inside the call: keep the steps before it
                records = _records_from_stats({k: np.atleast_1d(v)[:good] for k, v in stats.items()},
                                              len(history), dt * good / n)
                history.extend(records)
                state = new_state
                observe(records, state, True)
                if records:
                    emit(RunEvent(kind="steps", records=records,
                                  samples=current_samples(vmc, state, n_show)))
            phase = "diverged"
            message = (f"diverged: {what} became NaN/inf at step {where} (lr={settings.lr:g}, "
                       f"optimizer={settings.optimizer}); kept the last finite state (after {len(history)} steps); "
                       f"try a smaller learning rate (e.g. lr={settings.lr / 10:g})"
                       + ("" if settings.optimizer in ("sr", "minsr") else " or optimizer=sr"))
            break

        records = _records_from_stats(stats, len(history), dt)
        history.extend(records)
        state = new_state
        observe(records, state, len(history) >= settings.steps or control.stopped)
        samples = current_samples(vmc, state, n_show)
        emit(RunEvent(kind="steps", records=records, samples=samples))
        if checkpoint is not None and time.perf_counter() - last_save > checkpoint_every:
            save(state, "running", "")
            last_save = time.perf_counter()

    evaluation = None
    eval_seconds = 0.0
    if phase == "done" and settings.eval_samples > 0:
        emit(RunEvent(kind="phase", phase="running",
                      message=f"final evaluation with {settings.eval_samples} samples"))
        t0 = time.perf_counter()
        evaluation = {k: (to_host(v) if isinstance(v, jax.Array) else v)
                      for k, v in vmc.evaluate(state, settings.eval_samples).items()}
        eval_seconds = time.perf_counter() - t0

    ref = lookup.wait(reference_timeout if phase == "done" else 0.0)
    exact_values = None
    if exact_final is not None and exact_final[0] == len(history):
        exact_values = exact_final[1:]
    elif observer.wait(reference_timeout if phase == "done" else 0.0) and history:
        exact_values = observer.measure(_params(state))
        history[-1].fidelity, history[-1].sign_agreement = exact_values
    momentum = momentum_readout(vmc, state, evaluation, history)
    if ref is not None and not reference_sent:
        emit(RunEvent(kind="reference", reference=ref))
    if phase == "done":
        message = f"done: {len(history)} steps"
    save(state, phase, message)

    summary = _summary(settings, vmc, history, evaluation, ref, lookup.error, phase=phase, message=message,
                       n_params=n_params, n_devices=n_devices, compile_seconds=setup_seconds,
                       step_compile_seconds=compile_seconds, run_seconds=run_seconds, run_steps=run_steps,
                       eval_seconds=eval_seconds, wall_seconds=time.perf_counter() - t_start,
                       checkpoint=checkpoint, momentum=momentum, exact_values=exact_values,
                       exact_label=observer.label, exact_note=observer.error, exact_seconds=observer.total)
    emit(RunEvent(kind="phase", phase=phase, message=message))
    return RunResult(settings=settings, history=history, summary=summary, state=state, phase=phase,
                     message=message, evaluation=evaluation)


def _summary(
    settings: RunSettings,
    vmc: Any,
    history: list[StepRecord],
    evaluation: dict[str, Any] | None,
    ref: dict[str, Any] | None,
    ref_error: str | None,
    *,
    phase: str,
    message: str,
    n_params: int,
    n_devices: int,
    compile_seconds: float,
    step_compile_seconds: float,
    run_seconds: float,
    run_steps: int,
    eval_seconds: float,
    wall_seconds: float,
    checkpoint: str | Path | None,
    momentum: dict[str, Any] | None = None,
    exact_values: tuple[float, float] | None = None,
    exact_label: str | None = None,
    exact_note: str | None = None,
    exact_seconds: float = 0.0,
) -> dict[str, Any]:
    """The run summary (the last object of ``nqs run --json``)."""
    n_sites = settings.n_sites
    if evaluation is not None:
        energy, error = _float(evaluation["energy"]), _float(evaluation.get("error", float("nan")))
        variance = _float(evaluation.get("variance", float("nan")))
        source = f"evaluation with {settings.eval_samples} samples"
    elif history:
        last = history[-1]
        energy, error, variance = last.energy, last.error, last.variance
        source = f"last step ({last.step})"
    else:
        energy = error = variance = float("nan")
        source = "no steps"
    v_score = n_sites * variance / energy**2 if _finite(variance) and _finite(energy) and energy != 0 else None
    ref_energy = _float(ref["energy"]) if ref is not None and ref.get("energy") is not None else None
    rel = abs(energy - ref_energy) / abs(ref_energy) if ref_energy and _finite(energy) else None
    ham = getattr(vmc, "hamiltonian", None)
    convention = getattr(ham, "convention", None)
    return {
        "final_energy": energy,
        "final_error": error,
        "final_variance": variance,
        "final_energy_per_site": energy / n_sites,
        "final_source": source,
        "reference_energy": ref_energy,
        "reference_method": (ref.get("method") if ref is not None else None),
        "reference_detail": (reference_detail(ref) if ref is not None else None),
        "reference_note": (None if ref is not None else (ref_error or "no reference available in time")),
        "relative_error": rel,
        "v_score": v_score,
        "iterations_per_second": (run_steps / run_seconds) if run_seconds > 0 else None,
        "compile_seconds": compile_seconds,
        "step_compile_seconds": step_compile_seconds,
        "evaluation_seconds": eval_seconds,
        "wall_seconds": wall_seconds,
        "steps": len(history),
        "parameters": n_params,
        "real_parameters": getattr(vmc, "n_parameters", None),
        "devices": n_devices,
        "device_kind": jax.devices()[0].platform,
        "convention": convention,
        "system": ham.describe() if ham is not None and hasattr(ham, "describe") else None,
        "n_sites": n_sites,
        "phase": phase,
        "message": message,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        # momentum sector and sign structure (issue 4)
        "momentum": [float(x) for x in settings.k] if settings.k is not None else None,
        **(momentum or {"translation_eigenvalue": None, "translation_eigenvalues": None, "measured_momentum": None}),
        "marshall_agreement": (_float(evaluation["marshall_agreement"])
                               if evaluation is not None and evaluation.get("marshall_agreement") is not None
                               else (history[-1].marshall_agreement if history else None)),
        "fidelity": exact_values[0] if exact_values is not None else None,
        "sign_agreement": exact_values[1] if exact_values is not None else None,
        "exact_state": exact_label if exact_values is not None else None,
        "exact_note": None if exact_values is not None else (exact_note or (
            f"ED reaches at most {MAX_EXACT_DIM} basis states; this system has {exact_basis_dim(settings)}"
            if exact_basis_dim(settings) > MAX_EXACT_DIM else "no exact state")),
        "exact_seconds": exact_seconds,
    }
