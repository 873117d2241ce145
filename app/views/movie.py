"""The Metropolis movie: one chain of the run's sampler, move by move, the changed spins outlined.

Square lattices: the L×L lattice of the newest configuration.  Chains: a space–time strip (site i at
height i, frames to the right, the newest column last, scrolling), each column outlining the spins
its move changed.  The frames come from the real sampler (:mod:`app.chain_movie`, from the run's
checkpoint); with "accepted moves only" the rejected proposals are skipped, so each drawn frame differs
from the one before by exactly one accepted move (one flipped spin, or two exchanged opposite spins).
A movie plays at ``1000 / (TICK_MS · TICKS_PER_FRAME)`` frames per second from the lab's periodic
callback, while it is seen (the Spins view polls it only then: nothing is computed for a hidden movie); at its end the next movie starts from a newer checkpoint, or the same one plays again (a
paused or ended run's checkpoint starts its movie at once).
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, Range1d
from bokeh.transform import linear_cmap

from app.chain_movie import ChainMovies, Movie
from app.snapshot import RunSnapshot
from app.views.common import GREY, SPIN_DOWN, SPIN_UP, append, heading, make_figure, set_text, with_heading
from nqs_core.exports.movie import Trajectory, caption

TICKS_PER_FRAME = 2  # lab ticks (100 ms) per movie frame
HOLD_TICKS = 15  # the last frame stays this long before the movie plays again
STRIP_COLUMNS = 60  # frames a chain's strip shows at once
COLUMNS = ("x", "y", "site", "spin", "line_color", "line_width")
MARK = "#111111"  # the outline of the spins a move changed: dark on both spin colours
IDLE_TEXT = "no samples yet: press Run (or load a run); the movie starts from the run's first checkpoint " \
            "(2 s after its first step)."


def frame_order(traj: Trajectory, accepted_only: bool) -> list[int]:
    """The sub-steps drawn: the start, then every sub-step or only those whose move was accepted."""
    steps = range(1, traj.steps + 1)
    return [0, *(t for t in steps if not accepted_only or len(traj.changed(t)))]


class MovieView:
    """One chain's Metropolis movie (see the module docstring); fed by :meth:`poll` every tick."""

    def __init__(self) -> None:
        self.source = ColumnDataSource({k: [] for k in COLUMNS})
        self.fig = make_figure("Metropolis movie of one chain (orange ↑, blue ↓, outlined: the move)", "", "",
                               height=400, width=420, sizing_mode="fixed", tools="save",
                               x_range=Range1d(-0.5, 1), y_range=Range1d(-0.5, 1))
        self.fig.rect(x="x", y="y", width=0.9, height=0.9, source=self.source, line_color="line_color",
                      line_width="line_width", fill_color=linear_cmap("spin", [SPIN_DOWN, SPIN_UP], -1, 1))
        self.fig.grid.visible = False
        self.caption = pn.pane.HTML(IDLE_TEXT, styles={"font-size": "0.95rem", "font-family": "monospace"},
                                    margin=(4, 10), css_classes=["nqs-movie-caption"])
        self.accepted_only = pn.ui.Checkbox(label="Accepted moves only (skip rejected proposals)", value=True)
        self.accepted_only.param.watch(self._on_accepted_only, "value")
        self._replay = False  # set by the checkbox, done in the next tick (where Bokeh models may change)
        self.maker = ChainMovies()
        self.movie: Movie | None = None
        self.order: list[int] = []
        self.pos = 0  # index into ``order`` of the drawn frame
        self.movies = 0  # movies started (a new one restarts the stream)
        self._ticks = 0
        block = with_heading(self.fig, self.caption)
        self.figure_pane = block[-1]  # hidden until a movie plays: no empty box before the first samples
        self.figure_pane.visible = False
        self.panel = pn.Column(block, self.accepted_only, sizing_mode="stretch_width")

    @property
    def traj(self) -> Trajectory | None:
        return self.movie.trajectory if self.movie is not None else None

    def reset(self) -> None:
        """A new run: no movie until its first checkpoint."""
        self.maker.forget()
        self.movie, self.order, self.pos = None, [], 0
        self.source.data = {k: [] for k in COLUMNS}
        self.caption.object = html.escape(IDLE_TEXT)
        self.figure_pane.visible = False

    def _on_accepted_only(self, event) -> None:
        self._replay = self.movie is not None

    def poll(self, snap: RunSnapshot) -> None:
        """Every tick while the movie is seen: take a computed movie, advance the one playing, ask for
        the next one when due."""
        movie = self.maker.take() or (self.movie if self._replay else None)
        self._replay = False
        if movie is not None:
            self.play(movie)
        elif self.traj is None:
            self._say_why_not(snap)
        else:
            self._ticks += 1
            if self._ticks % TICKS_PER_FRAME == 0:
                self.advance()
        if self._due(snap):
            self.maker.request(snap)

    def _say_why_not(self, snap: RunSnapshot) -> None:
        """The caption while there is no movie: what it waits for, or why there will be none."""
        text = IDLE_TEXT
        if snap.settings is not None and snap.settings.sampler != "metropolis":
            text = "The exact sampler draws independent configurations: no Markov chain to follow (see the batch)."
        elif snap.history and snap.checkpoint is None:
            text = "A loaded run has no checkpoint of this session to start a movie from (see the batch)."
        if self.caption.object != html.escape(text) and not self.caption.object.startswith("No movie"):
            self.caption.object = html.escape(text)

    def _due(self, snap: RunSnapshot) -> bool:
        """A newer checkpoint of a Metropolis run, and no movie playing that has frames left, unless the
        run is paused or ended (its final state replaces an older movie at once)."""
        if snap.settings is None or snap.settings.sampler != "metropolis" or snap.checkpoint_mtime is None:
            return False
        fresh = snap.checkpoint_mtime != self.maker.used_mtime
        free = self.traj is None or self.pos >= len(self.order) - 1 or snap.settled
        return fresh and free and not self.maker.busy

    def play(self, movie: Movie) -> None:
        """Start ``movie`` at its first frame (a new stream: the strip starts empty)."""
        if movie.trajectory is None:
            self.caption.object = html.escape(f"No movie: {movie.error}")
            return
        self.movie, self.movies, self._ticks = movie, self.movies + 1, 0
        self.order = frame_order(movie.trajectory, self.accepted_only.value)
        self._layout(movie.trajectory)
        self.source.data = {k: [] for k in COLUMNS}
        self.pos = 0
        self._draw()
        self.figure_pane.visible = True

    def advance(self) -> None:
        """The next frame; after the last one (held ``HOLD_TICKS``) the movie plays again."""
        if self.pos < len(self.order) - 1:
            self.pos += 1
            self._draw()
        elif self._ticks >= TICKS_PER_FRAME * len(self.order) + HOLD_TICKS:
            self.play(self.movie)

    def _layout(self, traj: Trajectory) -> None:
        lat = traj.lattice
        chain = lat.dim == 1
        set_text(heading(self.fig), "Metropolis movie of one chain: space–time strip (orange ↑, blue ↓, outlined: "
                 "the move)" if chain else "Metropolis movie of one chain (orange ↑, blue ↓, outlined: the move)")
        self.fig.width, self.fig.height = (760, 320) if chain else (420, 400)
        heading(self.fig).width = self.caption.width = self.fig.width
        self.fig.xaxis.axis_label, self.fig.yaxis.axis_label = ("frame", "site") if chain else ("", "")
        self.fig.xaxis.visible = self.fig.yaxis.visible = chain
        self.fig.x_range.update(start=-0.5, end=(STRIP_COLUMNS if chain else lat.L) - 0.5)
        self.fig.y_range.update(start=-0.5, end=lat.L - 0.5)

    def _draw(self) -> None:
        """Frame ``pos``: its configuration with the sites its move changed outlined."""
        traj, t = self.traj, self.order[self.pos]
        lat, config = traj.lattice, traj.configs[t]
        changed = np.zeros(lat.n_sites, bool)
        if self.pos > 0:
            changed[np.flatnonzero(config != traj.configs[self.order[self.pos - 1]])] = True
        rows = {"site": list(range(lat.n_sites)), "spin": config.astype(int).tolist(),
                "line_color": np.where(changed, MARK, GREY).tolist(),
                "line_width": np.where(changed, 2.5 if lat.dim == 1 else 5.0, 0.5).tolist()}
        if lat.dim == 1:  # the site axis is labelled: site i at height i
            rows |= {"x": [self.pos] * lat.n_sites, "y": list(range(lat.L))}
            append(self.source, rows, rollover=STRIP_COLUMNS * lat.n_sites)
            self.fig.x_range.update(start=max(-0.5, self.pos - STRIP_COLUMNS + 0.5),
                                    end=max(STRIP_COLUMNS - 0.5, self.pos + 0.5))
        else:
            rows |= {"x": lat.coords[:, 0].tolist(), "y": (lat.L - 1 - lat.coords[:, 1]).tolist()}
            self.source.data = rows
        skipped = "accepted moves only" if self.accepted_only.value else "every proposal"
        self.caption.object = html.escape(f"chain 0 from the checkpoint after step {self.movie.step} · frame "
                                          f"{self.pos + 1}/{len(self.order)} ({skipped}) · {caption(traj, t)}")

    def shown(self) -> np.ndarray:
        """The newest configuration as the figure's source holds it (what the browser draws)."""
        d = self.source.data
        n = self.traj.lattice.n_sites
        sites, spins = np.asarray(d["site"][-n:]), np.asarray(d["spin"][-n:])
        out = np.empty(n, dtype=np.int8)
        out[sites] = spins
        return out


__all__ = ["MovieView", "frame_order"]
