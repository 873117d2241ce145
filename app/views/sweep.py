"""Coupling sweep: one VMC point per value of one coupling, plotted as the points converge.

The sweep takes the sidebar's settings and sweeps one of the Hamiltonian's couplings over a range
``START:STOP:N`` or a list ``V1,V2,…`` (``nqs_core.sweep.make_sweep``: a refused range or setting is
named in the message).  Per point, against the coupling: E/N ± error with the exact curve (ED on a
fine grid where it reaches) and the current point's latest step; the relative error; the samples'
agreement with Marshall's sign (and the exact state's) and the fidelity with the exact ground state;
the order parameter with its exact curve (TFIM: ⟨|Σσᶻ|⟩/N and ⟨σˣ⟩; S·S models: the peak of S(q)).
"TFIM across the critical point" sweeps h/J through 1 on the TFIM talk preset.
Bokeh models change only in :meth:`SweepView.tick` (the lab's periodic callback).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool, Range1d, Whisker

from app.settings import LabSettings
from app.sweep_job import CurvePoint, SweepJob
from app.views.common import SMALL_TEXT, BLUE, GREEN, ORANGE, PURPLE, VERMILION, append, caption_pane, empty_like, finite, \
    make_figure, set_text, with_heading
from nqs_core.hamiltonians import COUPLINGS
from nqs_core.lattice import momentum_text
from nqs_core.settings import RunSettings, SettingsError
from nqs_core.sweep import SweepEvent, SweepPoint, make_sweep

DEFAULT_RANGES = {"h": "0.5:1.5:5", "J2": "0:1:6", "J": "0.5:1.5:5", "J1": "0.5:1.5:5"}
CRITICAL = dict(preset="tfim-critical", L=12, steps=100, coupling="h", values="0.5:1.5:5")  # through h/J = 1
POINT_COLUMNS = ("value", "energy", "lower", "upper", "exact_energy", "rel", "marshall", "marshall_exact", "fidelity",
                 "order", "order_lower", "order_upper", "order_exact", "sigma_x", "sigma_x_exact", "momentum",
                 "momentum_exact")
CURVE_COLUMNS = ("value", "energy", "order", "sigma_x", "marshall")
HOVER = [("coupling", "@value"), ("E/N", "@energy{0.00000} (exact @exact_energy{0.00000})"),
         ("relative error", "@rel{0.0e}"), ("fidelity", "@fidelity{0.0000}"),
         ("momentum k", "@momentum (exact ground state: @momentum_exact)")]


def _get(d: dict | None, *path: str) -> float:
    """A nested number of a point's observables (NaN where missing)."""
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return finite(d)


def order_key(tfim: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Where the order parameter and its error sit in a point's observables."""
    return (("magnetisation",), ("magnetisation_error",)) if tfim else \
        (("structure_factor", "peak", "value"), ("structure_factor", "peak", "error"))


def point_row(point: SweepPoint, tfim: bool) -> dict[str, list[float]]:
    """One row of the points' source from a finished :class:`SweepPoint`."""
    ob, ex = point.observables, point.exact or {}
    exact_e = finite(ex.get("energy_per_site", point.reference_energy_per_site))
    order, order_err = order_key(tfim)
    o, o_err = _get(ob, *order), _get(ob, *order_err)
    o_err = 0.0 if math.isnan(o_err) else o_err
    k, k0 = ob.get("measured_momentum"), ex.get("ground_momentum")
    e, de = finite(point.energy_per_site), finite(point.error_per_site)
    row = dict(value=point.value, energy=e, lower=e - de, upper=e + de, exact_energy=exact_e,
               rel=abs(e - exact_e) / abs(exact_e) if exact_e else math.nan,
               marshall=_get(ob, "marshall_agreement"), marshall_exact=_get(ex, "marshall_agreement"),
               fidelity=_get(ob, "fidelity"), order=o, order_lower=o - o_err, order_upper=o + o_err,
               order_exact=_get(ex, *order), sigma_x=_get(ob, "sigma_x"), sigma_x_exact=_get(ex, "sigma_x"),
               momentum=momentum_text(k) if k else "", momentum_exact=momentum_text(k0) if k0 else "")
    return {k: [v] for k, v in row.items()}


def curve_row(point: CurvePoint, tfim: bool) -> dict[str, float]:
    """One value of the exact curve as a row of the curve's source."""
    ob = point.observables or {}
    return dict(value=point.value, energy=_get(ob, "energy_per_site"), order=_get(ob, *order_key(tfim)[0]),
                sigma_x=_get(ob, "sigma_x"), marshall=_get(ob, "marshall_agreement"))


class SweepView(pn.viewable.Viewer):
    """The Sweep tab: controls, four figures against the swept coupling, Stop."""

    title = "Sweep"
    coupling = param.Selector(default="h", objects=["h", "J"], doc="The coupling to sweep")
    range_text = param.String(default=DEFAULT_RANGES["h"], doc="START:STOP:N (both ends) or V1,V2,…")

    def __init__(self, settings: LabSettings, busy: Callable[[], bool] = lambda: False,
                 run_queue: Callable[[], Any] = lambda: None,
                 problem: Callable[[RunSettings], str | None] = lambda settings: None, **params: Any):
        super().__init__(**params)
        self.settings, self._busy, self._run_queue = settings, busy, run_queue
        self._problem = problem  # the server's limits, as the Lab's Run checks them (app/limits.py)
        self.job: SweepJob | None = None
        self._pending_reset = False  # a new sweep: empty the plots on the next tick (under the document lock)
        self.points = ColumnDataSource({c: [] for c in POINT_COLUMNS})
        self.curve: dict[float, dict[str, float]] = {}
        self.curve_source = ColumnDataSource({c: [] for c in CURVE_COLUMNS})
        self.live = ColumnDataSource(dict(value=[], energy=[]))
        self.order_note = caption_pane("")
        self._build_controls()
        settings.param.watch(lambda *_: self._follow_hamiltonian(), "hamiltonian")
        self._follow_hamiltonian()
        self.tfim = settings.hamiltonian == "tfim"
        self.n_sites = 1

    @functools.cached_property
    def figures(self) -> list[Any]:
        """The tab's four figures on the kept sources, built when first asked for (the tab first shown): a
        new session builds only the shown tab's (benchmarks/README.md, "A class on one server")."""
        opts = dict(height=270)
        self.energy_fig = make_figure("E/N ± error per point against the exact curve", "coupling", "E / N",
                                      tools="pan,wheel_zoom,box_zoom,reset,save", **opts)
        f = self.energy_fig
        f.line("value", "energy", source=self.curve_source, color=VERMILION, line_dash="dashed", line_width=2,
               legend_label="exact (ED)")
        f.add_layout(Whisker(base="value", lower="lower", upper="upper", source=self.points, line_color=BLUE))
        f.scatter("value", "exact_energy", source=self.points, color=VERMILION, size=10, marker="x")  # no curve: refs
        vmc = f.scatter("value", "energy", source=self.points, color=BLUE, size=9, legend_label="VMC")
        f.add_tools(HoverTool(renderers=[vmc], tooltips=HOVER))
        f.scatter("value", "energy", source=self.live, color=ORANGE, size=11, marker="circle_x",
                  legend_label="running point")
        self.rel_fig = make_figure("Relative error per point", "coupling", "relative error", y_axis_type="log",
                                   x_range=f.x_range, **opts)
        self.rel_fig.scatter("value", "rel", source=self.points, color=ORANGE, size=9)
        self.sign_fig = make_figure("Sign: agreement with Marshall's rule, fidelity", "coupling", "fraction",
                                    y_range=Range1d(-0.02, 1.05), x_range=f.x_range, **opts)
        g = self.sign_fig
        g.line("value", "marshall", source=self.curve_source, color=GREEN, line_dash="dashed", line_width=2,
               legend_label="Marshall, exact state")
        g.scatter("value", "marshall", source=self.points, color=GREEN, size=9, legend_label="Marshall, samples")
        g.scatter("value", "fidelity", source=self.points, color=PURPLE, size=9, marker="square",
                  legend_label="fidelity |⟨ψ₀|ψ⟩|²")
        self.order_fig = make_figure("Order parameter", "coupling", "order parameter", x_range=f.x_range, **opts)
        o = self.order_fig
        o.line("value", "order", source=self.curve_source, color=VERMILION, line_dash="dashed", line_width=2,
               legend_label="exact")
        o.add_layout(Whisker(base="value", lower="order_lower", upper="order_upper", source=self.points,
                             line_color=BLUE))
        self.order_points = o.scatter("value", "order", source=self.points, color=BLUE, size=9, legend_label="VMC")
        self.sigma_x_curve = o.line("value", "sigma_x", source=self.curve_source, color=GREEN, line_dash="dotted",
                                    line_width=2, legend_label="⟨σˣ⟩ exact")
        self.sigma_x_points = o.scatter("value", "sigma_x", source=self.points, color=GREEN, size=9,
                                        marker="triangle", legend_label="⟨σˣ⟩ VMC")
        for fig, where in ((f, "top_right"), (g, "bottom_right"), (o, "center_right")):  # off the curves' way
            fig.legend.location = where
            fig.legend.background_fill_alpha = 0.6
            fig.legend.label_text_font_size = SMALL_TEXT
        if self.job is not None:  # a sweep started before the tab was first shown
            self._label_figures(f, self.rel_fig, g, o)
        return [f, self.rel_fig, g, o]

    def _build_controls(self) -> None:
        self.coupling_widget = pn.ui.Select.from_param(self.param.coupling, label="Coupling to sweep", width=170)
        self.values_widget = pn.ui.TextInput.from_param(self.param.range_text, label="Values (START:STOP:N or V1,V2,…)",
                                                        width=280)
        self.sweep_button = pn.ui.Button(label="Sweep", color="success", variant="contained", width=110)
        self.sweep_button.on_click(lambda *_: self.start())
        self.stop_button = pn.ui.Button(label="Stop the sweep", color="error", variant="contained", width=150,
                                        disabled=True)
        self.stop_button.on_click(lambda *_: self.stop())
        self.critical_button = pn.ui.Button(label="TFIM across the critical point (12 sites, h/J from 0.5 to 1.5)",
                                            color="primary", variant="outlined")
        self.critical_button.on_click(lambda *_: self.start_critical())
        self.status = pn.pane.HTML("", css_classes=["nqs-sweep-status"], sizing_mode="stretch_width",
                                   styles={"font-size": "0.95rem"}, margin=(4, 10))
        self._say("Pick a coupling and its values, then Sweep: every point is a VMC run with the sidebar's settings.")

    @functools.cached_property
    def panel(self) -> pn.Column:
        energy, rel, sign, order = self.figures
        return pn.Column(
            pn.Row(self.coupling_widget, self.values_widget, self.sweep_button, self.stop_button),
            self.critical_button, self.status,
            pn.GridBox(with_heading(energy), with_heading(rel), with_heading(sign), with_heading(order, self.order_note),
                       ncols=2, sizing_mode="stretch_width"),
            sizing_mode="stretch_width", name=self.title)

    def __panel__(self) -> Any:
        return self.panel

    def _follow_hamiltonian(self) -> None:
        allowed = list(COUPLINGS.get(self.settings.hamiltonian, ()))
        self.param.coupling.objects = allowed
        if self.coupling not in allowed:
            self.coupling = "J2" if "J2" in allowed else "h" if "h" in allowed else allowed[0]
            self.range_text = DEFAULT_RANGES.get(self.coupling, "0.5:1.5:5")

    @property
    def alive(self) -> bool:
        return self.job is not None and self.job.alive

    def _say(self, text: str, error: bool = False) -> None:
        import html

        style = " style='color:#D55E00'" if error else ""
        self.status.object = f"<div role='status'{style}>{html.escape(text)}</div>"
        self.message = text

    # ----- start and stop ----------------------------------------------------------------------
    def start(self) -> bool:
        """Validate and start the sweep (False, with the reason shown, when refused)."""
        if self.alive:
            return False
        if self._busy():
            self._say("Not started: a run is active in this session (stop it first).", error=True)
            return False
        try:
            sweep = make_sweep(self.settings.to_run_settings(), self.coupling, self.range_text)
        except SettingsError as err:
            self._say(f"Not started: {err}", error=True)
            return False
        too_big = self._problem(sweep.settings)
        if too_big:
            self._say(f"Not started: {too_big}.", error=True)
            return False
        self.tfim = sweep.settings.hamiltonian == "tfim"
        self.n_sites = sweep.settings.n_sites
        self._pending_reset = True
        self.job = SweepJob(sweep, self._run_queue(), name=f"{id(self) % 100000}").start()
        self._say(f"Starting: {sweep.coupling} over {len(sweep.values)} values…")
        self.sweep_button.disabled, self.stop_button.disabled = True, False
        return True

    def start_critical(self) -> bool:
        """"TFIM across the critical point": the TFIM talk preset on 12 sites (ED draws the whole exact curve),
        100 steps per point, h/J swept through 1."""
        self.settings.preset = CRITICAL["preset"]
        self.settings.param.update(L=CRITICAL["L"], steps=CRITICAL["steps"])
        self.coupling, self.range_text = CRITICAL["coupling"], CRITICAL["values"]
        return self.start()

    def stop(self) -> None:
        """Stop the sweep after the current fused call (Stop, or the session ended)."""
        if self.alive:
            self.job.stop()
            self._say("Stopping after the current step…")

    # ----- drawing (under the document lock) ----------------------------------------------------
    def _reset_plots(self) -> None:
        for src in (self.points, self.curve_source, self.live):
            src.data = empty_like(src)
        self.curve = {}
        if "figures" in self.__dict__:  # built: else they take these labels when built
            self._label_figures(*self.figures)

    def _label_figures(self, *figures: Any) -> None:
        """Axis labels, the TFIM-only ⟨σˣ⟩ and the order parameter's note for the sweep shown."""
        name = self.job.sweep.coupling if self.job else self.coupling
        for fig in figures:
            fig.xaxis.axis_label = name
        self.order_fig.yaxis.axis_label = "⟨|Σσᶻ|⟩/N, ⟨σˣ⟩" if self.tfim else "S(q) peak"
        for r in (self.sigma_x_curve, self.sigma_x_points):
            r.visible = self.tfim
        set_text(self.order_note, "TFIM magnetisation ⟨|Σσᶻ|⟩/N (blue) and ⟨σˣ⟩ (green)" if self.tfim else
                 "peak of the structure factor S(q) of the samples")

    def tick(self) -> None:
        """Draw what the sweep reported since the last tick (the lab's periodic callback)."""
        job = self.job
        if job is None:
            return
        if self._pending_reset:
            self._pending_reset = False
            self._reset_plots()
        for event in job.drain():
            self._handle(event)
        if not job.alive and self.sweep_button.disabled and not job.events.qsize():
            self.sweep_button.disabled, self.stop_button.disabled = False, True

    def _handle(self, event: SweepEvent | CurvePoint) -> None:
        if isinstance(event, CurvePoint):
            self._add_curve(event)
        elif event.kind == "steps" and event.records:
            r = event.records[-1]
            self.live.data = dict(value=[event.value], energy=[finite(r.energy) / self.n_sites])
        elif event.kind == "point" and event.point is not None:
            append(self.points, point_row(event.point, self.tfim))
            self.live.data = dict(value=[], energy=[])
        elif event.kind in ("start", "queued"):
            n = len(self.job.sweep.values) if self.job else 0
            self._say(f"point {event.index + 1} of {n}: {event.message}" if event.kind == "start" else event.message)
        elif event.kind in ("done", "stopped", "error"):
            self._say(f"Sweep {event.message}" if event.kind != "error" else f"The sweep failed: {event.message}",
                      error=event.kind == "error")

    def _add_curve(self, point: CurvePoint) -> None:
        if point.observables is None:
            set_text(self.order_note, point.message)
            return
        self.curve[point.value] = curve_row(point, self.tfim)
        rows = [self.curve[v] for v in sorted(self.curve)]
        self.curve_source.data = {c: [r[c] for r in rows] for c in CURVE_COLUMNS}

    @property
    def rows(self) -> list[dict[str, float]]:
        """The finished points as drawn (one dict per point)."""
        data = self.points.data
        return [{c: data[c][i] for c in POINT_COLUMNS} for i in range(len(data["value"]))]


__all__ = ["SweepView", "point_row", "DEFAULT_RANGES", "CRITICAL"]
