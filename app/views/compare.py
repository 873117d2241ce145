"""Compare runs on the same axes: the session's finished runs as named overlays.

:class:`OverlayLines` draws the kept runs of an :class:`app.overlays.OverlayStore` on one figure (a
pool of ``MAX_KEPT`` lines, each with its legend entry, labelled by what differs from the current
settings).  :class:`CompareView` is the "Compare" tab: every kept run's E/N, relative error, sign
agreement (Marshall, exact), fidelity and k_x/π from ⟨T_x⟩; a list to show or hide runs, Clear, and
the sign-problem comparison (both J1-J2 talk presets, one after the other).  The Energy view draws
the same overlays behind the current run (``attach``).  Bokeh models change only in :meth:`tick`
(the lab's periodic callback, under the document lock).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import panel as pn
import param
from bokeh.models import ColumnDataSource, Legend, LegendItem

from app.overlays import MAX_KEPT, KeptRun, OverlayStore
from app.settings import LabSettings
from nqs_core.presets import get_preset
from app.views.common import GREEN, GREY, ORANGE, PURPLE, SKY, SMALL_TEXT, VERMILION, caption_pane, make_figure, \
    set_text, with_heading

COLORS = (GREEN, PURPLE, ORANGE, SKY, VERMILION, GREY)
SIGN_PROBLEM = ("j1j2-no-sign", "j1j2-marshall")  # nqs_core.presets: one comparison of the two
EMPTY = "No finished run yet: each finished run of this session stays here, labelled by what differs."


def preset_matches(name: str, settings: Any) -> bool:
    """Whether ``settings`` are those the preset ``name`` sets."""
    return all(getattr(settings, k) == v for k, v in get_preset(name).overrides.items())


def run_color(number: int) -> str:
    return COLORS[(number - 1) % len(COLORS)]


def legend_of(fig: Any) -> Legend:
    """The figure's legend (a new one, top right, when it has none)."""
    if not fig.legend:
        fig.add_layout(Legend(items=[], location="top_right"))
    legend = fig.legend[0]
    legend.label_text_font_size = SMALL_TEXT
    legend.background_fill_alpha = 0.6
    return legend


class OverlayLines:
    """Kept runs' ``series`` on ``fig``: one line per run in its colour, named in the legend."""

    def __init__(self, fig: Any, series: str, dash: str = "solid") -> None:
        self.series = series
        self.sources = [ColumnDataSource(dict(step=[], value=[])) for _ in range(MAX_KEPT)]
        self.lines = [fig.line("step", "value", source=s, line_width=2, line_alpha=0.85, line_dash=dash,
                               visible=False) for s in self.sources]
        self.items = [LegendItem(label="", renderers=[line], visible=False) for line in self.lines]
        legend_of(fig).items.extend(self.items)

    def draw(self, runs: list[KeptRun]) -> None:
        for i, (source, line, item) in enumerate(zip(self.sources, self.lines, self.items)):
            run = runs[i] if i < len(runs) else None
            steps, values = run.series[self.series] if run is not None else ([], [])
            source.data = dict(step=steps, value=values)
            if run is not None:
                line.glyph.line_color = run_color(run.number)
                item.label = {"value": run.label}
            line.visible = item.visible = bool(steps)


FIGURES = (  # series, title, y label, figure options (plain values: a Bokeh model here would be shared by sessions)
    ("energy", "Energy per site E/N", "E / N", {}),
    ("relative_error", "Relative error |E − E_ref| / |E_ref|", "relative error", {"y_axis_type": "log"}),
    ("marshall", "Samples with Marshall's sign", "fraction", {"y_range": (-0.02, 1.02)}),
    ("sign_agreement", "Sign agreement with the exact ground state (ED)", "fraction", {"y_range": (-0.02, 1.02)}),
    ("fidelity", "Fidelity |⟨ψ₀|ψ⟩|² with the exact ground state", "fidelity", {"y_range": (-0.02, 1.02)}),
    ("momentum", "Momentum k_x/π from ⟨T_x⟩", "k_x / π", {"y_range": (-1.1, 1.1)}),
)


class CompareView(pn.viewable.Viewer):
    """The Compare tab (see the module docstring)."""

    title = "Compare"
    plan = param.List(default=[], doc="Presets of the comparison still to run, in order")

    def __init__(self, settings: LabSettings, run_preset: Callable[[str], None] | None = None,
                 busy: Callable[[], bool] = lambda: False, **params: Any):
        super().__init__(**params)
        self.settings, self.run_preset, self.busy = settings, run_preset, busy
        self.running: str | None = None  # the preset of the comparison's run in progress
        self.store = OverlayStore(current=settings.run_settings())
        settings.param.watch(lambda *_: self._follow_settings(), list(settings.param))
        self.lines: list[OverlayLines] = []  # this tab's, once built (``figures``)
        self.attached: list[OverlayLines] = []  # in other views: drawn without the run they show
        self._build_controls()
        self.note = caption_pane(EMPTY)
        self._drawn = -1
        self._resend = False  # re-send the ticks after new options (tick)

    @functools.cached_property
    def figures(self) -> list[Any]:
        """The tab's figures, built when first asked for (the tab first shown): a new session builds
        only the shown tab's (benchmarks/README.md, "A class on one server").  Not yet in any document,
        so they are drawn at once."""
        figures = []
        for series, title, y_label, opts in FIGURES:
            fig = make_figure(title, "step", y_label, height=250, **opts)
            self.lines.append(OverlayLines(fig, series))
            figures.append(fig)
        every = self.store.overlays(include_shown=True)
        for lines in self.lines:
            lines.draw(every)
        return figures

    @functools.cached_property
    def panel(self) -> pn.Column:
        return pn.Column(self.note, pn.Row(self.choice, self.clear_button), self.comparison_button,
                         pn.GridBox(*map(with_heading, self.figures), ncols=2, sizing_mode="stretch_width"),
                         sizing_mode="stretch_width", name=self.title)

    def _build_controls(self) -> None:
        """Show/hide per run, Clear, and the sign-problem comparison (in the tab and under the preset menu)."""
        self.choice = pn.ui.CheckBoxGroup(options={}, value=[], inline=False, label="Kept runs (untick to hide)")
        self.choice.param.watch(lambda event: self.store.set_visible(event.new), "value")
        self.clear_button = pn.ui.Button(label="Clear the kept runs", color="secondary", variant="outlined")
        self.clear_button.on_click(lambda *_: self.store.clear())
        self.comparison_button = pn.ui.Button(label="Run the sign-problem comparison (J1-J2 without, then with "
                                                    "Marshall's sign)", color="primary", variant="contained")
        self.comparison_button.on_click(lambda *_: self.start_comparison())
        # under the preset menu while a sign-problem preset is chosen: the two presets are one comparison
        self.sidebar_button = pn.ui.Button(label="Compare both: run without, then with Marshall's sign, overlaid",
                                           color="primary", variant="outlined", sizing_mode="stretch_width",
                                           margin=(4, 8))
        self.sidebar_button.on_click(lambda *_: self.start_comparison())
        self.settings.param.watch(lambda *_: self._follow_preset(), "preset")
        self._follow_preset()

    def __panel__(self) -> Any:
        return self.panel

    def attach(self, lines: list[OverlayLines]) -> None:
        """Draw the overlays on another view's figures too (without the run that view shows)."""
        self.attached.extend(lines)
        self._drawn = -1

    def _follow_preset(self) -> None:
        self.sidebar_button.visible = self.settings.preset in SIGN_PROBLEM

    def _follow_settings(self) -> None:
        self.store.current = self.settings.run_settings()

    # ----- the sign-problem comparison ----------------------------------------------------------
    def start_comparison(self, presets: tuple[str, ...] = SIGN_PROBLEM) -> None:
        """Run ``presets`` one after the other (each starts when the previous one is done)."""
        if self.busy():
            set_text(self.note, "The comparison starts once this session's run or sweep has ended (Stop it first).")
            return
        self.plan = list(presets)
        self._next()

    def _next(self) -> None:
        self.running = None
        if self.plan and self.run_preset is not None:
            self.running, self.plan = self.plan[0], self.plan[1:]
            self.run_preset(self.running)

    def run_finished(self, settings: Any, history: list[Any], reference_energy: float | None, outcome: str) -> None:
        """Keep a finished run; the comparison goes on after its own run ended normally (not after a
        stopped one, nor after another run: a Reset abandoned it)."""
        self.store.keep(settings, history, reference_energy, outcome)
        if outcome == "done" and self.running is not None and preset_matches(self.running, settings):
            self._next()
        else:
            self.plan, self.running = [], None

    # ----- drawing (under the document lock) ----------------------------------------------------
    def tick(self) -> None:
        """Redraw after the store changed (call from the lab's periodic callback)."""
        if self._resend:  # the page clears its ticks when it gets new options: send them again, a tick later
            self._resend = False
            self.choice.param.trigger("value")
        if self._drawn == self.store.version:
            return
        self._drawn = self.store.version
        runs = self.store.runs
        every, others = self.store.overlays(include_shown=True), self.store.overlays()  # once per tick
        for lines in self.lines:
            lines.draw(every)
        for lines in self.attached:
            lines.draw(others)
        options = {run.label: run.number for run in runs}
        if self.choice.options != options:
            self.choice.options = options
            self._resend = True
        visible = [run.number for run in runs if run.visible]
        if self.choice.value != visible:
            self.choice.value = visible
        set_text(self.note, EMPTY if not runs else
                 f"{len(runs)} kept run(s), labelled by the settings that differ (among them and the current ones); "
                 "untick a run to hide it")


__all__ = ["CompareView", "OverlayLines", "SIGN_PROBLEM", "run_color"]
