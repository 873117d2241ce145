"""Sign structure: how often the learned sign agrees with the target, and per configuration.

Over steps: the Marshall agreement ⟨[sign ψ(σ) = (−1)^{N↑_A}]⟩ and, where ED reaches, the
agreement with the exact ground state, both as reported in the StepRecords.
Per configuration: arg ψ(σ)/π (global phase removed) for recent samples, coloured by the target
sign; a learned sign that agrees sits at 0 for + and at ±1 for −.  During a run it is computed
from the run's periodic checkpoint (``app.pictures.LivePictures``), at the end from the final state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, Label, Range1d

from app.views.common import TEXT, append, caption_pane, set_text, with_heading, BLUE, GREEN, GREY, ORANGE, PURPLE, ROLLOVER, empty_like, finite, make_figure


def relative_phases(log_psi: np.ndarray) -> np.ndarray:
    """arg ψ/π in (−1, 1] after removing the phase of the largest-amplitude configuration."""
    log_psi = np.asarray(log_psi)
    ref = np.angle(np.exp(1j * np.imag(log_psi[np.argmax(np.real(log_psi))])))
    return np.angle(np.exp(1j * (np.imag(log_psi) - ref))) / np.pi


def configuration_signs(result: Any, n_max: int = 64) -> dict[str, Any]:
    """Per-configuration data of a finished run's final state (see :func:`app.pictures.final_pictures`)."""
    from app.pictures import final_pictures

    return final_pictures(result, n_max)


WAITING = "waiting for the first checkpoint of the run (every few seconds, and on Pause)"


class SignView:
    title = "Sign"

    def __init__(self) -> None:
        self.source = ColumnDataSource(dict(step=[], marshall=[]))
        # the exact comparisons exist on some steps only: their own sources, drawn as points joined by lines
        self.exact_source = ColumnDataSource(dict(step=[], exact=[]))
        self.fidelity_source = ColumnDataSource(dict(step=[], fidelity=[]))
        self.fig = make_figure("Sign agreement over steps", "step", "fraction (weight) agreeing",
                               y_range=Range1d(-0.02, 1.02))
        self.fig.line("step", "exact", source=self.exact_source, color=GREEN, line_width=2, line_dash="dotted",
                      legend_label="sign of the exact ground state (ED, |ψ₀|²-weighted)")
        self.fig.line("step", "marshall", source=self.source, color=ORANGE, line_width=3, line_alpha=0.8,
                      legend_label="samples with Marshall's sign")
        self.fig.scatter("step", "exact", source=self.exact_source, color=GREEN, size=6)
        self.fig.line("step", "fidelity", source=self.fidelity_source, color=PURPLE, line_width=2,
                      line_dash="dashed", legend_label="fidelity |⟨ψ₀|ψ⟩|²")
        self.fig.scatter("step", "fidelity", source=self.fidelity_source, color=PURPLE, size=6, marker="square")
        self.fig.legend.location = "bottom_right"
        self.fig.legend.background_fill_alpha = 0.6
        self.note = Label(x=10, y=10, x_units="screen", y_units="screen", text="", text_color=GREY,
                          text_font_size=TEXT)
        self.fig.add_layout(self.note)

        self.config_source = ColumnDataSource(dict(index=[], phase=[], color=[], target=[]))
        self.config_fig = make_figure("Per sampled configuration: arg ψ(σ)/π, coloured by the target sign",
                                      "configuration", "arg ψ / π", y_range=Range1d(-1.1, 1.1), height=240)
        self.config_fig.scatter("index", "phase", source=self.config_source, color="color", size=9,
                                legend_field="target")
        self.config_fig.legend.location = "top_right"
        self.config_note = Label(x=10, y=10, x_units="screen", y_units="screen", text=WAITING, text_color=GREY,
                                 text_font_size=TEXT)
        self.config_fig.add_layout(self.config_note)
        self.config_title = caption_pane("")
        self.figures = [self.fig, self.config_fig]
        self.panel = pn.Column(with_heading(self.fig), with_heading(self.config_fig, self.config_title),
                               sizing_mode="stretch_width", name=self.title)

    def reset(self, note: str = "") -> None:
        for src in (self.source, self.exact_source, self.fidelity_source, self.config_source):
            src.data = empty_like(src)
        self.note.text = note
        self.config_note.text = WAITING
        set_text(self.config_title, "")

    def note_if_empty(self) -> None:
        """Say so when the engine reported no per-step agreement for this run."""
        values = np.asarray(self.source.data["marshall"], dtype=float)
        if not np.isfinite(values).any():
            self.note.text = "no per-step sign agreement was reported for this run (final state below)"

    def update(self, records: list[Any]) -> None:
        if not records:
            return
        append(self.source, dict(step=[int(r.step) for r in records],
                                marshall=[finite(getattr(r, "marshall_agreement", None)) for r in records]),
                           ROLLOVER)
        for name, src in (("sign_agreement", self.exact_source), ("fidelity", self.fidelity_source)):
            pts = [(int(r.step), getattr(r, name, None)) for r in records]
            pts = [(s, float(v)) for s, v in pts if v is not None and np.isfinite(v)]
            if pts:
                column = "exact" if name == "sign_agreement" else "fidelity"
                append(src, {"step": [s for s, _ in pts], column: [v for _, v in pts]}, ROLLOVER)
        if self.note.text.startswith("no per-step"):
            self.note.text = ""

    def show_configurations(self, log_psi: np.ndarray, target: np.ndarray, target_name: str,
                            label: str = "") -> None:
        """Draw arg ψ/π per configuration; ``target`` is ±1 per configuration; ``label`` says which
        parameters and samples the picture shows."""
        phases = relative_phases(log_psi)
        target = np.asarray(target)
        order = np.argsort(target, kind="stable")
        color = np.where(target[order] > 0, ORANGE, BLUE).tolist()
        labels = [f"{target_name} sign +" if t > 0 else f"{target_name} sign −" for t in target[order]]
        self.config_source.data = dict(index=list(range(len(order))), phase=phases[order].tolist(), color=color,
                                       target=labels)
        agree = np.mean(np.where(np.abs(phases) < 0.5, 1, -1) * target * np.sign(target[np.argmax(np.real(log_psi))])
                        > 0)
        self.config_note.text = ""
        set_text(self.config_title, (f"{label} · " if label else "")
                 + f"{len(order)} configurations · {100 * agree:.0f} % agree with {target_name}")



__all__ = ["SignView", "relative_phases", "PURPLE"]
