"""Spin configurations: one chain's Metropolis movie (:mod:`app.views.movie`, the default) or, by a
toggle, the sampled batch of the latest steps drawn on the lattice.

Batch, square lattices: one L×L tile per shown sample, side by side (squares coloured by spin).
Chains: a space–time strip, one row per successive sample, newest at the top.
Every frame (one set of samples per update) is kept in a bounded ring so a player can scrub
through them afterwards.  Only what is seen is drawn: the movie plays while the Spins tab is shown
in movie mode, and the hidden batch only collects frames (drawn when it shows).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, LinearColorMapper, Range1d

from app.snapshot import RunSnapshot
from app.views.common import heading, set_text, with_heading, GREY, SPIN_DOWN, SPIN_UP, make_figure
from app.views.movie import MovieView

MAX_FRAMES = 400
STRIP_ROWS = 96
MAX_TILES = 4
MOVIE, BATCH = "Metropolis movie", "Sampled batch"


def tile_image(samples: np.ndarray, L: int, n_tiles: int = MAX_TILES) -> np.ndarray:
    """Up to ``n_tiles`` L×L configurations on a near-square grid of tiles, NaN gaps between them.

    Image row y of a tile is lattice row y (site = x + L·y), so each tile matches the lattice.
    """
    s = np.asarray(samples, dtype=float)[:n_tiles].reshape(-1, L, L)
    n = s.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    img = np.full((rows * (L + 1) - 1, cols * (L + 1) - 1), np.nan)
    for i in range(n):
        r, c = divmod(i, cols)
        r = rows - 1 - r  # first sample at the top left
        img[r * (L + 1): r * (L + 1) + L, c * (L + 1): c * (L + 1) + L] = s[i]
    return img


def strip_image(frames: list[np.ndarray], columns: int = STRIP_ROWS) -> np.ndarray:
    """(L, columns) space–time strip of one Markov chain (the first shown chain of every frame):
    site on the vertical axis, successive samples left to right."""
    if not frames:
        return np.full((1, 1), np.nan)
    stacked = np.stack([np.asarray(f, dtype=float).reshape(-1, np.shape(f)[-1])[0] for f in frames[-columns:]])
    return stacked.T


class SpinsView:
    title = "Spins"

    def __init__(self) -> None:
        self.frames: deque[np.ndarray] = deque(maxlen=MAX_FRAMES)
        self.kind = "square"
        self.L = 4
        mapper = LinearColorMapper(palette=[SPIN_DOWN, SPIN_UP], low=-1, high=1, nan_color=(0, 0, 0, 0))
        self.source = ColumnDataSource(dict(image=[np.full((1, 1), np.nan)], x=[0], y=[0], dw=[1], dh=[1]))
        self.fig = make_figure("Sampled configurations (orange ↑, blue ↓)", "", "", height=420, width=420,
                               sizing_mode="fixed", tools="save", x_range=Range1d(-0.5, 1), y_range=Range1d(-0.5, 1))
        self.fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source, color_mapper=mapper)
        self.fig.grid.visible = False
        # the classic Player: Material's names its buttons "Pause"/"Play", which would clash with the
        # lab's Pause button; its text follows the root font size (large-font option) through rem
        self.player = pn.widgets.Player(label="Replay the recorded frames", start=0, end=1, value=0, interval=120,
                                        loop_policy="once", show_loop_controls=False, width=420, disabled=True,
                                        visible_buttons=["first", "previous", "play", "pause", "next", "last"],
                                        stylesheets=[":host { --bokeh-font-size: 0.85rem; font-size: 0.85rem; }"])
        self.frame = self.player
        self.follow = pn.ui.Checkbox(label="Follow the live run", value=True)
        self.caption = pn.pane.HTML("", styles={"font-size": "0.95rem", "font-family": "monospace"}, margin=(4, 10))
        self.frame.param.watch(self._on_frame, "value")
        self.figures = [self.fig]
        self.block = with_heading(self.fig)
        self.batch = pn.Column(self.block, self.caption, self.player, self.follow, sizing_mode="stretch_width",
                               visible=False)
        self.movie = MovieView()
        self.mode = pn.ui.RadioButtonGroup(options=[MOVIE, BATCH], value=MOVIE, margin=(8, 10))
        self.mode.param.watch(self._on_mode, "value")
        self.shown = True  # the Spins tab is the active one (the Lab tells every tick, ``poll``)
        self._stale = False  # frames came while the batch was hidden: draw them when it shows
        self.panel = pn.Column(self.mode, self.movie.panel, self.batch, sizing_mode="stretch_width", name=self.title)

    def _on_mode(self, event) -> None:
        self.movie.panel.visible = event.new == MOVIE
        self.batch.visible = event.new == BATCH

    @property
    def batch_shown(self) -> bool:
        return self.shown and self.mode.value == BATCH

    def poll(self, snap: RunSnapshot, shown: bool = True) -> None:
        """Every tick (``shown``: the Spins tab is the active one): the movie plays, and is computed,
        only while it is seen; the batch draws the frames that came while it was hidden."""
        self.shown = shown
        if shown and self.mode.value == MOVIE:
            self.movie.poll(snap)
        elif self.batch_shown and self._stale:
            self._refresh_batch()

    def reset(self, kind: str, L: int) -> None:
        self.kind, self.L = kind, L
        self.movie.reset()
        self.frames.clear()
        self._stale = False
        self.source.data = dict(image=[np.full((1, 1), np.nan)], x=[0], y=[0], dw=[1], dh=[1])
        self.player.param.update(start=0, end=1, value=0, disabled=True)
        square = kind == "square"
        set_text(heading(self.fig), "Sampled configurations (orange ↑, blue ↓)" if square else
                 "Space–time strip of sampled chains (orange ↑, blue ↓)")
        self.fig.xaxis.axis_label = "" if square else "sample (oldest → newest)"
        self.fig.yaxis.axis_label = "" if square else "site"
        self.fig.xaxis.visible = not square
        self.fig.yaxis.visible = not square
        self.fig.width, self.fig.height = (460, 440) if square else (760, 300)
        heading(self.fig).width = self.fig.width
        self.caption.object = "no samples yet: press Run (or load a run)"
        self.block.visible = False  # no empty box: the figure appears with the first samples

    def _draw(self, index: int) -> None:
        if not self.frames:
            return
        index = int(np.clip(index, 0, len(self.frames) - 1))
        if self.kind == "square":
            img = tile_image(self.frames[index], self.L)
        else:
            img = strip_image(list(self.frames)[: index + 1])
        h, w = img.shape
        self.source.data = dict(image=[img], x=[-0.5], y=[-0.5], dw=[w], dh=[h])
        self.fig.x_range.update(start=-0.5, end=w - 0.5)
        self.fig.y_range.update(start=-0.5, end=h - 0.5)
        frame = self.frames[index]
        m = float(np.mean(frame)) if np.size(frame) else 0.0
        n = np.shape(frame)[0]
        shown = f"{min(n, MAX_TILES)} of {n} samples shown" if self.kind == "square" else "first chain of each frame"
        self.caption.object = f"frame {index + 1} / {len(self.frames)} · {shown} · mean σᶻ = {m:+.3f}"

    def _on_frame(self, event) -> None:
        if self.frames and event.new != len(self.frames) - 1:
            self.follow.value = False
        self._draw(event.new)

    def update(self, frames: list[np.ndarray]) -> None:
        if not frames:
            return
        for f in frames:
            self.frames.append(np.asarray(f))
        if self.batch_shown:
            self._refresh_batch()
        else:
            self._stale = True  # hidden: drawn when the batch shows

    def _refresh_batch(self) -> None:
        """The player's range and, following the run, the newest frame."""
        self._stale = False
        n = len(self.frames)
        if not n:
            return
        self.block.visible = True
        self.player.param.update(end=max(n - 1, 1), disabled=n < 2)
        if self.follow.value:
            if self.frame.value == n - 1:
                self._draw(n - 1)
            else:
                self.frame.value = n - 1
                self.follow.value = True



__all__ = ["SpinsView", "tile_image", "strip_image", "GREY"]
