"""The classical Ising tab: a 2D Ising lattice by Metropolis at temperature T, streamed live.

The classic picture behind the sampled-configuration view: below T_c ≈ 2.269 domains order,
above it the lattice is noise.  Sweeps run on the server's event loop in the session's periodic
callback (a 64×64 checkerboard sweep costs well under a millisecond in NumPy).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, LinearColorMapper, Range1d

from app.ising import T_CRITICAL, IsingLattice
from app.views.common import heading, set_text, with_heading, BLUE, ORANGE, SPIN_DOWN, SPIN_UP, make_figure

HISTORY = 600


class IsingView:
    title = "Classical Ising"

    def __init__(self) -> None:
        self.model = IsingLattice(64, T_CRITICAL, seed=0)
        self.temperature = pn.ui.FloatSlider(label="Temperature T (J = 1; T_c ≈ 2.269)", start=0.5, end=5.0,
                                         step=0.01, value=round(T_CRITICAL, 2), sizing_mode="stretch_width")
        self.size = pn.ui.Select(label="Lattice", options={"32 × 32": 32, "64 × 64": 64, "128 × 128": 128},
                                 value=64, width=140)
        self.sweeps_per_tick = pn.ui.IntSlider(label="Sweeps per frame", start=1, end=20, value=2, width=200)
        self.animate = pn.ui.Toggle(label="Animate the Ising lattice", value=False, color="primary",
                                    width=240)
        self.reheat = pn.ui.Button(label="Randomize spins", width=180)
        self.source = ColumnDataSource(dict(image=[self.model.spins.astype(float)]))
        self.obs_source = ColumnDataSource(dict(sweep=[], m=[], e=[]))
        self.readout = pn.pane.HTML("", styles={"font-size": "1rem", "font-family": "monospace"}, margin=(4, 10))
        self.temperature.param.watch(self._on_temperature, "value")
        self.size.param.watch(self._on_size, "value")
        self.reheat.on_click(lambda _: self._restart(self.model.L))
        self._draw()

    @functools.cached_property
    def figures(self) -> list[Any]:
        """The lattice and its observables, built when first asked for (the tab first shown): a new
        session builds only the shown tab's figures."""
        L = self.model.L
        mapper = LinearColorMapper(palette=[SPIN_DOWN, SPIN_UP], low=-1, high=1)
        fig = make_figure(f"Metropolis at T = {self.model.T:.2f}", "x", "y", height=480, width=480, sizing_mode="fixed",
                          tools="save", x_range=Range1d(0, L), y_range=Range1d(0, L))
        fig.image(image="image", x=0, y=0, dw=L, dh=L, source=self.source, color_mapper=mapper)
        fig.grid.visible = False
        obs = make_figure("Magnetisation |m| and energy per site e", "sweep", "", height=300)
        obs.line("sweep", "m", source=self.obs_source, color=ORANGE, line_width=2, legend_label="|m|")
        obs.line("sweep", "e", source=self.obs_source, color=BLUE, line_width=2, legend_label="e")
        obs.legend.location = "center_right"
        return [fig, obs]

    @property
    def fig(self) -> Any:
        return self.figures[0]

    @functools.cached_property
    def panel(self) -> pn.Column:
        fig, obs = self.figures
        return pn.Column(
            pn.Row(self.animate, self.reheat, self.size, self.sweeps_per_tick),
            self.temperature,
            pn.Row(with_heading(fig), pn.Column(with_heading(obs), self.readout, sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width", name=self.title)

    def _on_temperature(self, event) -> None:
        self.model.T = float(event.new)
        set_text(heading(self.fig), f"Metropolis at T = {event.new:.2f}")

    def _on_size(self, event) -> None:
        self._restart(int(event.new))

    def _restart(self, L: int) -> None:
        self.model = IsingLattice(L, float(self.temperature.value), seed=int(np.random.SeedSequence().entropy % 2**31))
        self.fig.x_range.end = L
        self.fig.y_range.end = L
        self.fig.renderers[0].glyph.dw = L
        self.fig.renderers[0].glyph.dh = L
        self.obs_source.data = dict(sweep=[], m=[], e=[])
        self._draw()

    def _draw(self) -> None:
        self.source.data = dict(image=[self.model.spins.astype(float)])
        m, e = self.model.magnetization(), self.model.energy_per_site()
        self.readout.object = f"sweep {self.model.sweeps} · T = {self.model.T:.2f} · m = {m:+.3f} · e = {e:.3f}"

    def tick(self) -> None:
        """One animation frame (called from the session's periodic callback)."""
        if not self.animate.value:
            return
        self.model.sweep(int(self.sweeps_per_tick.value))
        self.obs_source.stream(dict(sweep=[self.model.sweeps], m=[abs(self.model.magnetization())],
                                    e=[self.model.energy_per_site()]), rollover=HISTORY)
        self._draw()

