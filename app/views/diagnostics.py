"""Diagnostics: Metropolis acceptance, split-chain R̂, gradient norm, time per step, compile time."""

from __future__ import annotations

import functools
from typing import Any

import panel as pn
from bokeh.models import ColumnDataSource, Range1d, Span

from app.views.common import with_heading, append, BLUE, GREEN, GREY, ORANGE, PURPLE, ROLLOVER, empty_like, finite, make_figure


class DiagnosticsView:
    title = "Diagnostics"

    def __init__(self) -> None:
        self.source = ColumnDataSource(dict(step=[], acceptance=[], r_hat=[], grad_norm=[], ms=[]))
        self.compile_text = pn.pane.HTML("compile time: –", styles={"font-size": "1rem"}, margin=(4, 10))

    @functools.cached_property
    def figures(self) -> list[Any]:
        """Acceptance, R̂, gradient norm and time per step on the kept source, built when first asked for
        (the tab first shown): a new session builds only the shown tab's figures."""
        acc = make_figure("Metropolis acceptance", "step", "acceptance", height=220, y_range=Range1d(0, 1.02))
        acc.line("step", "acceptance", source=self.source, color=BLUE, line_width=2)
        rhat = make_figure("Split-chain R̂ of E_loc (≈ 1 when chains agree)", "step", "R̂", height=220,
                           x_range=acc.x_range, y_axis_type="log")  # readable ticks from 1 to 1e16
        rhat.line("step", "r_hat", source=self.source, color=ORANGE, line_width=2)
        rhat.add_layout(Span(location=1.0, dimension="width", line_color=GREY, line_dash="dotted"))
        grad = make_figure("Gradient norm", "step", "‖g‖", height=220, y_axis_type="log", x_range=acc.x_range)
        grad.line("step", "grad_norm", source=self.source, color=GREEN, line_width=2)
        time = make_figure("Time per step", "step", "ms", height=220, x_range=acc.x_range)
        time.line("step", "ms", source=self.source, color=PURPLE, line_width=2)
        return [acc, rhat, grad, time]

    @functools.cached_property
    def panel(self) -> pn.Column:
        return pn.Column(self.compile_text, pn.GridBox(*map(with_heading, self.figures), ncols=2,
                                                       sizing_mode="stretch_width"),
                         sizing_mode="stretch_width", name=self.title)

    def reset(self) -> None:
        self.source.data = empty_like(self.source)
        self.compile_text.object = "compile time: –"

    def update(self, records: list[Any]) -> None:
        if not records:
            return
        append(self.source, dict(step=[int(r.step) for r in records],
                                acceptance=[finite(r.acceptance) for r in records],
                                r_hat=[finite(r.r_hat) for r in records],
                                grad_norm=[finite(r.grad_norm) for r in records],
                                ms=[1000 * finite(r.seconds) for r in records]), ROLLOVER)

    def set_compile_seconds(self, seconds: float | None) -> None:
        self.compile_text.object = "compile time: –" if seconds is None else \
            f"compile time (first call, including the first step): {seconds:.1f} s"

