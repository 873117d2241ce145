"""Shared pieces of the live views: figure factory, palette, font scaling, bounded streams.

Colours are the Okabe–Ito palette (distinguishable with colour-blindness, readable on light and
dark backgrounds).  Bokeh axis fonts do not follow the page typography, so ``set_font_scale``
changes them on the figures (the projector option).
"""

from __future__ import annotations

from typing import Any

from bokeh.models import ColumnDataSource, Label, LogTicker, Title
from bokeh.plotting import figure

BLUE, ORANGE, GREEN, VERMILION, PURPLE, SKY, YELLOW, GREY = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999")
SPIN_UP, SPIN_DOWN = "#E69F00", "#0072B2"
ROLLOVER = 5000  # points kept per live stream: memory stays flat over any run length

BASE_FONT = {"title": 13, "axis_label": 12, "ticks": 11, "legend": 11}


def make_figure(title: str, x_label: str, y_label: str, **kwargs: Any) -> figure:
    """A responsive Bokeh figure with the lab's defaults."""
    opts: dict[str, Any] = dict(height=280, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset,save",
                                toolbar_location="right", title=title)
    opts.update(kwargs)
    fig = figure(**opts)
    fig.xaxis.axis_label = x_label
    fig.yaxis.axis_label = y_label
    fig.toolbar.logo = None
    if opts.get("y_axis_type") == "log":
        # Bokeh ticks a range of < 2 decades linearly: few ticks, else they crowd the top of the axis
        fig.yaxis.ticker = LogTicker(desired_num_ticks=3)
    set_font_scale(fig, 1.0)
    return fig


_BASE_SIZES: dict[str, float] = {}  # model id -> font size (px) at scale 1 of extra titles and labels


def set_font_scale(fig: figure, scale: float, nudge: bool = False) -> None:
    """Scale title, axis labels, tick labels, legend and the extra titles / labels of a figure.

    ``nudge`` adds 0.01 px so that the values differ from the last ones sent: a theme switch
    re-applies the theme's fonts in the browser, and only a changed value is sent again.
    """
    eps = 0.01 if nudge else 0.0
    px = {k: f"{round(v * scale) + eps:g}px" for k, v in BASE_FONT.items()}
    fig.title.text_font_size = px["title"]
    for axis in (*fig.xaxis, *fig.yaxis):
        axis.axis_label_text_font_size = px["axis_label"]
        axis.major_label_text_font_size = px["ticks"]
    for legend in fig.legend:
        legend.label_text_font_size = px["legend"]
    for model in [*fig.select({"type": Title}), *fig.select({"type": Label})]:
        if model is fig.title:
            continue
        size = str(model.text_font_size or "12px")
        base = _BASE_SIZES.setdefault(model.id, float(size[:-2]) if size.endswith("px") else 12.0)
        model.text_font_size = f"{round(base * scale) + eps:g}px"


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
