"""A run's verdict: did it fail, and why (issue 9, item 3) — never a silent "done".

:func:`assess` reads the final estimate (the evaluation when there is one, else the last steps),
the sampler diagnostics and the reference, and returns a :class:`Verdict`:

* ``failed`` when
  - the run diverged (NaN/inf);
  - the chains stopped moving: acceptance < ``FROZEN_ACCEPTANCE`` (Metropolis only);
  - split R̂ (Gelman & Rubin; Vehtari et al. 2021) is not finite or > ``R_HAT_FAIL``, from at least
    ``R_HAT_MIN_SAMPLES`` samples per chain (fewer: a warning only, as R̂ of such short halves is noise);
  - the variance collapsed, Var(E) ≤ ``COLLAPSED_VARIANCE``·E_ref², while E sits above the reference by
    more than max(``SIGMAS``·δE, ``FAR_ABOVE``·|E_ref|): a zero-variance state is an eigenstate or a
    single frozen configuration, and this one is not the ground state;
  - E lies below an *exact* reference (closed form or ED) by more than max(``SIGMAS``·δE, 1e-9|E_ref|):
    impossible for a variational energy, so the estimate is biased (non-ergodic or unequilibrated
    chains) or the reference belongs to another sector or convention;
* ``warning`` for acceptance < ``LOW_ACCEPTANCE``, R̂ > ``R_HAT_WARN``, targets not reached, a fidelity with
  the exact ground state below ``LOW_FIDELITY`` (where ED reaches) and restarts after a frozen start;
* ``ok`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from nqs_core.events import StepRecord
from nqs_core.settings import RunSettings

FROZEN_ACCEPTANCE = 1e-3
LOW_ACCEPTANCE = 0.01
R_HAT_WARN = 1.1
R_HAT_FAIL = 1.5
COLLAPSED_VARIANCE = 1e-8
FAR_ABOVE = 1e-2
SIGMAS = 4.0
LOW_FIDELITY = 0.9
WINDOW = 10  # steps whose median acceptance / R̂ stand in for the evaluation's
# Split R̂ compares the chains' half means: from 4 chains of 8 samples (halves of 4), R̂ > 1.5 came out of
# well-mixed tiny runs (2 of 12 seeds of a 2-step ConvNeXt chain run with 32 samples).  Halves of 16 samples
# make it a measurement.
R_HAT_MIN_SAMPLES = 32


@dataclass(frozen=True)
class Verdict:
    """``verdict`` ("ok" | "warning" | "failed") and its reasons, failures first."""

    verdict: str
    warnings: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """The first failure, else the first warning, else ""."""
        return (self.failures or self.warnings or ("",))[0]


@dataclass(frozen=True)
class Estimate:
    """What the verdict is judged on: the final energy ± error, variance, acceptance and R̂."""

    energy: float
    error: float
    variance: float
    acceptance: float
    r_hat: float
    samples_per_chain: int | None = None  # what R̂ was computed from (None: unknown, judged as enough)

    @classmethod
    def of(cls, evaluation: dict[str, Any] | None, history: Sequence[StepRecord],
           settings: RunSettings | None = None) -> "Estimate":
        """From the final evaluation, else the last step (energy) and the last ``WINDOW`` steps (median
        acceptance and R̂); ``settings`` give the samples per chain."""
        last = list(history[-WINDOW:])
        acc = float(np.median([r.acceptance for r in last])) if last else math.nan
        r_hat = float(np.median([r.r_hat for r in last])) if last else math.nan
        if evaluation is not None:
            get = lambda k, d: float(np.real(evaluation.get(k, d)))  # noqa: E731
            per_chain = None
            if settings is not None and evaluation.get("n_samples"):
                per_chain = int(evaluation["n_samples"]) // settings.chains
            return cls(get("energy", math.nan), get("error", math.nan), get("variance", math.nan),
                       get("acceptance", acc), get("r_hat", r_hat), per_chain)
        if not last:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan)
        r = last[-1]
        return cls(r.energy, r.error, r.variance, acc, r_hat,
                   settings.samples // settings.chains if settings is not None else None)


def is_exact(ref: dict[str, Any] | None) -> bool:
    """Whether a reference is exact (closed form or ED, of the run's sector), not DMRG or published."""
    method = str((ref or {}).get("method") or "")
    return method == "exact" or method.startswith("ed")


def _sampler_checks(settings: RunSettings, est: Estimate) -> tuple[list[str], list[str]]:
    failures: list[str] = []
    warnings: list[str] = []
    if settings.sampler == "exact":  # independent samples: no chains to freeze or mix
        return failures, warnings
    if est.acceptance < FROZEN_ACCEPTANCE:
        failures.append(f"the chains stopped moving: acceptance {est.acceptance:.1e} (< {FROZEN_ACCEPTANCE:g}); "
                        "the samples repeat one configuration, so the energy and its error bar mean nothing")
    elif est.acceptance < LOW_ACCEPTANCE:
        warnings.append(f"low acceptance {est.acceptance:.3f} (< {LOW_ACCEPTANCE:g}): the chains barely move")
    too_short = est.samples_per_chain is not None and est.samples_per_chain < R_HAT_MIN_SAMPLES
    if too_short and (not math.isfinite(est.r_hat) or est.r_hat > R_HAT_WARN):
        warnings.append(f"split R̂ = {est.r_hat:.3g} from only {est.samples_per_chain} samples per chain "
                        f"(< {R_HAT_MIN_SAMPLES}): too few to judge whether the chains mix")
    elif not math.isfinite(est.r_hat) or est.r_hat > R_HAT_FAIL:
        failures.append(f"split R̂ = {est.r_hat:.3g} is far from 1 (> {R_HAT_FAIL:g}): the chains sample different "
                        "distributions (not mixed)")
    elif est.r_hat > R_HAT_WARN:
        warnings.append(f"split R̂ = {est.r_hat:.3f} > {R_HAT_WARN:g}: the chains are not well mixed")
    return failures, warnings


def _reference_checks(est: Estimate, ref: dict[str, Any] | None) -> list[str]:
    if ref is None or ref.get("energy") is None or not math.isfinite(est.energy):
        return []
    e_ref = float(ref["energy"])
    err = est.error if math.isfinite(est.error) else 0.0
    out = []
    above = est.energy - e_ref
    if math.isfinite(est.variance) and est.variance <= COLLAPSED_VARIANCE * e_ref**2 \
            and above > max(SIGMAS * err, FAR_ABOVE * abs(e_ref)):
        out.append(f"the variance collapsed (Var = {est.variance:.1e}) while E = {est.energy:.6g} sits "
                   f"{above / abs(e_ref):.1%} above the reference {e_ref:.6g}: the state is stuck in one "
                   "configuration or an excited eigenstate")
    if is_exact(ref) and -above > max(SIGMAS * err, 1e-9 * abs(e_ref)):
        out.append(f"E = {est.energy:.8g} ± {err:.1e} lies below the exact reference {e_ref:.8g} "
                   f"({ref.get('method')}) by {-above:.2e} ({-above / err if err > 0 else math.inf:.1f} error bars): "
                   "the estimate is biased (chains not ergodic or not equilibrated) or the reference is for "
                   "another sector")
    return out


def _target_checks(settings: RunSettings, summary: dict[str, Any]) -> list[str]:
    out = []
    rel, v = summary.get("relative_error"), summary.get("v_score")
    if settings.target_error is not None:
        if rel is None:
            out.append(f"target relative error {settings.target_error:g} not checked: no reference")
        elif rel > settings.target_error:
            out.append(f"target relative error {settings.target_error:g} not reached: final {rel:.2e}")
    if settings.target_v_score is not None and (v is None or v > settings.target_v_score):
        out.append(f"target V-score {settings.target_v_score:g} not reached: final "
                   + (f"{v:.2e}" if v is not None else "unknown"))
    return out


def _state_checks(summary: dict[str, Any]) -> list[str]:
    """Warnings about the state itself, where the exact state is known: a low fidelity (a local minimum
    whose small error bar alone would look converged) and the restarts after a frozen start."""
    out = list(summary.get("restarts") or [])
    f = summary.get("fidelity")
    if f is not None and f < LOW_FIDELITY:
        out.append(f"the final state overlaps the exact ground state only |⟨ψ₀|ψ⟩|² = {f:.3f} (< {LOW_FIDELITY:g}): "
                   "a local minimum, not the ground state (try another seed or a sign prior)")
    return out


def assess(settings: RunSettings, est: Estimate, ref: dict[str, Any] | None, phase: str, message: str,
           summary: dict[str, Any] | None = None) -> Verdict:
    """The verdict of a finished run (see the module docstring for the rules)."""
    failures = [message] if phase == "diverged" else []
    sampler_failures, warnings = _sampler_checks(settings, est)
    failures += sampler_failures + _reference_checks(est, ref)
    warnings += _target_checks(settings, summary or {}) + _state_checks(summary or {})
    verdict = "failed" if failures else "warning" if warnings else "ok"
    return Verdict(verdict, tuple(failures + warnings), tuple(failures))
