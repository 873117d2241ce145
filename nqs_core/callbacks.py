"""The run loop's callbacks (in the manner of NetKet's driver callbacks) and the state they share.

:func:`nqs_core.driver.run` runs fused VMC steps; around each fused call it calls, in order, every
:class:`Callback` of the run (a list, so the order is explicit; ``run(..., callbacks=[...])`` appends
one's own after the built-in ones):

* ``before_call(ctx)``: between calls (pause / stop, the reference event);
* ``check_call(ctx, call)``: on a call's raw outcome, before its steps join the history (it may keep
  only a prefix of the steps and the state before them: divergence);
* ``after_steps(ctx, records)``: once the steps joined the history (a restart after a frozen start,
  stopping rules, the exact observer, the live view, the periodic checkpoint);
* ``on_pause(ctx)``: when the run is about to block on Pause (the checkpoint);
* ``on_end(ctx)``: after the loop and the final evaluation (wait for the reference / exact state);
* ``on_finish(ctx)``: after the summary was built (the final checkpoint).

A callback ends the run with ``ctx.stop(phase, message, reason)``; the first request wins.
All calls happen on the thread that runs ``run``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nqs_core.checkpoint import save_checkpoint
from nqs_core.events import POLL_SECONDS, RunControl, RunEvent, StepRecord
from nqs_core.run_reference import ExactObserver, ReferenceLookup
from nqs_core.settings import NATURAL_GRADIENT, RunSettings
from nqs_core.verdict import FAR_ABOVE, FROZEN_ACCEPTANCE, SIGMAS, WINDOW
from nqs_core.vmc import VMC, VMCState


@dataclass
class Call:
    """One fused call's outcome: the new state, its per-step records, whether its parameters are finite."""

    state: VMCState
    stats: dict[str, np.ndarray]
    records: list[StepRecord]
    params_ok: bool
    seconds: float


@dataclass
class RunContext:
    """Everything the loop and its callbacks share (one per run, used from the run's thread only)."""

    settings: RunSettings
    vmc: VMC
    state: VMCState
    control: RunControl
    emit: Callable[[RunEvent], None]
    history: list[StepRecord] = field(default_factory=list)
    callbacks: list["Callback"] = field(default_factory=list)
    n_devices: int = 1
    n_params: int = 0
    phase: str = "done"
    message: str = ""
    stop_reason: str | None = None  # "stopped" | "diverged" | "time_budget" | "target_error" | "target_v_score"
    reference: dict[str, Any] | None = None
    reference_note: str | None = None
    evaluation: dict[str, Any] | None = None
    exact: dict[str, Any] = field(default_factory=dict)  # fidelity, sign_agreement, label, note, seconds
    restarts: list[str] = field(default_factory=list)  # FrozenStart's notes, one per restart
    # timing (perf_counter seconds)
    t_start: float = 0.0
    setup_seconds: float = 0.0  # start to the first call, compilation included
    compile_seconds: float = 0.0  # compiling the fused steps alone
    run_seconds: float = 0.0  # inside the compiled calls
    run_steps: int = 0
    eval_seconds: float = 0.0
    t_loop: float = 0.0  # when the loop started
    paused_seconds: float = 0.0

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    def stop(self, phase: str, message: str, reason: str) -> None:
        """End the run after the current call (the first request wins)."""
        if self.stop_reason is None:
            self.phase, self.message, self.stop_reason = phase, message, reason

    @property
    def last_call(self) -> bool:
        """Whether the steps just done are the run's last."""
        return self.stopping or len(self.history) >= self.settings.steps or self.control.stopped

    def active_seconds(self) -> float:
        """Wall time of the loop so far, pauses excluded."""
        return time.perf_counter() - self.t_loop - self.paused_seconds


class Callback:
    """A run-loop callback: override the hooks it needs (see the module docstring)."""

    def before_call(self, ctx: RunContext) -> None:
        pass

    def check_call(self, ctx: RunContext, call: Call) -> None:
        pass

    def after_steps(self, ctx: RunContext, records: list[StepRecord]) -> None:
        pass

    def on_pause(self, ctx: RunContext) -> None:
        pass

    def on_end(self, ctx: RunContext) -> None:
        pass

    def on_finish(self, ctx: RunContext) -> None:
        pass


class Control(Callback):
    """Pause / resume / stop from :class:`RunControl`: blocks while paused (after ``on_pause`` of every
    callback), ends the run with phase ``"stopped"`` once asked to."""

    def before_call(self, ctx: RunContext) -> None:
        control = ctx.control
        if control.paused:
            for cb in ctx.callbacks:
                cb.on_pause(ctx)
            ctx.emit(RunEvent(kind="phase", phase="paused", message=f"paused after step {len(ctx.history)}"))
            t0 = time.perf_counter()
            while not control.wait(POLL_SECONDS):
                pass
            ctx.paused_seconds += time.perf_counter() - t0
            if not control.stopped:
                ctx.emit(RunEvent(kind="phase", phase="running", message=f"resumed at step {len(ctx.history)}"))
        if control.stopped:
            ctx.stop("stopped", f"stopped after step {len(ctx.history)} of {ctx.settings.steps}", "stopped")


class Divergence(Callback):
    """A call whose energy or parameters became NaN/inf, or whose energy left twice the bound on ‖H‖
    (``Hamiltonian.norm_bound``): keep the steps before it (the engine keeps the last good state
    inside a call, ``stats["finite"]``) and end with phase ``"diverged"``."""

    def check_call(self, ctx: RunContext, call: Call) -> None:
        finite = np.isfinite(np.atleast_1d(call.stats["energy"])) & np.atleast_1d(call.stats["finite"])
        if finite.all() and call.params_ok:
            return
        good = int(np.argmin(finite)) if not finite.all() else len(finite) - 1
        where = len(ctx.history) + good
        if call.params_ok:
            call.records = call.records[:good]
        else:  # the returned parameters are not finite: keep the state before the call
            call.records, call.state = [], ctx.state
        s = ctx.settings
        kept = len(ctx.history) + len(call.records)
        ctx.stop("diverged",
                 f"diverged: the energy or the parameters became NaN/inf, or |E| exceeded twice the bound on "
                 f"the Hamiltonian's norm, at step {where} (lr={s.lr:g}, optimizer={s.optimizer}); kept the "
                 f"last good state (after {kept} steps); "
                 f"try a smaller learning rate (e.g. lr={s.lr / 10:g})"
                 + ("" if s.optimizer in NATURAL_GRADIENT else " or optimizer=sr"), "diverged")


class FrozenStart(Callback):
    """Start again from fresh parameters when the chains froze early, far above the reference.

    From a nearly flat state with the wrong sign, the first SR steps can concentrate |ψ|² on a few
    configurations (the Néel states of J1-J2 4×4, E = −4 against E₀ = −8.46; docs/results/research_recipes.md):
    every sample is then the same configuration, the variance and the gradient vanish and Metropolis
    accepts nothing, so the run cannot leave.  When the last ``WINDOW`` steps all accepted less than
    ``FROZEN_ACCEPTANCE`` while the energy sits above the reference by more than max(``SIGMAS``·δE,
    ``FAR_ABOVE``·|E_ref|) (the verdict's thresholds), in the first half of the run, the state is replaced by
    ``fresh(k)`` (new parameters, optimizer state and chains; k = 1, 2, …, at most ``MAX_RESTARTS``).  The
    frozen steps stay in the history; the summary lists each restart (``restarts``)."""

    MAX_RESTARTS = 3

    def __init__(self, fresh: Callable[[int], VMCState]):
        self.fresh = fresh

    def frozen(self, ctx: RunContext) -> bool:
        last = ctx.history[-WINDOW:]
        ref = ctx.reference.get("energy") if ctx.reference is not None else None
        if ctx.settings.sampler == "exact" or len(last) < WINDOW or ref is None:
            return False
        if any(r.acceptance >= FROZEN_ACCEPTANCE for r in last):
            return False
        e_ref, e = float(getattr(ref, "real", ref)), last[-1]
        return e.energy - e_ref > max(SIGMAS * e.error, FAR_ABOVE * abs(e_ref))

    def after_steps(self, ctx: RunContext, records: list[StepRecord]) -> None:
        if len(ctx.restarts) >= self.MAX_RESTARTS or len(ctx.history) > ctx.settings.steps // 2 or ctx.stopping:
            return
        if self.frozen(ctx):
            last = ctx.history[-1]
            ctx.restarts.append(f"restarted after step {last.step} from fresh parameters: the chains froze "
                                f"(acceptance < {FROZEN_ACCEPTANCE:g} for {WINDOW} steps) at E = {last.energy:.6g}, "
                                "far above the reference")
            ctx.state = self.fresh(len(ctx.restarts)).replace(step=ctx.state.step)


class Reference(Callback):
    """Sends the reference energy (``kind="reference"``) as soon as the background lookup has it; at
    the end waits at most ``timeout`` seconds for it (none after a stop or divergence)."""

    def __init__(self, lookup: ReferenceLookup, timeout: float):
        self.lookup, self.timeout, self.sent = lookup, timeout, False

    def _send(self, ctx: RunContext, ref: dict[str, Any] | None) -> None:
        if ref is not None and not self.sent:
            ctx.reference, self.sent = ref, True
            ctx.emit(RunEvent(kind="reference", reference=ref))

    def before_call(self, ctx: RunContext) -> None:
        if self.lookup.ready:
            self._send(ctx, self.lookup.result)

    def on_end(self, ctx: RunContext) -> None:
        self._send(ctx, self.lookup.wait(self.timeout if ctx.phase == "done" else 0.0))
        ctx.reference_note = None if ctx.reference is not None else (
            self.lookup.error or "no reference available in time")


class Exact(Callback):
    """Fidelity and sign agreement against the ED state (:class:`ExactObserver`, throttled), written
    into the record of a call's last step; at the end the values and the exact energy of the final state."""

    def __init__(self, observer: ExactObserver, timeout: float):
        self.observer, self.timeout = observer, timeout
        self.final: tuple[int, float, float] | None = None  # (steps done, fidelity, sign agreement)

    def after_steps(self, ctx: RunContext, records: list[StepRecord]) -> None:
        if records and self.observer.due(ctx.last_call):
            f, sgn = self.observer.measure(ctx.state.params)
            records[-1].fidelity, records[-1].sign_agreement = f, sgn
            self.final = (records[-1].step + 1, f, sgn)

    def on_end(self, ctx: RunContext) -> None:
        obs, values = self.observer, None
        if self.final is not None and self.final[0] == len(ctx.history):
            values = self.final[1:]
        elif obs.wait(self.timeout if ctx.phase == "done" else 0.0) and ctx.history:
            values = obs.measure(ctx.state.params)
            ctx.history[-1].fidelity, ctx.history[-1].sign_agreement = values
        energy = obs.energy() if values is not None else None  # of the state just measured: the final one
        obs.cancel()  # a stopped run leaves no ED behind
        ctx.exact = {"values": values, "energy": energy, "label": obs.label, "note": obs.error,
                     "seconds": obs.total}


class LiveView(Callback):
    """The ``kind="steps"`` event: the records, ``n_show`` current configurations and the parameters."""

    def __init__(self, n_show: int, samples: Callable[[VMC, VMCState, int], np.ndarray | None]):
        self.n_show, self.samples = n_show, samples

    def after_steps(self, ctx: RunContext, records: list[StepRecord]) -> None:
        if records:
            ctx.emit(RunEvent(kind="steps", records=records, samples=self.samples(ctx.vmc, ctx.state, self.n_show),
                              params=ctx.state.params, params_step=len(ctx.history)))


class Checkpoint(Callback):
    """The checkpoint file: every ``every`` seconds while running, on pause, and at the end."""

    def __init__(self, path: str | Path, every: float):
        self.path, self.every = path, every
        self.last = time.perf_counter()

    def save(self, ctx: RunContext, phase: str, message: str) -> None:
        save_checkpoint(self.path, ctx.state, ctx.settings.to_dict(), [r.to_dict() for r in ctx.history],
                        extra={"phase": phase, "message": message, "devices": ctx.n_devices})
        self.last = time.perf_counter()

    def after_steps(self, ctx: RunContext, records: list[StepRecord]) -> None:
        if not ctx.last_call and time.perf_counter() - self.last > self.every:
            self.save(ctx, "running", "")

    def on_pause(self, ctx: RunContext) -> None:
        self.save(ctx, "paused", "")

    def on_finish(self, ctx: RunContext) -> None:
        self.save(ctx, ctx.phase, ctx.message)


class StoppingRules(Callback):
    """Ends the run (phase ``"done"``) when a rule of the settings is met (issue 9, item 2):

    * ``time_budget`` T: when the next call would end past T seconds of loop time (pauses excluded,
      compilation and the final evaluation not counted): t + t_call > T, t_call the last call's time;
    * ``target_error`` ε (needs a reference E_ref): over the last ``WINDOW`` steps, |Ē − E_ref|/|E_ref| ≤ ε
      and the error of Ē, (mean error)/√W, is itself ≤ ε|E_ref|;
    * ``target_v_score`` v: N·mean(Var)/Ē² ≤ v over the last ``WINDOW`` steps (Wu et al. 2024).
    """

    WINDOW = 10

    def after_steps(self, ctx: RunContext, records: list[StepRecord]) -> None:
        if not records or ctx.stopping:
            return
        for rule in (self._budget, self._target_error, self._target_v_score):
            found = rule(ctx, records)
            if found is not None:
                reason, text = found
                ctx.stop("done", f"done: {text} after {len(ctx.history)} of {ctx.settings.steps} steps", reason)
                return

    @staticmethod
    def _budget(ctx: RunContext, records: list[StepRecord]) -> tuple[str, str] | None:
        budget = ctx.settings.time_budget
        last_call = sum(r.seconds for r in records)
        if budget is not None and ctx.active_seconds() + last_call > budget:
            return "time_budget", f"time budget of {budget:g} s used"
        return None

    def _window(self, ctx: RunContext) -> tuple[float, float, float] | None:
        """(mean energy, its error, mean variance) over the last WINDOW steps; None before WINDOW steps."""
        last = ctx.history[-self.WINDOW:]
        if len(last) < self.WINDOW:
            return None
        e = float(np.mean([r.energy for r in last]))
        err = float(np.mean([r.error for r in last])) / math.sqrt(len(last))
        return e, err, float(np.mean([r.variance for r in last]))

    def _target_error(self, ctx: RunContext, records: list[StepRecord]) -> tuple[str, str] | None:
        target, ref = ctx.settings.target_error, ctx.reference
        if target is None or ref is None or ref.get("energy") is None or (w := self._window(ctx)) is None:
            return None
        e_ref = float(ref["energy"])
        rel = abs(w[0] - e_ref) / abs(e_ref)
        if rel <= target and w[1] <= target * abs(e_ref):
            return "target_error", (f"target relative error {target:g} reached "
                                    f"({rel:.2e} over the last {self.WINDOW} steps)")
        return None

    def _target_v_score(self, ctx: RunContext, records: list[StepRecord]) -> tuple[str, str] | None:
        target = ctx.settings.target_v_score
        if target is None or (w := self._window(ctx)) is None or w[0] == 0:
            return None
        v = ctx.settings.n_sites * w[2] / w[0] ** 2
        if v <= target:
            return "target_v_score", f"target V-score {target:g} reached ({v:.2e} over the last {self.WINDOW} steps)"
        return None

