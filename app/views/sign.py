"""Sign structure: how often the learned sign agrees with the target, and per configuration.

Over steps: the Marshall agreement ⟨[sign ψ(σ) = (−1)^{N↑_A}]⟩ and, where ED reaches, the
agreement with the exact ground state, both as reported in the StepRecords.
Per configuration: arg ψ(σ)/π (global phase removed) for the shown samples, coloured by the
target sign; a learned sign that agrees sits at 0 for + and at ±1 for −.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, Label, Range1d

from app.views.common import BLUE, GREEN, GREY, ORANGE, PURPLE, ROLLOVER, empty_like, finite, make_figure, \
    set_font_scale


def marshall_sign(samples: np.ndarray, sublattice: np.ndarray) -> np.ndarray:
    """(−1)^{N↑ on sublattice A} for configurations (B, N) of ±1 (DESIGN.md §2)."""
    up_a = ((np.asarray(samples) > 0) & (np.asarray(sublattice)[None, :] == 0)).sum(axis=1)
    return np.where(up_a % 2 == 0, 1, -1)


def relative_phases(log_psi: np.ndarray) -> np.ndarray:
    """arg ψ/π in (−1, 1] after removing the phase of the largest-amplitude configuration."""
    log_psi = np.asarray(log_psi)
    ref = np.angle(np.exp(1j * np.imag(log_psi[np.argmax(np.real(log_psi))])))
    return np.angle(np.exp(1j * (np.imag(log_psi) - ref))) / np.pi


def configuration_signs(result: Any, n_max: int = 64) -> dict[str, Any]:
    """Per-configuration data for the picture, from a finished run (called in the worker thread).

    Uses the engine's public pieces: ``VMC(settings).model.apply`` on the final parameters and the
    final chain configurations; the target is Marshall's sign (Heisenberg, J1-J2 on a bipartite
    lattice) or + (TFIM, whose ground state is positive).
    """
    from nqs_core.observables import marshall_phase, translation_eigenvalues
    from nqs_core.vmc import VMC

    settings = result.settings
    if not result.history:
        return {}
    vmc = VMC(settings)
    samples = np.asarray(vmc.samples(result.state, n_max))
    log_psi = np.asarray(vmc.model.apply(result.state.params, samples))
    out: dict[str, Any] = {}
    if vmc.lattice.pbc:
        ev = np.asarray(translation_eigenvalues(vmc.model.apply, result.state.params, samples, vmc.lattice))
        out["final_translation"] = {"value": complex(ev[0]), "n_samples": len(samples)}
    if settings.hamiltonian == "tfim":
        target, name = np.ones(len(samples), dtype=int), "positive"
    elif vmc.lattice.is_bipartite:
        phase = np.asarray(marshall_phase(samples, vmc.lattice))
        target, name = np.where(np.round(phase / np.pi) % 2 == 0, 1, -1), "Marshall"
    else:
        return out
    out["configurations"] = {"log_psi": log_psi, "target": target, "target_name": name}
    return out


class SignView:
    title = "Sign"

    def __init__(self) -> None:
        self.source = ColumnDataSource(dict(step=[], marshall=[], exact=[]))
        self.fig = make_figure("Sign agreement over steps", "step", "fraction of samples",
                               y_range=Range1d(-0.02, 1.02))
        self.fig.line("step", "marshall", source=self.source, color=ORANGE, line_width=2,
                      legend_label="agrees with Marshall's rule")
        self.fig.line("step", "exact", source=self.source, color=GREEN, line_width=2, line_dash="dashed",
                      legend_label="agrees with the exact ground state (ED)")
        self.fig.legend.location = "bottom_right"
        self.note = Label(x=10, y=10, x_units="screen", y_units="screen", text="", text_color=GREY,
                          text_font_size="12px")
        self.fig.add_layout(self.note)

        self.config_source = ColumnDataSource(dict(index=[], phase=[], color=[], target=[]))
        self.config_fig = make_figure("Per sampled configuration: arg ψ(σ)/π, coloured by the target sign",
                                      "configuration", "arg ψ / π", y_range=Range1d(-1.1, 1.1), height=240)
        self.config_fig.scatter("index", "phase", source=self.config_source, color="color", size=9,
                                legend_field="target")
        self.config_fig.legend.location = "top_right"
        self.config_note = Label(x=10, y=10, x_units="screen", y_units="screen",
                                 text="shown when a run ends or is paused", text_color=GREY, text_font_size="12px")
        self.config_fig.add_layout(self.config_note)
        self.figures = [self.fig, self.config_fig]
        self.panel = pn.Column(pn.pane.Bokeh(self.fig, sizing_mode="stretch_width"),
                               pn.pane.Bokeh(self.config_fig, sizing_mode="stretch_width"),
                               sizing_mode="stretch_width", name=self.title)

    def reset(self, note: str = "") -> None:
        self.source.data = empty_like(self.source)
        self.config_source.data = empty_like(self.config_source)
        self.note.text = note
        self.config_note.text = "shown when a run ends or is paused"

    def note_if_empty(self) -> None:
        """Say so when the engine reported no per-step agreement for this run."""
        values = np.asarray(self.source.data["marshall"], dtype=float)
        if not np.isfinite(values).any():
            self.note.text = "no per-step sign agreement was reported for this run (final state below)"

    def update(self, records: list[Any]) -> None:
        if not records:
            return
        self.source.stream(dict(step=[int(r.step) for r in records],
                                marshall=[finite(getattr(r, "marshall_agreement", None)) for r in records],
                                exact=[finite(getattr(r, "sign_agreement", None)) for r in records]),
                           rollover=ROLLOVER)

    def show_configurations(self, log_psi: np.ndarray, target: np.ndarray, target_name: str) -> None:
        """Draw arg ψ/π per configuration; ``target`` is ±1 per configuration."""
        phases = relative_phases(log_psi)
        target = np.asarray(target)
        order = np.argsort(target, kind="stable")
        color = np.where(target[order] > 0, ORANGE, BLUE).tolist()
        labels = [f"{target_name} sign +" if t > 0 else f"{target_name} sign −" for t in target[order]]
        self.config_source.data = dict(index=list(range(len(order))), phase=phases[order].tolist(), color=color,
                                       target=labels)
        agree = np.mean(np.where(np.abs(phases) < 0.5, 1, -1) * target * np.sign(target[np.argmax(np.real(log_psi))])
                        > 0)
        self.config_note.text = f"{len(order)} configurations · {100 * agree:.0f} % agree with {target_name}"

    def set_font_scale(self, scale: float) -> None:
        for fig in self.figures:
            set_font_scale(fig, scale)


__all__ = ["SignView", "marshall_sign", "relative_phases", "PURPLE"]
