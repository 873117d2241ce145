"""The run loop: fused VMC steps and the callbacks around them, controllable from another thread.

``run(settings, callback, control, checkpoint, resume)`` builds the engine
(:class:`nqs_core.vmc.VMC`), places its state over every device (:mod:`nqs_core.devices`),
compiles ``settings.steps_per_call`` steps into one function ahead of time (so compilation is
timed apart from the steps), then calls it until ``settings.steps`` steps are done or a callback
ends the run.  Around each call the loop runs its callbacks (:mod:`nqs_core.callbacks`), in order:

* :class:`~nqs_core.callbacks.Control`: pause / resume / stop from :class:`RunControl` (before the next call);
* :class:`~nqs_core.callbacks.Divergence`: phase ``"diverged"`` when the energy or a parameter is
  NaN/inf, keeping (and checkpointing) the last finite state;
* :class:`~nqs_core.callbacks.Reference`: the reference energy event (``kind="reference"``);
* :class:`~nqs_core.callbacks.StoppingRules`: ``time_budget``, ``target_error``, ``target_v_score``;
* :class:`~nqs_core.callbacks.Exact`: fidelity and sign agreement against the ED state;
* :class:`~nqs_core.callbacks.LiveView`: the ``kind="steps"`` event (records, configurations, parameters);
* :class:`~nqs_core.callbacks.Checkpoint`: every ``checkpoint_every`` seconds, on pause and at the end.

At the end (done, stopped, or ended by a stopping rule; not after a divergence) it evaluates the
energy with ``settings.eval_samples`` fresh samples, by the run's compiled step measuring without
learning (``_Steps.evaluate``: nothing more to compile), and returns a :class:`RunResult` whose
``report`` is the typed :class:`~nqs_core.summary.RunSummary` (``summary`` is its dict, as
printed by ``nqs run --json``) with the run's verdict (:mod:`nqs_core.verdict`).

Resuming: ``resume=path`` restores parameters, optimizer state, sampler state (incl. PRNG key)
and history; ``settings.steps`` counts all steps, those in the checkpoint included, so a run of
20 steps resumed with ``steps=40`` does 20 more and equals 40 straight steps.  All settings
except :data:`RESUMABLE_CHANGES` must equal the checkpoint's.

Callback events are delivered from the thread that runs ``run`` (the app's worker thread).
Compiled steps are shared between runs and threads (:class:`CompiledCache`: built once per key).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Hashable, Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.callbacks import (
    Call,
    Callback,
    Checkpoint,
    Control,
    Divergence,
    FrozenStart,
    Exact,
    LiveView,
    Reference,
    RunContext,
    StoppingRules,
)
from nqs_core.checkpoint import load_checkpoint, restore_state
from nqs_core.compile_cache import enable_compile_cache
from nqs_core.devices import (
    describe_devices,
    initialize_distributed,
    place_state,
    replicated,
    state_shardings,
    to_host,
)
from nqs_core.events import PHASES, POLL_SECONDS, STAT_KEYS, RunControl, RunEvent, StepRecord, records_from_stats
from nqs_core.observables import nearest_allowed_momentum, translation_eigenvalues
from nqs_core.run_reference import ExactObserver, ReferenceLookup
from nqs_core.settings import RunSettings, SettingsError
from nqs_core.summary import RunSummary, build_summary
from nqs_core.vmc import VMC, VMCState

__all__ = ["PHASES", "POLL_SECONDS", "STAT_KEYS", "RESUMABLE_CHANGES", "RunControl", "RunEvent", "RunResult",
           "RunSummary", "StepRecord", "Callback", "CompiledCache", "count_parameters", "current_samples",
           "json_safe", "momentum_readout", "run"]

# settings that may differ between a checkpoint and the run resuming it.  ``point_group`` too: the projection
# has no parameters of its own (``PointGroupProjection.init``), so a state trained in A1 of C4 goes on in A1 of
# C4v, the projection of a larger group (symmetry restored in stages: Nomura, J. Phys.: Condens. Matter
# (2021), doi:10.1088/1361-648X/abe268; docs/results/research_recipes.md: the 6×6 J1-J2 C4 state of 15 minutes went
# from 6.4e-3 to 5.3e-3 in 100 C4v steps)
RESUMABLE_CHANGES = ("max_step", "steps", "eval_samples", "steps_per_call", "time_budget", "target_error",
                     "target_v_score", "point_group")


@dataclass
class RunResult:
    """The outcome of ``run``: final phase, history, the typed summary (``report``), final state."""

    settings: RunSettings
    history: list[StepRecord]
    report: RunSummary
    state: VMCState
    phase: str
    message: str
    evaluation: dict[str, Any] | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """The summary as a dict (``nqs run --json``'s keys): ``report.to_dict()``."""
        return self.report.to_dict()

    @property
    def verdict(self) -> str:
        return self.report.verdict


# ----- helpers --------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """A JSON-safe copy of a summary, history or settings value (``nqs run --json``, the app's
    export): NumPy/JAX scalars to Python, NaN/inf to None, tuples to lists, objects with
    ``to_dict`` (RunSummary, StepRecord) to their dicts, keys and unknown objects to strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return json_safe(value.to_dict())
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


def count_parameters(params: Any) -> int:
    """Number of (real or complex) scalars in a parameter pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def _check_resumable(settings: RunSettings, saved: dict[str, Any]) -> None:
    mine = settings.to_dict()
    for name, value in saved.items():
        if name in RESUMABLE_CHANGES or name not in mine:
            continue
        if mine[name] != value:
            raise SettingsError(name, f"resume: the checkpoint was written with {name}={value!r}; these settings "
                                      f"have {name}={mine[name]!r} (only {', '.join(RESUMABLE_CHANGES)} may change)")


def current_samples(vmc: VMC, state: VMCState, n_show: int) -> np.ndarray | None:
    """A few current chain configurations (n_show, N) for the lattice view."""
    if n_show <= 0:
        return None
    if jax.process_count() > 1:  # the chains live on several processes: gather them
        return to_host(state.sampler.sigma)[:n_show]
    return to_host(vmc.samples(state, n_show))


# ----- compiled functions shared between runs (and threads) ----------------------------------------
T = TypeVar("T")


class CompiledCache(Generic[T]):
    """A thread-safe LRU of at most ``maxsize`` values, each built once: concurrent ``get``s of one key
    wait for the first caller's build (no double compile, no KeyError after another thread's eviction).
    Entries hold their engine, so the bound also bounds the engines kept alive."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Future] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], T]) -> tuple[T, bool]:
        """(value, whether this call built it)."""
        with self._lock:
            future = self._entries.get(key)
            mine = future is None
            if mine:
                future = self._entries[key] = Future()
                while len(self._entries) > self.maxsize:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        if not mine:
            return future.result(), False
        try:
            value = build()
        except BaseException as err:
            with self._lock:
                if self._entries.get(key) is future:
                    del self._entries[key]
            future.set_exception(err)
            raise
        future.set_result(value)
        return value, True

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


MAX_COMPILED = 32
_COMPILED: CompiledCache[Any] = CompiledCache(MAX_COMPILED)  # (engine, n, devices) -> compiled steps


def _params_finite(state: VMCState) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(state.params)
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def _compiled_steps(vmc: VMC, n: int, state: VMCState, hyper: Any, shardings: Any, mesh: Any) -> tuple[Any, float]:
    """(compiled ``f(state, hyper) -> (state, stats, params_finite)`` doing n steps, compile seconds; 0
    when another run, in this or another thread, compiled it).

    Uses the engine's jitted ``multi_step(state, hyper, n)`` with the run-time values (lr, shift, …)
    as arguments, so the compiled code is shared, within the process, between runs that differ in
    them (the app's Run button).  Inputs and outputs carry the chain sharding of
    :mod:`nqs_core.devices`, so the state stays split across calls.
    """
    engine = vmc.engine
    seconds = 0.0

    def build() -> Any:
        nonlocal seconds

        def fused(s: VMCState, h: Any) -> tuple[VMCState, dict[str, jax.Array], jax.Array]:
            new, stats = engine.multi_step(s, h, n)
            return new, stats, _params_finite(new)

        whole = replicated(mesh)
        t0 = time.perf_counter()
        jitted = jax.jit(fused, in_shardings=(shardings, whole), out_shardings=(shardings, whole, whole))
        compiled = jitted.lower(state, hyper).compile()
        seconds = time.perf_counter() - t0
        return compiled

    fn, _ = _COMPILED.get((engine, n, tuple(d.id for d in mesh.devices.flat)), build)
    return fn, seconds


MAX_AXIS_EIGENVALUES = 8
_AXIS_EIGENVALUES: CompiledCache[Any] = CompiledCache(MAX_AXIS_EIGENVALUES)  # engine -> jitted eigenvalues
MOMENTUM_SAMPLES = 256


def _axis_eigenvalues(vmc: VMC, state: VMCState) -> np.ndarray:
    """(d,) ⟨ψ(shift(σ, e_a))/ψ(σ)⟩ per axis over ``MOMENTUM_SAMPLES`` fresh samples (the engine's
    sampler from the current chains; the chains' state is not advanced).  Compiled once per engine."""
    engine = vmc.engine

    def build() -> Callable[..., jax.Array]:
        per_chain = max(1, -(-MOMENTUM_SAMPLES // vmc.settings.chains))
        n = engine.lattice.n_sites

        @jax.jit
        def fn(params: Any, sampler_state: Any) -> jax.Array:
            _, sigma, _, _ = engine.sampler.sample(lambda x: engine.model.apply(params, x), sampler_state, per_chain)
            return translation_eigenvalues(engine.model.apply, params, sigma.reshape(-1, n), engine.lattice)

        return fn

    fn, _ = _AXIS_EIGENVALUES.get(engine, build)
    return np.array(to_host(fn(state.params, state.sampler)), dtype=np.complex128)


def momentum_readout(vmc: VMC, state: VMCState, evaluation: dict[str, Any] | None,
                     history: list[StepRecord]) -> dict[str, Any] | None:
    """``translation_eigenvalue`` [re, im] along x (final evaluation, else the last step),
    ``translation_eigenvalues`` per axis (y on the square from ``MOMENTUM_SAMPLES`` fresh samples) and
    the ``measured_momentum`` k/π they imply (nearest allowed momentum per axis); None without
    translations (open boundaries)."""
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
_BUILD_LOCK = threading.Lock()  # engine_for's lru_cache may build one configuration twice when raced


class _Steps:
    """The fused-step calls of one run: ``hyper`` placed once, compiled functions from ``_COMPILED``.

    The state's buffers are never donated to a call, so the parameters sent with a ``steps`` event stay
    valid (readable from any thread) after later calls (test_driver checks the first event's).
    """

    def __init__(self, vmc: VMC, state: VMCState, shardings: Any, mesh: Any):
        self.vmc, self.template, self.shardings, self.mesh = vmc, state, shardings, mesh
        self.hyper = jax.device_put(vmc.hyper, replicated(mesh))
        self.last_n: int | None = None  # steps in the last call: a size compiled already

    def evaluate(self, ctx: RunContext, n_samples: int) -> dict[str, Any]:
        """The final evaluation by the run's own compiled steps, measuring without learning: ⌈n_samples /
        samples⌉ batches of the step's, in calls of the last call's size (no program to compile but the
        statistics'), the chains moving on from the run's state, which is left as it is."""
        s = self.vmc.settings
        n = self.last_n or min(s.steps_per_call, max(1, -(-n_samples // s.samples)))
        fn = self.compiled(ctx, n)
        whole = replicated(self.mesh)
        return self.vmc.engine.evaluate_by_steps(lambda state, hyper: fn(state, jax.device_put(hyper, whole))[:2],
                                                 ctx.state, self.hyper, n_samples, n)

    def compiled(self, ctx: RunContext, n: int) -> Any:
        fn, seconds = _compiled_steps(self.vmc, n, self.template, self.hyper, self.shardings, self.mesh)
        ctx.compile_seconds += seconds
        return fn

    def fresh(self, restart: int) -> VMCState:
        """New parameters, optimizer state and chains (``VMC.init(restart)``), placed like the run's state."""
        return place_state(self.vmc.init(restart), self.shardings)

    def call(self, ctx: RunContext, n: int) -> Call:
        """Run ``n`` steps from ``ctx.state``; the outcome as a :class:`Call` (not yet in the history)."""
        self.last_n = n
        fn = self.compiled(ctx, n)
        t0 = time.perf_counter()
        new_state, stats, params_ok = fn(ctx.state, self.hyper)
        stats = {k: to_host(v) for k, v in stats.items()}
        params_ok = bool(to_host(params_ok))
        dt = time.perf_counter() - t0
        ctx.run_seconds += dt
        ctx.run_steps += n
        return Call(new_state, stats, records_from_stats(stats, len(ctx.history), dt), params_ok, dt)


def _build(settings: RunSettings, resume: str | Path | None, control: RunControl,
           emit: Callable[[RunEvent], None], observer: ExactObserver) -> tuple[RunContext, _Steps]:
    """The engine, its (restored, placed) state and the loop's context."""
    history: list[StepRecord] = []
    saved = None
    if resume is not None:
        saved = load_checkpoint(resume)
        _check_resumable(settings, saved.settings)
        history = [StepRecord.from_dict(d) for d in saved.history]
    with _BUILD_LOCK:
        vmc = VMC(settings)
    state = vmc.init()
    if saved is not None:
        state = restore_state(saved, state)
    mesh = vmc.engine.mesh
    shardings = state_shardings(state, settings.chains, mesh)
    state = place_state(state, shardings)
    observer.set_model(vmc.model.apply, state.params)
    ctx = RunContext(settings, vmc, state, control, emit, history=history, n_devices=int(mesh.devices.size),
                     n_params=count_parameters(state.params))
    return ctx, _Steps(vmc, state, shardings, mesh)


def _loop(ctx: RunContext, steps: _Steps) -> None:
    """Fused calls until ``settings.steps`` steps are done or a callback ends the run."""
    total = ctx.settings.steps
    ctx.t_loop = time.perf_counter()
    while len(ctx.history) < total:
        for cb in ctx.callbacks:
            cb.before_call(ctx)
        if ctx.stopping:
            break
        call = steps.call(ctx, min(ctx.settings.steps_per_call, total - len(ctx.history)))
        for cb in ctx.callbacks:
            cb.check_call(ctx, call)
        ctx.history.extend(call.records)
        ctx.state = call.state
        for cb in ctx.callbacks:
            cb.after_steps(ctx, call.records)
        if ctx.stopping:
            break
    if ctx.stop_reason is None:
        ctx.message = f"done: {len(ctx.history)} steps"


def _evaluate(ctx: RunContext, steps: _Steps) -> None:
    """The final evaluation with ``eval_samples`` fresh samples (``_Steps.evaluate``): after a done, stopped
    or budget-ended run (not after a divergence, nor for a stop before any step)."""
    n = ctx.settings.eval_samples
    if ctx.phase == "diverged" or n <= 0 or not (ctx.history or ctx.phase == "done"):
        return
    ctx.emit(RunEvent(kind="phase", phase="running", message=f"final evaluation with {n} samples"))
    t0 = time.perf_counter()
    ctx.evaluation = steps.evaluate(ctx, n)
    ctx.eval_seconds = time.perf_counter() - t0


def _finish(ctx: RunContext, steps: _Steps, checkpoint: str | Path | None) -> RunResult:
    """Evaluation, end callbacks, summary with its verdict, final checkpoint and phase event."""
    _evaluate(ctx, steps)
    for cb in ctx.callbacks:
        cb.on_end(ctx)
    momentum = momentum_readout(ctx.vmc, ctx.state, ctx.evaluation, ctx.history)
    report = build_summary(ctx, momentum, time.perf_counter() - ctx.t_start,
                           str(checkpoint) if checkpoint is not None else None)
    if report.verdict == "failed" and ctx.phase != "diverged":
        ctx.message = report.message = f"{ctx.message}; FAILED: {report.warnings[0]}"
    for cb in ctx.callbacks:
        cb.on_finish(ctx)
    ctx.emit(RunEvent(kind="phase", phase=ctx.phase, message=ctx.message, verdict=report.verdict,
                      warnings=tuple(report.warnings), summary=report.to_dict()))
    return RunResult(settings=ctx.settings, history=ctx.history, report=report, state=ctx.state,
                     phase=ctx.phase, message=ctx.message, evaluation=ctx.evaluation)


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
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Run VMC for ``settings.steps`` steps (see the module docstring); return the result.

    ``n_show`` configurations are sent with every ``steps`` event.  ``reference=False`` skips
    the reference energy; otherwise it is looked up in a background thread (closed form, ED,
    cached or shipped values; a new DMRG run only with ``reference_dmrg=True``, as the CLI does,
    since a thread cannot be cancelled) and the summary waits at most ``reference_timeout``
    seconds for it at the end.  ``exact=True`` measures the fidelity and sign agreement against the
    ED state of the run's sector where ED reaches (basis ≤ ``MAX_EXACT_DIM``; ``run_reference.ExactObserver``),
    throttled to a small share of the run time, into the ``StepRecord`` of a call's last step.
    ``callbacks`` run after the built-in ones (:class:`nqs_core.callbacks.Callback`).
    """
    t_start = time.perf_counter()
    initialize_distributed()
    enable_compile_cache()
    settings.validate()
    control = control or RunControl()
    emit = callback or (lambda event: None)
    emit(RunEvent(kind="phase", phase="compiling", message="building the model and compiling the step"))
    lookup = ReferenceLookup(settings, reference, reference_dmrg)
    observer = ExactObserver(settings, exact)
    try:
        ctx, steps = _build(settings, resume, control, emit, observer)
        ctx.t_start = t_start
        ctx.callbacks = [Control(), Divergence(), FrozenStart(steps.fresh), Reference(lookup, reference_timeout),
                         StoppingRules(),
                         Exact(observer, reference_timeout), LiveView(n_show, current_samples)]
        if checkpoint is not None:
            ctx.callbacks.append(Checkpoint(checkpoint, checkpoint_every))
        ctx.callbacks.extend(callbacks)
        steps.compiled(ctx, min(settings.steps_per_call, max(1, settings.steps - len(ctx.history))))
        ctx.setup_seconds = time.perf_counter() - t_start
        emit(RunEvent(kind="phase", phase="running", message=f"running on {describe_devices(ctx.n_devices)}; "
                                                            f"compiled in {ctx.setup_seconds:.1f} s"))
        _loop(ctx, steps)
        return _finish(ctx, steps, checkpoint)
    finally:
        observer.cancel()  # also when building the model raised: its thread must not wait for it forever
