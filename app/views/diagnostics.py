"""Diagnostics: Metropolis acceptance, split-chain R̂, gradient norm, time per step, compile time."""

from __future__ import annotations

from typing import Any

import panel as pn
from bokeh.models import ColumnDataSource, Range1d, Span

from app.views.common import with_heading, append, BLUE, GREEN, GREY, ORANGE, PURPLE, ROLLOVER, empty_like, finite, make_figure


class DiagnosticsView:
    title = "Diagnostics"

    def __init__(self) -> None:
        self.source = ColumnDataSource(dict(step=[], acceptance=[], r_hat=[], grad_norm=[], ms=[]))
        self.acc_fig = make_figure("Metropolis acceptance", "step", "acceptance", height=220,
                                   y_range=Range1d(0, 1.02))
        self.acc_fig.line("step", "acceptance", source=self.source, color=BLUE, line_width=2)
        self.rhat_fig = make_figure("Split-chain R̂ of E_loc (≈ 1 when chains agree)", "step", "R̂", height=220,
                                    x_range=self.acc_fig.x_range, y_axis_type="log")  # readable ticks from 1 to 1e16
        self.rhat_fig.line("step", "r_hat", source=self.source, color=ORANGE, line_width=2)
        self.rhat_fig.add_layout(Span(location=1.0, dimension="width", line_color=GREY, line_dash="dotted"))
        self.grad_fig = make_figure("Gradient norm", "step", "‖g‖", height=220, y_axis_type="log",
                                    x_range=self.acc_fig.x_range)
        self.grad_fig.line("step", "grad_norm", source=self.source, color=GREEN, line_width=2)
        self.time_fig = make_figure("Time per step", "step", "ms", height=220, x_range=self.acc_fig.x_range)
        self.time_fig.line("step", "ms", source=self.source, color=PURPLE, line_width=2)
        self.compile_text = pn.pane.HTML("compile time: –", styles={"font-size": "1rem"}, margin=(4, 10))
        self.figures = [self.acc_fig, self.rhat_fig, self.grad_fig, self.time_fig]
        self.panel = pn.Column(self.compile_text,
                               pn.GridBox(*[with_heading(f) for f in self.figures],
                                          ncols=2, sizing_mode="stretch_width"),
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

