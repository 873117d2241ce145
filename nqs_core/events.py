"""What a run reports and how it is steered: :class:`StepRecord`, :class:`RunEvent`, :class:`RunControl`.

These types are shared by the run loop (:mod:`nqs_core.driver`), its callbacks
(:mod:`nqs_core.callbacks`) and their readers (the CLI, the app's worker); ``nqs_core.driver``
re-exports them, so ``from nqs_core.driver import RunEvent`` keeps working.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from nqs_core.vmc import STAT_KEYS as ENGINE_STAT_KEYS

PHASES = ("compiling", "running", "paused", "stopped", "diverged", "done")
# the per-step statistics a StepRecord carries (the engine's, less its internal ``finite`` flag)
STAT_KEYS = tuple(k for k in ENGINE_STAT_KEYS if k != "finite")
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


def records_from_stats(stats: dict[str, np.ndarray], first_step: int, seconds: float) -> list[StepRecord]:
    """One :class:`StepRecord` per step of a fused call (stats of shape (n,)), ``seconds`` shared evenly."""
    n = len(np.atleast_1d(stats["energy"]))
    column = {k: np.atleast_1d(v) for k, v in stats.items()}
    out = []
    for i in range(n):
        values = {k: float(np.real(column[k][i])) if k in column else float("nan") for k in STAT_KEYS}
        rec = StepRecord(step=first_step + i, seconds=seconds / n, **values)
        if "translation_eigenvalue" in column:
            z = complex(column["translation_eigenvalue"][i])
            rec.translation_eigenvalue = (z.real, z.imag)
        for key in ("marshall_agreement", "sign_agreement"):
            if key in column:
                setattr(rec, key, float(np.real(column[key][i])))
        out.append(rec)
    return out


@dataclass(frozen=True)
class RunEvent:
    """What ``run`` reports: a phase change, a batch of steps, or the reference energy.

    ``kind="steps"`` events also carry ``params``, the parameters after the last of their steps
    (a pytree of immutable JAX arrays: read them, e.g. ``model.apply(params, σ)``, from any thread;
    ``params_step`` is the number of steps they include), so a live view needs no checkpoint file.
    The last ``kind="phase"`` event carries the run's ``verdict`` ("ok" | "warning" | "failed"),
    its ``warnings`` (the reasons, failures first) and the ``summary`` dict.
    """

    kind: str  # "phase" | "steps" | "reference"
    phase: str | None = None
    message: str = ""
    records: list[StepRecord] = field(default_factory=list)
    samples: np.ndarray | None = None
    reference: dict[str, Any] | None = None
    params: Any = None
    params_step: int | None = None
    verdict: str | None = None
    warnings: tuple[str, ...] = ()
    summary: dict[str, Any] | None = None


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

    def wait(self, timeout: float | None) -> bool:
        """Block while paused, at most ``timeout`` seconds; True when running may go on."""
        return self._go.wait(timeout)
