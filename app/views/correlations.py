"""The real-space spin correlation map on the lattice, drawn beside S(q) in the Momentum view.

Live, from the recent samples of |ψ|² (a diagonal observable): ⟨σᶻ_0σᶻ_r⟩ for the TFIM, ⟨Sᶻ_0Sᶻ_r⟩
for the S·S models, computed only while the Momentum tab is shown (the latest samples when it shows).  When a run ends, the full ⟨S_0·S_r⟩ of the final state (S·S models: the
exchange part needs ψ(σ^{ij})/ψ(σ), one network pass per pair) or ⟨σᶻ_0σᶻ_r⟩ from fresh samples,
``nqs_core.state_observables``, computed where the run ran (``app.pictures.final_pictures``) and
drawn by :meth:`CorrelationMap.show_final`.  Both through
``nqs_core.correlations``: translation-averaged C(r) on a periodic lattice, the central site's row
with open boundaries (``by_displacement``).  Bokeh models change only on the event loop.
"""

from __future__ import annotations

import numpy as np
from bokeh.models import ColorBar, ColumnDataSource, LinearColorMapper, Range1d
from bokeh.palettes import RdBu11

from app.views.common import caption_pane, make_figure, set_text
from nqs_core.correlations import by_displacement
from nqs_core.lattice import Lattice

PALETTE = RdBu11  # Bokeh orders it blue (negative) to red (positive)


def sample_map(samples: np.ndarray, lattice: Lattice, ising: bool) -> np.ndarray:
    """C(r) from samples: ⟨σᶻ_0σᶻ_r⟩ (TFIM) or ⟨Sᶻ_0Sᶻ_r⟩ = ⟨σᶻ_0σᶻ_r⟩/4, as ``by_displacement`` lays it out
    (``nqs_core.correlations.zz_correlations`` in NumPy: no device round trip on the event loop)."""
    s = np.asarray(samples, dtype=float)
    zz = s.T @ s / max(len(s), 1)
    return by_displacement(zz if ising else zz / 4.0, lattice)


def map_rows(c: np.ndarray) -> dict[str, list[float]]:
    """Columns x, y, c of a map indexed [x] (chain) or [y, x] (square)."""
    c = np.atleast_2d(np.asarray(c, dtype=float))
    y, x = np.indices(c.shape)
    return dict(x=x.ravel().tolist(), y=y.ravel().tolist(), c=c.ravel().tolist())


class CorrelationMap:
    """The figure, its live update from samples and the final state's map."""

    def __init__(self) -> None:
        self.mapper = LinearColorMapper(palette=PALETTE, low=-1, high=1)
        self.source = ColumnDataSource(dict(x=[], y=[], c=[]))
        self.fig = make_figure("Spin correlations on the lattice", "r_x (sites from the origin)", "r_y", height=340,
                               width=380, sizing_mode="fixed", tools="hover,save", x_range=Range1d(-0.6, 3.6),
                               y_range=Range1d(-0.6, 3.6))
        self.fig.rect("x", "y", width=0.95, height=0.95, source=self.source,
                      fill_color={"field": "c", "transform": self.mapper}, line_color=None)
        self.fig.add_layout(ColorBar(color_mapper=self.mapper, width=10), "right")
        self.fig.hover.tooltips = [("r", "(@x, @y)"), ("C(r)", "@c{0.000}")]
        self.note = caption_pane("")
        self.lattice: Lattice | None = None
        self.ising = False
        self.shown = True  # the Momentum tab is the active one (the Lab tells every tick, ``set_shown``)
        self._pending: np.ndarray | None = None  # the latest samples not drawn yet (hidden)
        self._final = False  # the final state's map is drawn: the samples no longer replace it

    def reset(self, lattice: Lattice, ising: bool) -> None:
        self.lattice, self.ising = lattice, ising
        self._pending, self._final = None, False
        self.source.data = dict(x=[], y=[], c=[])
        w, h = (lattice.L, lattice.L if lattice.dim > 1 else 1)
        self.fig.x_range.update(start=-0.6, end=w - 0.4)
        self.fig.y_range.update(start=-0.6, end=h - 0.4)
        self.fig.yaxis.visible = lattice.dim > 1  # a chain's map is one row
        origin = "origin: site 0, averaged over translations" if lattice.pbc else "row of the central site"
        set_text(self.note, f"{self._what()} of the recent samples ({origin})")

    def _what(self, final: bool = False) -> str:
        if self.ising:
            return "⟨σᶻ_0σᶻ_r⟩"
        return "⟨S_0·S_r⟩" if final else "⟨Sᶻ_0Sᶻ_r⟩"

    def draw(self, c: np.ndarray) -> None:
        rows = map_rows(c)
        values = np.sort(np.abs(np.asarray(rows["c"])))[:-1]  # without the origin (C = 1 or 3/4): it washes out the rest
        top = float(values.max()) if values.size and np.isfinite(values).any() else 1.0
        self.mapper.update(low=-max(top, 1e-9), high=max(top, 1e-9))
        self.source.data = rows

    def update(self, samples: np.ndarray) -> None:
        """Live map from the recent samples (S·S models: the Sᶻ part only), drawn now if shown."""
        if self._final or self.lattice is None or samples.shape[1] != self.lattice.n_sites:
            return
        self._pending = samples
        if self.shown:
            self._draw_pending()

    def set_shown(self, shown: bool) -> None:
        """The Momentum tab shows (or not): on showing, draw the latest samples that came while hidden."""
        self.shown = shown
        if shown and self._pending is not None:
            self._draw_pending()

    def _draw_pending(self) -> None:
        samples, self._pending = self._pending, None
        self.draw(sample_map(samples, self.lattice, self.ising))

    def show_final(self, c: np.ndarray) -> None:
        """The final state's map (``app.pictures.final_pictures``' ``correlation_map``)."""
        self._pending, self._final = None, True
        self.draw(np.asarray(c))
        set_text(self.note, f"{self._what(final=True)} of the final state, from fresh samples")


__all__ = ["CorrelationMap", "sample_map", "map_rows"]
