"""Shared pieces of the live views: figure factory, headings, palette, log ticks, bounded streams.

Colours are the Okabe–Ito palette (distinguishable with colour-blindness, readable on light and
dark backgrounds).

Text sizes follow the page's root font size (the large-font option changes only that, in the
browser), through every theme switch, with nothing for the server to re-send:
- figure titles and notes are HTML above the figure, sized in rem (BokehJS draws its own titles
  and labels at a fixed 13 px base, whatever the page's font size);
- axis, tick and legend text is sized in em by the page theme on every switch, and BokehJS takes
  that em from the figure element's font size, which ``assets/lab.css`` ties to the root's.
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn
from bokeh.models import ColumnDataSource, CustomJSTicker, CustomJSTickFormatter
from bokeh.plotting import figure

BLUE, ORANGE, GREEN, VERMILION, PURPLE, SKY, YELLOW, GREY = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999")
SPIN_UP, SPIN_DOWN = "#E69F00", "#0072B2"
TEXT, SMALL_TEXT = "0.95em", "0.85em"  # text drawn inside figures (legends, in-plot notes)
ROLLOVER = 5000  # points kept per live stream: memory stays flat over any run length

# Log axes: at least three labelled ticks over any range.  1-2-5 (or finer) mantissas per decade
# for a few decades, every k-th power of ten for many, nice linear steps inside one narrow decade.
LOG_TICKS_JS = """
const lo = Math.min(cb_data.start, cb_data.end), hi = Math.max(cb_data.start, cb_data.end);
if (!(lo > 0) || !isFinite(hi) || !(hi > lo)) return [];
const e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
const inside = (t) => t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9);
if (e1 - e0 > 6) {
  const k = Math.ceil((e1 - e0) / 6), out = [];
  for (let e = e0; e <= e1; e += k) if (inside(10 ** e)) out.push(10 ** e);
  return out;
}
for (const mant of [[1], [1, 3], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
  const out = [];
  for (let e = e0; e <= e1; e++) for (const m of mant) if (inside(m * 10 ** e)) out.push(m * 10 ** e);
  if (out.length >= 3 && out.length <= 9) return out;
}
// a range within one decade (R̂ from 1 to 1.02): linear steps, the largest nice one that gives ≥ 3 ticks
const top = 10 ** Math.floor(Math.log10(hi - lo));
for (const step of [5, 2, 1, 0.5, 0.2, 0.1].map((m) => m * top)) {
  const out = [];
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi * (1 + 1e-9); i++) out.push(Number((i * step).toPrecision(12)));
  if (out.length >= 3) return out;
}
return [lo, hi];
"""
LOG_LABEL_JS = """
const a = Math.abs(tick);
if (a === 0) return "0";
return (a >= 1e-3 && a < 1e4) ? String(Number(tick.toPrecision(3))) : tick.toExponential(a.toExponential(1).includes(".0e") ? 0 : 1);
"""

def heading_pane(text: str) -> pn.pane.HTML:
    """A figure title in HTML (rem: it follows the large-font option and the theme's text colour)."""
    return pn.pane.HTML(html.escape(text), css_classes=["nqs-figure-title"], sizing_mode="stretch_width",
                        styles={"font-size": "1.05rem", "font-weight": "600"}, margin=(8, 10, 0, 10))


def caption_pane(text: str = "", color: str | None = None) -> pn.pane.HTML:
    """A note under a figure title (rem), e.g. the reference's provenance."""
    styles = {"font-size": "0.9rem"} | ({"color": color} if color else {})
    return pn.pane.HTML(html.escape(text), sizing_mode="stretch_width", styles=styles, margin=(0, 10))


def set_text(pane: pn.pane.HTML, text: str) -> None:
    """Set the (escaped) text of a heading or caption pane."""
    pane.object = html.escape(text)


def make_figure(title: str, x_label: str, y_label: str, **kwargs: Any) -> figure:
    """A responsive Bokeh figure with the lab's defaults; its title is the HTML ``heading(fig)``."""
    opts: dict[str, Any] = dict(height=280, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset,save",
                                toolbar_location="right")
    opts.update(kwargs)
    fig = figure(**opts)
    fig.xaxis.axis_label = x_label
    fig.yaxis.axis_label = y_label
    fig.toolbar.logo = None
    if opts.get("y_axis_type") == "log":
        fig.yaxis.ticker = CustomJSTicker(major_code=LOG_TICKS_JS)
        fig.yaxis.formatter = CustomJSTickFormatter(code=LOG_LABEL_JS)
    fig._nqs_heading = heading_pane(title)  # the lab's own attribute (Bokeh allows "_" names)
    return fig


def heading(fig: figure) -> pn.pane.HTML:
    """The HTML title of a figure made by :func:`make_figure`."""
    return fig._nqs_heading


def relative_text(fig: figure) -> None:
    """Axis and legend text in em (the page theme's sizes), never the fixed px of Bokeh's defaults."""
    for axis in (*fig.xaxis, *fig.yaxis):
        axis.axis_label_text_font_size, axis.major_label_text_font_size = "1em", "0.925em"
    for legend in fig.legend:
        if str(legend.label_text_font_size).endswith("px"):
            legend.label_text_font_size = TEXT


def with_heading(fig: figure, *captions: Any, **bokeh_kwargs: Any) -> pn.Column:
    """The figure under its title (and captions), as one block of a view."""
    relative_text(fig)
    if fig.sizing_mode == "stretch_width":
        return pn.Column(heading(fig), *captions, pn.pane.Bokeh(fig, sizing_mode="stretch_width", **bokeh_kwargs),
                         sizing_mode="stretch_width")
    for pane in (heading(fig), *captions):  # text as wide as the fixed-size figure, wrapped
        pane.param.update(sizing_mode=None, width=fig.width)
    return pn.Column(heading(fig), *captions, pn.pane.Bokeh(fig, **bokeh_kwargs))


def empty_like(source: ColumnDataSource) -> dict[str, list]:
    """Empty columns with the names of ``source``'s."""
    return {k: [] for k in source.data}


def append(source: ColumnDataSource, rows: dict[str, list], rollover: int = ROLLOVER) -> None:
    """Add rows to a live source: ``stream`` when it holds rows, a new ``data`` dict when it is empty.

    Never stream into a source emptied in the same server callback (a reset then a load): Bokeh
    sends the replaced ``data`` dict as it is when the callback ends, the streamed rows included,
    and then streams the same rows again, so the browser drew every loaded step twice.
    """
    if len(next(iter(source.data.values()), [])) == 0:
        source.data = {k: list(v)[-rollover:] for k, v in rows.items()}
    else:
        source.stream(rows, rollover=rollover)


def finite(x: Any) -> float:
    """float(x), or NaN when missing (None) so Bokeh leaves a gap."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")
