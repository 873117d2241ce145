"""Figures of a run for slides and papers: the energy curve against its reference and the relative
error, as PNG and SVG at projector resolution (1920×1080 px; matplotlib, no display needed).

* ``energy_figure``: E/N per step with its error band ±δE/N, the reference E_ref/N as a dashed line
  named after its method and provenance, the final evaluation as a point with its error bar;
* ``relative_error_figure``: |E − E_ref|/|E_ref| per step on a log axis with at least three labelled
  ticks (None without a reference);
* ``save_figure``: PNG (exactly ``WIDTH``×``HEIGHT`` pixels) and/or SVG (the same 16:9 canvas).

Energies are per site in the Hamiltonian's convention, which the subtitle names (README, Conventions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, NullFormatter

from nqs_core.exports.record import RunRecord
from nqs_core.problem import build_problem

WIDTH, HEIGHT, DPI = 1920, 1080, 100  # pixels, and pixels per inch of the canvas
STYLE = {"font.size": 26, "axes.titlesize": 30, "axes.labelsize": 28, "legend.fontsize": 22,
         "xtick.labelsize": 24, "ytick.labelsize": 24, "lines.linewidth": 3, "axes.grid": True,
         "grid.alpha": 0.3, "svg.fonttype": "path", "figure.facecolor": "white"}
COLORS = {"energy": "#1f5fa8", "reference": "#c0392b", "final": "#111111"}


def describe(record: RunRecord) -> tuple[str, str]:
    """(system, convention) of a record: from its settings, else from its summary."""
    if record.settings is not None:
        _, ham = build_problem(record.settings)
        return ham.describe(), ham.convention
    s = record.summary or {}
    return str(s.get("system") or "system not recorded"), str(s.get("convention") or "convention not recorded")


def _figure(title: str, subtitle: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    ax = fig.add_axes((0.1, 0.12, 0.86, 0.72))
    fig.text(0.5, 0.95, title, ha="center", va="center", fontsize=STYLE["axes.titlesize"], weight="bold")
    fig.text(0.5, 0.895, subtitle, ha="center", va="center", fontsize=20, color="#444444")
    return fig, ax


def _columns(record: RunRecord) -> dict[str, np.ndarray]:
    h = record.history
    return {k: np.array([getattr(r, k) for r in h], dtype=float) for k in ("step", "energy", "error")}


def reference_label(ref: dict[str, Any] | None, n: int) -> str | None:
    """``exact: E/N = −0.4463 (Bethe ansatz …)``: method, value per site and the first provenance item."""
    if not ref or ref.get("energy") is None:
        return None
    prov = ref.get("provenance") or {}
    detail = next((str(prov[k]) for k in ("formula", "citation", "library", "detail") if prov.get(k)), "") \
        if isinstance(prov, dict) else str(prov)
    detail = detail if len(detail) <= 70 else detail[:67] + "…"
    return f"{ref.get('method') or 'reference'}: E/N = {float(ref['energy']) / n:.6f}" + (f"  ({detail})" if detail else "")


def energy_figure(record: RunRecord) -> Figure:
    """E/N ± δE/N per step, the reference line and the final evaluation (see the module docstring)."""
    n = record.n_sites or 1
    system, convention = describe(record)
    c = _columns(record)
    with rc_context(STYLE):
        fig, ax = _figure(f"Energy per site — {system}", convention)
        e, d = c["energy"] / n, c["error"] / n
        ax.fill_between(c["step"], e - d, e + d, color=COLORS["energy"], alpha=0.25, linewidth=0, label="±δE/N")
        ax.plot(c["step"], e, color=COLORS["energy"], label="VMC E/N")
        label = reference_label(record.reference, n)
        if label:
            ax.axhline(float(record.reference["energy"]) / n, color=COLORS["reference"], linestyle="--", label=label)
        s = record.summary or {}
        if s.get("final_energy") is not None and len(c["step"]):
            ax.errorbar([c["step"][-1]], [s["final_energy"] / n], yerr=[(s.get("final_error") or 0.0) / n], fmt="o",
                        color=COLORS["final"], markersize=12, capsize=8, label=f"final: {s.get('final_source', '')}")
        _zoom(ax, e, record.reference_energy / n if record.reference_energy is not None else None)
        ax.set_xlabel("optimisation step")
        ax.set_ylabel("E / N")
        ax.legend(loc="best")
    return fig


def _zoom(ax: Any, e: np.ndarray, ref: float | None) -> None:
    """y range: the last 80 % of the curve and the reference, so the convergence is visible."""
    tail = e[len(e) // 5:] if len(e) > 5 else e
    vals = np.concatenate([tail[np.isfinite(tail)], [ref] if ref is not None else []])
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.15 * (hi - lo) if hi > lo else 0.01 * max(abs(lo), 1e-3)
        ax.set_ylim(lo - pad, hi + 2 * pad)


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over [lo, hi]: the decades, with 2× and 5× added while fewer than three."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mults in ((1.0,), (1.0, 5.0), (1.0, 2.0, 5.0)):
        ticks = [m * 10.0**k for k in range(a, b + 1) for m in mults if lo <= m * 10.0**k <= hi]
        if len(ticks) >= 3:
            return ticks
    return [lo, math.sqrt(lo * hi), hi]


def relative_error_figure(record: RunRecord) -> Figure | None:
    """|E − E_ref|/|E_ref| per step (log axis); None when the record has no reference."""
    ref = record.reference_energy
    if ref is None or ref == 0 or not record.history:
        return None
    system, convention = describe(record)
    c = _columns(record)
    rel = np.abs(c["energy"] - ref) / abs(ref)
    ok = np.isfinite(rel) & (rel > 0)
    with rc_context(STYLE):
        fig, ax = _figure(f"Relative error — {system}", f"against {reference_label(record.reference, record.n_sites or 1)}")
        ax.semilogy(c["step"][ok], rel[ok], color=COLORS["energy"], label="|E − E_ref| / |E_ref|")
        final = (record.summary or {}).get("relative_error")
        if final:
            ax.semilogy([c["step"][-1]], [final], "o", color=COLORS["final"], markersize=12, label=f"final {final:.2e}")
        lo, hi = ax.get_ylim()
        ax.yaxis.set_major_locator(FixedLocator(log_ticks(lo, hi)))
        ax.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("optimisation step")
        ax.set_ylabel("relative error")
        ax.legend(loc="upper right")
    return fig


def save_figure(fig: Figure, outdir: str | Path, name: str, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write ``outdir/name.png`` (WIDTH×HEIGHT px) and/or ``.svg``; the paths written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = outdir / f"{name}.{fmt}"
        with rc_context(STYLE):
            fig.savefig(path, format=fmt, dpi=DPI)
        paths.append(path)
    return paths
