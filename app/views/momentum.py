"""Momentum: the chosen sector on the Brillouin-zone grid, the measured translation eigenvalue on
the unit circle, and the spin structure factor S(q) of the sampled configurations.

The translation eigenvalue is the engine's estimate ⟨Ψ(shift(σ, e_x))/Ψ(σ)⟩ = e^{ik_x}
(docs/ARCHITECTURE.md); S(q) = (1/N) ⟨|Σ_i S^z_i e^{−iq·r_i}|²⟩ with S^z = σ/2, averaged over the
samples of recent frames (a diagonal observable, so the samples of |ψ|² suffice).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import panel as pn
from bokeh.models import ColorBar, ColumnDataSource, LinearColorMapper, Range1d
from bokeh.palettes import Viridis256

from nqs_core.lattice import Lattice
from nqs_core.observables import k_over_pi, structure_factor

from app.views.correlations import CorrelationMap
from app.views.common import SMALL_TEXT, append, caption_pane, set_text, with_heading, BLUE, GREY, ORANGE, ROLLOVER, VERMILION, empty_like, make_figure

TRAIL = 300


def structure_factor_over_pi(samples: np.ndarray, lattice: Lattice) -> tuple[np.ndarray, np.ndarray]:
    """(q in units of π (n_q, d), S(q) (n_q,)) on the allowed momenta: ``nqs_core.observables.structure_factor``."""
    q, s = structure_factor(np.asarray(samples), lattice)
    return np.asarray(q) / np.pi, np.asarray(s)


class MomentumView:
    title = "Momentum"

    def __init__(self) -> None:
        self.bz_source = ColumnDataSource(dict(kx=[], ky=[], color=[], size=[], energy=[]))
        self.bz_fig = make_figure("Brillouin zone: allowed k", "kx / π", "ky / π", height=340,
                                  width=340, sizing_mode="fixed", tools="hover,save", x_range=Range1d(-1.2, 1.2),
                                  y_range=Range1d(-1.2, 1.2))
        self.bz_fig.scatter("kx", "ky", source=self.bz_source, color="color", size="size", marker="square")
        self.bz_fig.hover.tooltips = [("k/π", "(@kx, @ky)"), ("lowest E in this sector (ED)", "@energy{0.000000}")]
        self.sectors_note = caption_pane("")
        self.bz_note = caption_pane("", color=ORANGE)

        self.circle_source = ColumnDataSource(dict(re=[], im=[], step=[]))
        self.expected_source = ColumnDataSource(dict(re=[], im=[]))
        self.circle_fig = make_figure("Translation eigenvalue ⟨T_x⟩", "Re", "Im", height=400,
                                      width=430, sizing_mode="fixed", tools="save",
                                      x_range=Range1d(-1.25, 1.25), y_range=Range1d(-1.25, 1.25))
        t = np.linspace(0, 2 * np.pi, 200)
        self.circle_fig.line(np.cos(t), np.sin(t), color=GREY, line_width=1)
        self.circle_fig.scatter("re", "im", source=self.circle_source, color=BLUE, size=5, alpha=0.35,
                                legend_label="step")
        self.latest_source = ColumnDataSource(dict(re=[], im=[]))
        self.circle_fig.segment(0, 0, "re", "im", source=self.latest_source, color=BLUE, line_width=2)
        self.circle_fig.scatter("re", "im", source=self.latest_source, color=BLUE, size=12, line_color="white",
                                legend_label="latest")
        self.circle_fig.scatter("re", "im", source=self.expected_source, color=VERMILION, size=16, marker="star",
                                legend_label="sector")
        self.final_source = ColumnDataSource(dict(re=[], im=[]))
        self.circle_fig.scatter("re", "im", source=self.final_source, color=ORANGE, size=14, marker="circle",
                                line_color="black", legend_label="final")
        legend = self.circle_fig.legend[0]
        legend.orientation = "horizontal"
        legend.label_text_font_size = SMALL_TEXT
        legend.spacing = 4
        self.circle_fig.add_layout(legend, "below")
        self.circle_note = caption_pane("")

        self.sq_mapper = LinearColorMapper(palette=Viridis256, low=0, high=1)
        self.sq_source = ColumnDataSource(dict(qx=[], qy=[], s=[], w=[], h=[]))
        self.sq_fig = make_figure("Structure factor S(q) of the samples", "qx / π", "qy / π", height=340,
                                  width=380, sizing_mode="fixed", tools="hover,save", x_range=Range1d(-1.2, 1.2),
                                  y_range=Range1d(-1.2, 1.2))
        self.sq_fig.rect("qx", "qy", width="w", height="h", source=self.sq_source,
                         fill_color={"field": "s", "transform": self.sq_mapper}, line_color=None)
        self.sq_fig.add_layout(ColorBar(color_mapper=self.sq_mapper, width=10), "right")
        self.sq_fig.hover.tooltips = [("q/π", "(@qx, @qy)"), ("S(q)", "@s{0.000}")]
        self._recent: deque[np.ndarray] = deque(maxlen=20)
        self.lattice: Lattice | None = None
        self._chosen: tuple[float, float] | None = None
        self.correlations = CorrelationMap()  # the real-space map beside S(q)
        self.figures = [self.bz_fig, self.circle_fig, self.sq_fig, self.correlations.fig]
        # a FlexBox wraps the fixed-size figures onto a second line where the main area is narrow
        self.panel = pn.FlexBox(with_heading(self.bz_fig, self.bz_note, self.sectors_note), with_heading(self.circle_fig, self.circle_note),
                                with_heading(self.sq_fig), with_heading(self.correlations.fig, self.correlations.note),
                                flex_wrap="wrap", sizing_mode="stretch_width",
                                name=self.title)

    def reset(self, lattice: Lattice, k: tuple[float, ...] | None, ising: bool = False) -> None:
        self.lattice = lattice
        self.correlations.reset(lattice, ising)
        momenta_over_pi = lattice.momenta() / np.pi
        self._recent.clear()
        self.circle_source.data = empty_like(self.circle_source)
        self.latest_source.data = empty_like(self.latest_source)
        self.final_source.data = empty_like(self.final_source)
        self.sq_source.data = dict(qx=[], qy=[], s=[], w=[], h=[])
        m = np.asarray(momenta_over_pi, dtype=float)
        m = np.where(m > 1 + 1e-9, m - 2, m)  # draw the zone as (−π, π]
        kx = m[:, 0].tolist()
        ky = (m[:, 1] if m.shape[1] > 1 else np.zeros(len(m))).tolist()
        chosen = None
        if k is not None:
            kk = np.where(np.asarray(k) > 1 + 1e-9, np.asarray(k) - 2, np.asarray(k))
            chosen = (float(kk[0]), float(kk[1]) if len(kk) > 1 else 0.0)
        color = [ORANGE if chosen and abs(a - chosen[0]) < 1e-9 and abs(b - chosen[1]) < 1e-9 else GREY
                 for a, b in zip(kx, ky)]
        per_axis = len(kx) if m.shape[1] == 1 else int(round(np.sqrt(len(kx))))  # points along one axis
        base = max(4, min(12, int(110 / max(per_axis, 1))))
        size = [2 * base if c == ORANGE else base for c in color]
        self.bz_source.data = dict(kx=kx, ky=ky, color=color, size=size, energy=[float("nan")] * len(kx))
        self._chosen = chosen
        set_text(self.sectors_note, "")
        self.bz_fig.yaxis.axis_label = "ky / π" if m.shape[1] > 1 else ""
        self.bz_fig.y_range.update(start=-1.2 if m.shape[1] > 1 else -0.5, end=1.2 if m.shape[1] > 1 else 0.5)
        self.sq_fig.y_range.update(start=-1.2 if m.shape[1] > 1 else -0.5, end=1.2 if m.shape[1] > 1 else 0.5)
        self.sq_fig.yaxis.axis_label = "qy / π" if m.shape[1] > 1 else ""
        self.bz_note.object = ("sector k/π = " + ", ".join(f"{x:g}" for x in k)) if k is not None else \
            "no momentum projection"
        if k is not None:
            self.expected_source.data = dict(re=[float(np.cos(np.pi * k[0]))], im=[float(np.sin(np.pi * k[0]))])
        else:
            self.expected_source.data = dict(re=[], im=[])
        periodic = bool(np.asarray(momenta_over_pi).shape[0] > 1)
        self.circle_note.object = ("measured each step from that step's samples" if periodic else
                                 "open boundaries: no translation symmetry to measure")

    def show_sector_energies(self, ref: dict) -> None:
        """ED's lowest energy per momentum sector (hover) and where the global ground state lies:
        the evidence that the chosen sector holds the ground state, not just the projection."""
        sectors = ref.get("sector_energies") or []
        ground = ref.get("ground_momentum_over_pi")
        if not sectors or ground is None:
            return
        fold = lambda k: [x - 2 if x > 1 + 1e-9 else x for x in k] + [0.0] * (2 - len(k))  # noqa: E731
        energy = {tuple(np.round(fold(s["k_over_pi"]), 6)): float(s["energy"]) for s in sectors}
        data = dict(self.bz_source.data)
        data["energy"] = [energy.get((round(a, 6), round(b, 6)), float("nan")) for a, b in zip(data["kx"], data["ky"])]
        self.bz_source.data = data
        g = fold(ground)
        where = ", ".join(f"{x:g}" for x in ground)
        where = f"({where})" if len(ground) > 1 else where
        e0 = min(float(s["energy"]) for s in sectors)
        if self._chosen is None:
            verdict = ""
        elif all(abs(a - b) < 1e-6 for a, b in zip(self._chosen, g)):
            verdict = " · the chosen sector holds it"
        else:
            verdict = " · NOT the chosen sector"
        set_text(self.sectors_note, f"ED per sector (hover): ground state at k/π = {where}, E₀ = {e0:.6f}{verdict}")

    def update(self, records: list[Any], frames: list[np.ndarray]) -> None:
        pts = [(int(r.step), getattr(r, "translation_eigenvalue", None)) for r in records]
        pts = [(s, v) for s, v in pts if v is not None and np.all(np.isfinite(np.asarray(v, dtype=float)))]
        if pts:
            re = [float(np.asarray(v).reshape(-1)[0]) for _, v in pts]
            im = [float(np.asarray(v).reshape(-1)[1]) if np.size(v) > 1 else 0.0 for _, v in pts]
            append(self.circle_source, dict(re=re, im=im, step=[s for s, _ in pts]), TRAIL)
            self.latest_source.data = dict(re=[re[-1]], im=[im[-1]])
            angle = k_over_pi(re[-1] + 1j * im[-1])
            self.circle_note.object = f"step {pts[-1][0]}: |⟨T_x⟩| = {abs(re[-1] + 1j * im[-1]):.3f}, " \
                                    f"k_x/π = {angle:+.3f}"
        if frames:
            self._recent.extend(np.asarray(f) for f in frames)
            self._draw_sq()

    def show_final(self, value: complex, n_samples: int) -> None:
        """The translation eigenvalue of the final state (from ``n_samples`` chain configurations)."""
        self.final_source.data = dict(re=[value.real], im=[value.imag])
        self.circle_note.object = (f"final ({n_samples} samples): |⟨T_x⟩| = {abs(value):.3f}, "
                                 f"k_x/π = {k_over_pi(value):+.3f}")

    def _draw_sq(self) -> None:
        samples = np.concatenate(list(self._recent), axis=0)
        if self.lattice is None or samples.shape[1] != self.lattice.n_sites:
            return
        q, s = structure_factor_over_pi(samples, self.lattice)
        q = np.where(q > 1 + 1e-9, q - 2, q)
        qx = q[:, 0]
        qy = q[:, 1] if q.shape[1] > 1 else np.zeros(len(q))
        w = np.full(len(q), 2.0 / self.lattice.L)
        h = w if q.shape[1] > 1 else np.ones(len(q))
        self.sq_mapper.high = float(max(np.max(s), 1e-9))
        self.sq_source.data = dict(qx=qx.tolist(), qy=qy.tolist(), s=s.tolist(), w=w.tolist(), h=h.tolist())
        self.correlations.update(samples)



__all__ = ["MomentumView", "structure_factor_over_pi", "ROLLOVER"]
