"""The run summary as a typed object: :class:`RunSummary`, built from the loop's :class:`RunContext`.

``RunSummary.to_dict()`` has the keys ``nqs run --json`` prints as ``{"summary": …}`` and the app
exports (field order = key order).  V-score V = N·Var(E)/E² (Wu et al., Science 2024, E_∞ = 0);
relative error |E − E_ref|/|E_ref|.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import jax

from nqs_core.callbacks import RunContext
from nqs_core.run_reference import MAX_EXACT_DIM, exact_basis_dim, reference_detail
from nqs_core.verdict import Estimate, assess


@dataclass
class RunSummary:
    """What ``run`` reports at the end (``nqs run --json``'s summary; see :meth:`to_dict`)."""

    final_energy: float
    final_error: float
    final_variance: float
    final_energy_per_site: float
    final_source: str
    reference_energy: float | None
    reference_method: str | None
    reference_detail: str | None
    reference_note: str | None
    relative_error: float | None
    v_score: float | None
    iterations_per_second: float | None
    compile_seconds: float
    step_compile_seconds: float
    evaluation_seconds: float
    wall_seconds: float
    steps: int
    parameters: int
    real_parameters: int
    devices: int
    device_kind: str
    precision: str  # the run's resolved precision (RunSettings.precision: dtype "auto" resolved per model)
    convention: str
    system: str
    n_sites: int
    phase: str
    message: str
    checkpoint: str | None
    momentum: list[float] | None = None
    translation_eigenvalue: list[float] | None = None
    translation_eigenvalues: list[list[float]] | None = None
    measured_momentum: list[float] | None = None
    marshall_agreement: float | None = None
    fidelity: float | None = None
    sign_agreement: float | None = None
    exact_state: str | None = None
    # ⟨ψ|H|ψ⟩/⟨ψ|ψ⟩ of the final state summed over the exact state's basis (no Monte Carlo noise)
    exact_energy: float | None = None
    exact_relative_error: float | None = None  # of exact_energy against the reference
    exact_note: str | None = None
    exact_seconds: float = 0.0
    # "steps", "stopped", "diverged", "time_budget", "target_error", "target_v_score" (or a user callback's)
    restarts: list[str] = field(default_factory=list)  # callbacks.FrozenStart: one note per restart
    stop_reason: str = "steps"
    verdict: str = "ok"  # "ok" | "warning" | "failed" (nqs_core.verdict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The summary as the JSON object of ``nqs run --json`` (today's keys, plus the verdict)."""
        return asdict(self)


def _final(ctx: RunContext) -> tuple[float, float, float, str]:
    """(energy, error, variance, source): the final evaluation, else the last step."""
    ev = ctx.evaluation
    if ev is not None:
        return (_real(ev["energy"]), _real(ev.get("error", math.nan)), _real(ev.get("variance", math.nan)),
                f"evaluation with {ctx.settings.eval_samples} samples")
    if ctx.history:
        last = ctx.history[-1]
        return last.energy, last.error, last.variance, f"last step ({last.step})"
    return math.nan, math.nan, math.nan, "no steps"


def _real(x: Any) -> float:
    return float(getattr(x, "real", x))


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _reference_fields(ctx: RunContext, energy: float) -> dict[str, Any]:
    ref = ctx.reference
    e_ref = _real(ref["energy"]) if ref is not None and ref.get("energy") is not None else None
    return {"reference_energy": e_ref,
            "reference_method": ref.get("method") if ref is not None else None,
            "reference_detail": reference_detail(ref) if ref is not None else None,
            "reference_note": None if ref is not None else ctx.reference_note,
            "relative_error": _relative_error(energy, e_ref)}


def _relative_error(energy: float | None, e_ref: float | None) -> float | None:
    return abs(energy - e_ref) / abs(e_ref) if e_ref and _finite(energy) else None


def _exact_fields(ctx: RunContext) -> dict[str, Any]:
    ex, s = ctx.exact, ctx.settings
    values = ex.get("values")
    note = None
    if values is None:
        dim = exact_basis_dim(s)
        note = ex.get("note") or (f"ED reaches at most {MAX_EXACT_DIM} basis states; this system has {dim}"
                                  if dim > MAX_EXACT_DIM else "no exact state")
    energy, ref = ex.get("energy"), (ctx.reference or {}).get("energy")
    return {"exact_energy": energy, "exact_relative_error": _relative_error(energy, _real(ref) if ref else None),
            "fidelity": values[0] if values is not None else None,
            "sign_agreement": values[1] if values is not None else None,
            "exact_state": ex.get("label") if values is not None else None,
            "exact_note": note, "exact_seconds": ex.get("seconds", 0.0)}


def _marshall(ctx: RunContext) -> float | None:
    ev = ctx.evaluation
    if ev is not None and ev.get("marshall_agreement") is not None:
        return _real(ev["marshall_agreement"])
    return ctx.history[-1].marshall_agreement if ctx.history else None


def _timing_fields(ctx: RunContext, wall_seconds: float) -> dict[str, Any]:
    return {"iterations_per_second": ctx.run_steps / ctx.run_seconds if ctx.run_seconds > 0 else None,
            "compile_seconds": ctx.setup_seconds, "step_compile_seconds": ctx.compile_seconds,
            "evaluation_seconds": ctx.eval_seconds, "wall_seconds": wall_seconds}


def build_summary(ctx: RunContext, momentum: dict[str, Any] | None, wall_seconds: float,
                  checkpoint: str | None = None) -> RunSummary:
    """The :class:`RunSummary` of a finished loop (``momentum``: ``driver.momentum_readout``), with its verdict."""
    s, vmc = ctx.settings, ctx.vmc
    energy, error, variance, source = _final(ctx)
    summary = RunSummary(
        final_energy=energy, final_error=error, final_variance=variance, final_energy_per_site=energy / s.n_sites,
        final_source=source, v_score=(s.n_sites * variance / energy**2
                                      if _finite(variance) and _finite(energy) and energy != 0 else None),
        steps=len(ctx.history), parameters=ctx.n_params, real_parameters=vmc.n_parameters, devices=ctx.n_devices,
        device_kind=jax.devices()[0].platform, precision=s.precision, convention=vmc.hamiltonian.convention,
        system=vmc.hamiltonian.describe(), n_sites=s.n_sites, phase=ctx.phase, message=ctx.message,
        checkpoint=checkpoint, momentum=[float(x) for x in s.k] if s.k is not None else None,
        marshall_agreement=_marshall(ctx), stop_reason=ctx.stop_reason or "steps", restarts=list(ctx.restarts),
        **_reference_fields(ctx, energy), **_timing_fields(ctx, wall_seconds), **_exact_fields(ctx),
        **(momentum or {}))
    verdict = assess(s, Estimate.of(ctx.evaluation, ctx.history, s), ctx.reference, ctx.phase, ctx.message,
                     summary.to_dict())
    summary.verdict, summary.warnings = verdict.verdict, list(verdict.warnings)
    return summary

