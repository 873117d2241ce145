"""Energy convergence: E ± error per step with the reference line, relative error (log), variance.

The reference arrives whenever it is ready (closed forms at once, ED in seconds, DMRG in the
background): it is drawn as a horizontal line labelled with its method and provenance, and the
relative error |E − E_ref| / |E_ref| is then back-filled from the kept history.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, Label, Span

from app.views.compare import OverlayLines
from app.views.common import TEXT, append, BLUE, GREY, ORANGE, ROLLOVER, VERMILION, caption_pane, empty_like, finite, \
    make_figure, set_text, with_heading

# the energy axis names its convention (DESIGN.md §2): spin operators S = σ/2 or Pauli matrices
AXIS_LABELS = {"heisenberg": "E / N  (J units, S = σ/2)", "j1j2": "E / N  (J1 units, S = σ/2)",
               "tfim": "E / N  (J units, Pauli σ)"}


def reference_energy(ref: dict | None) -> float | None:
    """The reference's total energy (None when it has none, e.g. a failed DMRG)."""
    if not ref:
        return None
    for key in ("energy", "E", "e0", "value"):
        if ref.get(key) is not None:
            try:
                value = float(ref[key])
            except (TypeError, ValueError):
                continue
            return value if np.isfinite(value) else None
    return None


METHOD_NAMES = {"exact": "exact (closed form)", "ed": "ED", "dmrg": "DMRG", "published": "published"}
def method_name(method: str | None) -> str:
    """Display name of a reference method, e.g. ``ED (k=π)`` for the engine's ``ed (k=π)``."""
    method = str(method or "reference")
    head, _, rest = method.partition(" ")
    name = METHOD_NAMES.get(head, head)
    return f"{name} {rest}" if rest else name


def _internal(value: Any) -> bool:
    """A Python module path such as ``nqs_core.references.closed_forms``: not for the audience."""
    return bool(re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+", str(value)))


PROVENANCE_KEYS = ("formula", "citation", "library", "chi_max", "chi", "truncation_error")


def dmrg_name(prov: dict) -> str:
    """``DMRG (TeNPy 1.0.4, χ=128)`` from a DMRG reference's provenance."""
    library = str(prov.get("library") or "TeNPy").replace("physics-tenpy", "TeNPy")
    chi = prov.get("chi")
    return f"DMRG ({library}, χ={chi})" if chi is not None else f"DMRG ({library})"


def reference_label(ref: dict, max_chars: int = 110) -> str:
    """e.g. ``ED · scipy 1.18.1 (ARPACK eigsh, Lanczos) · cache · E₀ = −11.228483`` or
    ``DMRG (TeNPy 1.0.4, χ=128) · truncation 3e-11 · est. rel. error 2e-08 · computed · E₀ = …``."""
    method = str(ref.get("method") or "reference")
    parts = [method_name(method)]
    prov = ref.get("provenance")
    if method == "dmrg" and isinstance(prov, dict):
        parts = [dmrg_name(prov)]
        if prov.get("truncation_error") is not None:
            parts.append(f"truncation {float(prov['truncation_error']):.0e}")
        if prov.get("estimated_relative_error") is not None:
            parts.append(f"est. rel. error {float(prov['estimated_relative_error']):.0e}")
        if prov.get("converged") is False:
            parts.append("NOT converged")
    elif isinstance(prov, dict):
        bits = [f"{k} {prov[k]}" if k.startswith(("chi", "trunc")) else str(prov[k])
                for k in PROVENANCE_KEYS if prov.get(k) not in (None, "") and not _internal(prov[k])]
        if bits:
            parts.append(", ".join(bits).replace("library ", ""))
    elif prov:
        parts.append(str(prov))
    if ref.get("source"):
        parts.append(str(ref["source"]))
    text = " · ".join(parts)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    e = reference_energy(ref)
    per_site = ref.get("energy_per_site")
    per_site = f" (E₀/N = {float(per_site):.6f})" if isinstance(per_site, (int, float)) else ""
    return text + (f" · E₀ = {e:.6f}{per_site}" if e is not None else "")


class EnergyView:
    """Three figures fed by :meth:`update` with StepRecords; bounded by ``ROLLOVER``."""

    title = "Energy"

    def __init__(self) -> None:
        self.source = ColumnDataSource(dict(step=[], energy=[], lower=[], upper=[]))
        self.rel_source = ColumnDataSource(dict(step=[], rel=[]))
        self.var_source = ColumnDataSource(dict(step=[], variance=[]))
        self._kept: deque[tuple[int, float]] = deque(maxlen=ROLLOVER)
        self.reference: dict | None = None

        self.n_sites = 1
        self.fig = make_figure("Energy per site E/N ± error", "step", AXIS_LABELS["heisenberg"])
        self.fig.varea("step", "lower", "upper", source=self.source, fill_color=BLUE, fill_alpha=0.25,
                       legend_label="± error")
        self.fig.line("step", "energy", source=self.source, color=BLUE, line_width=2, legend_label="E (VMC)")
        self.ref_source = ColumnDataSource(dict(step=[], energy=[]))  # a glyph, so the y-range includes it
        self.ref_line = self.fig.line("step", "energy", source=self.ref_source, color=VERMILION, line_dash="dashed",
                                      line_width=2, legend_label="reference")
        self.ref_span = Span(location=0.0, dimension="width", line_alpha=0.0, visible=False)
        self.total_steps = 1
        self.convention = caption_pane("")
        self.ref_label = caption_pane("reference: looking it up…", color=VERMILION)
        self.fig.add_layout(self.ref_span)
        self.fig.legend.location = "top_right"

        self.rel_fig = make_figure("Relative error |E − E_ref| / |E_ref|", "step", "relative error",
                                   y_axis_type="log", height=260, x_range=self.fig.x_range)
        self.rel_fig.line("step", "rel", source=self.rel_source, color=ORANGE, line_width=2)
        self.rel_waiting = Label(x=10, y=10, x_units="screen", y_units="screen", text="waiting for the reference…",
                                 text_color=GREY, text_font_size=TEXT)
        self.rel_fig.add_layout(self.rel_waiting)

        self.var_fig = make_figure("Variance of the local energy", "step", "Var(E_loc)", y_axis_type="log",
                                   height=260, x_range=self.fig.x_range)
        self.var_fig.line("step", "variance", source=self.var_source, color=BLUE, line_width=2)

        # the session's earlier runs, drawn by app.views.compare.CompareView (attach)
        self.overlays = [OverlayLines(self.fig, "energy"), OverlayLines(self.rel_fig, "relative_error")]
        self.figures = [self.fig, self.rel_fig, self.var_fig]
        self.panel = pn.Column(with_heading(self.fig, self.convention, self.ref_label),
                               pn.Row(with_heading(self.rel_fig), with_heading(self.var_fig),
                                      sizing_mode="stretch_width"),
                               sizing_mode="stretch_width", name=self.title)

    def reset(self, total_steps: int = 1, n_sites: int = 1, hamiltonian: str = "heisenberg",
              convention: str = "") -> None:
        """Empty the plots for a run of ``total_steps`` on ``n_sites`` (energies are drawn per site)."""
        self.total_steps = max(int(total_steps), 1)
        self.n_sites = max(int(n_sites), 1)
        self.fig.yaxis.axis_label = AXIS_LABELS.get(hamiltonian, "E / N")
        set_text(self.convention, f"N = {self.n_sites} sites · {convention}" if convention else "")
        for src in (self.source, self.rel_source, self.var_source, self.ref_source):
            src.data = empty_like(src)
        self._kept.clear()
        self.reference = None
        self.ref_span.visible = False
        set_text(self.ref_label, "reference: looking it up…")
        self._set_legend("reference")
        self.rel_waiting.text = "waiting for the reference…"
        self.rel_waiting.visible = True

    @property
    def n_points(self) -> int:
        return len(self.source.data["step"])

    def set_progress(self, text: str) -> None:
        """Progress of a reference computed in the background (DMRG), shown until it is ready."""
        if self.reference is not None and reference_energy(self.reference) is not None:
            return
        set_text(self.ref_label, "reference: " + text)
        self.rel_waiting.text = text

    def show_no_reference(self, reason: str) -> None:
        """A run ended and no reference energy came: say why, instead of waiting for one."""
        set_text(self.ref_label, "reference: " + reason)
        self.rel_waiting.text = "no reference energy, so no relative error"

    def set_reference(self, ref: dict) -> None:
        self.reference = ref
        e = reference_energy(ref)
        set_text(self.ref_label, "reference (dashed): " + reference_label(ref))
        prov = ref.get("provenance") if isinstance(ref.get("provenance"), dict) else {}
        method = str(ref.get("method") or "reference")
        self._set_legend(dmrg_name(prov) if method == "dmrg" else method_name(method))
        if e is None:
            self.rel_waiting.text = "no reference energy: " + str(ref.get("message") or ref.get("error") or "")
            return
        self.ref_span.location = e / self.n_sites
        self._draw_reference_line(e)
        self.rel_waiting.visible = False
        steps = [s for s, _ in self._kept]
        self.rel_source.data = dict(step=steps, rel=[self._rel(v, e) for _, v in self._kept])

    def _draw_reference_line(self, e: float) -> None:
        """The dashed line over the steps drawn so far (not all planned steps: a long run would
        squeeze the curve into the left edge), at least 10 steps wide."""
        last = self._kept[-1][0] if self._kept else 0
        e = e / self.n_sites
        self.ref_source.data = dict(step=[0, max(last, min(10, self.total_steps - 1), 1)], energy=[e, e])

    def _set_legend(self, text: str) -> None:
        """The legend entry of the dashed reference line names its method."""
        for legend in self.fig.legend:
            for item in legend.items:
                if self.ref_line in item.renderers:
                    item.label = {"value": text}

    @staticmethod
    def _rel(value: float, ref: float) -> float:
        r = abs(value - ref) / max(abs(ref), 1e-300)
        return r if r > 0 else float("nan")

    def update(self, records: list[Any]) -> None:
        if not records:
            return
        steps = [int(r.step) for r in records]
        energy = [finite(r.energy) for r in records]  # total energies (the relative error is the same per site)
        n = self.n_sites
        per_site = [e / n for e in energy]
        error = [finite(r.error) / n for r in records]
        append(self.source, dict(step=steps, energy=per_site,
                                 lower=[e - d for e, d in zip(per_site, error)],
                                 upper=[e + d for e, d in zip(per_site, error)]), ROLLOVER)
        append(self.var_source, dict(step=steps, variance=[finite(r.variance) for r in records]), ROLLOVER)
        self._kept.extend(zip(steps, energy))
        e = reference_energy(self.reference)
        if e is not None:
            self._draw_reference_line(e)
            append(self.rel_source, dict(step=steps, rel=[self._rel(v, e) for v in energy]), ROLLOVER)

