"""Energy convergence: E ± error per step with the reference line, relative error (log), variance.

The reference arrives whenever it is ready (closed forms at once, ED in seconds, DMRG in the
background): it is drawn as a horizontal line labelled with its method and provenance, and the
relative error |E − E_ref| / |E_ref| is then back-filled from the kept history.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, Label, Span, Title

from app.views.common import BLUE, GREY, ORANGE, ROLLOVER, VERMILION, empty_like, finite, make_figure, set_font_scale


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


def reference_label(ref: dict) -> str:
    """e.g. ``reference: ED (exact diagonalization) E₀ = −11.2285``."""
    method = ref.get("method") or ref.get("kind") or "reference"
    source = ref.get("provenance") or ref.get("source") or ""
    if isinstance(source, dict):
        source = ", ".join(f"{k} {v}" for k, v in source.items())
    e = reference_energy(ref)
    text = f"{method}"
    if source and str(source) != str(method):
        text += f" ({source})"
    if e is not None:
        text += f"  E = {e:.6f}"
    return text


class EnergyView:
    """Three figures fed by :meth:`update` with StepRecords; bounded by ``ROLLOVER``."""

    title = "Energy"

    def __init__(self) -> None:
        self.source = ColumnDataSource(dict(step=[], energy=[], lower=[], upper=[]))
        self.rel_source = ColumnDataSource(dict(step=[], rel=[]))
        self.var_source = ColumnDataSource(dict(step=[], variance=[]))
        self._kept: deque[tuple[int, float]] = deque(maxlen=ROLLOVER)
        self.reference: dict | None = None

        self.fig = make_figure("Energy E ± error", "step", "energy")
        self.fig.varea("step", "lower", "upper", source=self.source, fill_color=BLUE, fill_alpha=0.25,
                       legend_label="± error")
        self.fig.line("step", "energy", source=self.source, color=BLUE, line_width=2, legend_label="E (VMC)")
        self.ref_span = Span(location=0.0, dimension="width", line_color=VERMILION, line_dash="dashed",
                             line_width=2, visible=False)
        self.ref_label = Title(text="reference: waiting…", text_color=VERMILION, text_font_size="12px",
                               text_font_style="normal")
        self.fig.add_layout(self.ref_span)
        self.fig.add_layout(self.ref_label, "above")
        self.fig.legend.location = "top_right"

        self.rel_fig = make_figure("Relative error |E − E_ref| / |E_ref|", "step", "relative error",
                                   y_axis_type="log", height=220, x_range=self.fig.x_range)
        self.rel_fig.line("step", "rel", source=self.rel_source, color=ORANGE, line_width=2)
        self.rel_waiting = Label(x=10, y=10, x_units="screen", y_units="screen", text="waiting for the reference…",
                                 text_color=GREY, text_font_size="12px")
        self.rel_fig.add_layout(self.rel_waiting)

        self.var_fig = make_figure("Variance of the local energy", "step", "Var(E_loc)", y_axis_type="log",
                                   height=220, x_range=self.fig.x_range)
        self.var_fig.line("step", "variance", source=self.var_source, color=BLUE, line_width=2)

        self.figures = [self.fig, self.rel_fig, self.var_fig]
        self.panel = pn.Column(pn.pane.Bokeh(self.fig, sizing_mode="stretch_width"),
                               pn.Row(pn.pane.Bokeh(self.rel_fig, sizing_mode="stretch_width"),
                                      pn.pane.Bokeh(self.var_fig, sizing_mode="stretch_width"),
                                      sizing_mode="stretch_width"),
                               sizing_mode="stretch_width", name=self.title)

    def reset(self) -> None:
        for src in (self.source, self.rel_source, self.var_source):
            src.data = empty_like(src)
        self._kept.clear()
        self.reference = None
        self.ref_span.visible = False
        self.ref_label.text = "reference: waiting…"
        self.rel_waiting.text = "waiting for the reference…"
        self.rel_waiting.visible = True

    @property
    def n_points(self) -> int:
        return len(self.source.data["step"])

    def set_reference(self, ref: dict) -> None:
        self.reference = ref
        e = reference_energy(ref)
        self.ref_label.text = "reference (dashed): " + reference_label(ref)
        if e is None:
            self.rel_waiting.text = "no reference energy: " + str(ref.get("message") or ref.get("error") or "")
            return
        self.ref_span.location = e
        self.ref_span.visible = True
        self.rel_waiting.visible = False
        steps = [s for s, _ in self._kept]
        self.rel_source.data = dict(step=steps, rel=[self._rel(v, e) for _, v in self._kept])

    @staticmethod
    def _rel(value: float, ref: float) -> float:
        r = abs(value - ref) / max(abs(ref), 1e-300)
        return r if r > 0 else float("nan")

    def update(self, records: list[Any]) -> None:
        if not records:
            return
        steps = [int(r.step) for r in records]
        energy = [finite(r.energy) for r in records]
        error = [finite(r.error) for r in records]
        self.source.stream(dict(step=steps, energy=energy,
                                lower=[e - d for e, d in zip(energy, error)],
                                upper=[e + d for e, d in zip(energy, error)]), rollover=ROLLOVER)
        self.var_source.stream(dict(step=steps, variance=[finite(r.variance) for r in records]), rollover=ROLLOVER)
        self._kept.extend(zip(steps, energy))
        e = reference_energy(self.reference)
        if e is not None:
            self.rel_source.stream(dict(step=steps, rel=[self._rel(v, e) for v in energy]), rollover=ROLLOVER)

    def set_font_scale(self, scale: float) -> None:
        for fig in self.figures:
            set_font_scale(fig, scale)
        self.ref_label.text_font_size = f"{round(12 * scale)}px"
