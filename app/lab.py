"""One browser session of the lab: sidebar controls, buttons, status line, live views, export/load.

Threading (docs/notes/panel.md, DESIGN.md §6): the worker thread (``app.runner.Runner``) only
queues NumPy data; every Bokeh change happens in ``Lab.tick``, a periodic callback on the server's
event loop (10 Hz), which drains the queue and streams into bounded ColumnDataSources.  When the
session ends (``pn.state.on_session_destroyed``) the worker is asked to stop.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from typing import Any

import numpy as np
import panel as pn
import param

from app.export_panel import ExportPanel
from app.export import HISTORY_FIELDS, LoadedRun, history_csv, load_run_file, parse_run_json, run_json
from app.limits import Limits
from app.pictures import final_pictures
from app.reference_job import ReferenceJob, hamiltonian_key
from app.runner import FINAL_PHASES, Runner, live_workers, queued_workers, stopping_workers
from app.upload import SessionFolder, display_name, upload_input
from app.settings import CONTROLS, GROUPS, PRESETS, LabSettings
from app.snapshot import RunSnapshot
from app.views.compare import CompareView
from app.views.diagnostics import DiagnosticsView
from app.views.energy import EnergyView, method_name, reference_energy
from app.views.fields import NumberField
from app.views.link import apply_link, link_query
from app.views.ising import IsingView
from app.views.momentum import MomentumView
from app.views.sign import SignView
from app.views.spins import SpinsView
from app.views.sweep import SweepView
from nqs_core.hamiltonians import CONVENTIONS
from nqs_core.lattice import make_lattice
from nqs_core.settings import RunSettings, SettingsError

log = logging.getLogger("nqs_lab.session")

TICK_MS = 100
LARGE_ROOT_PX = 21  # vs the browser's 16 px
# The large-font option, in the browser: a larger root font size, then a new layout of every figure
# (BokehJS reads a figure's font size when it lays it out and paints; a root font change alone does
# not make it paint again).  Bokeh.index.find_one_by_id and invalidate_layout are BokehJS's public API.
LARGE_FONT_JS = f"""
document.documentElement.style.fontSize = cb_obj.value ? '{LARGE_ROOT_PX}px' : '';
for (const doc of Bokeh.documents)
  for (const model of doc.all_models)
    if (model.type && model.type.endsWith("Figure")) Bokeh.index.find_one_by_id(model.id)?.invalidate_layout();
"""
# notes under a choice (not errors), keyed by (setting, value)
HINTS = {("optimizer", "minsr"): "MinSR gives SR's update exactly when samples ≥ parameters (push-through "
                                 "identity); it pays off for networks with more parameters than samples"}
# the driver's extras for the app: 16 configurations per step (one per chain at most) for the
# lattice, S(q) and sign pictures; a checkpoint every 2 s feeds the live per-configuration picture
RUN_KWARGS = {"n_show": 16, "checkpoint_every": 2.0}


def heading(title: str) -> Any:
    """A sidebar heading in rem (it grows with the large-font option)."""
    return pn.pane.HTML(f"<div style='font-size:1.05rem;font-weight:600'>{title}</div>", margin=(10, 8, 0, 8))



def release_page(page: Any) -> int:
    """Unwatch what ``page`` watches on the process-wide ``pn.state``: panel-material-ui's Page follows
    ``pn.state.busy`` (a param reference), and that watcher kept every closed session's page, and with it
    the session's Lab, views and documents, alive (server RSS grew 40 % in a 15-minute class soak,
    benchmarks/README.md).  Returns how many watchers were removed."""
    removed = 0
    for watchers in pn.state.param.watchers.get("busy", {}).values():
        for watcher in list(watchers):
            if getattr(getattr(watcher.fn, "__self__", None), "self", None) is page:
                pn.state.param.unwatch(watcher)
                removed += 1
    return removed


def release_document_views(doc: Any) -> int:
    """Forget the views Panel registered for ``doc`` that its own session hooks leave behind: Panel 1.10's
    ``server_doc`` renders the session's notification area with ``get_root``, which registers it in
    ``pn.state._views`` with the document, but the area's session-destroyed hook forgets only views that
    ``server_doc`` rendered.  So every session's document, and through the callbacks of its models the
    session's Lab, stayed alive: served, +9 MB per session opened and discarded (benchmarks/README.md).
    Returns how many views were forgotten."""
    stale = [ref for ref, (_, _, d, _) in list(pn.state._views.items()) if d is doc]
    for ref in stale:
        view, root = pn.state._views.pop(ref)[:2]
        view._cleanup(root)  # what the hook does for the views it knows: drop the view's models of doc
    return len(stale)


def tab_slug(title: str) -> str:
    """``Classical Ising`` → ``classical-ising``: the CSS class of a view's tab slot."""
    return title.lower().replace(" ", "-")


def _number(x: float | None) -> str:
    """Five decimals for an energy, scientific notation for what a diverging run can reach."""
    return "nan" if x is None or not np.isfinite(x) else f"{x:.5f}" if abs(x) < 1e6 else f"{x:.4e}"

class Lab:
    """The page of one session (build with ``Lab().page``)."""

    def __init__(self) -> None:
        self.settings = LabSettings()
        self._defaults = {name: getattr(self.settings, name) for name in CONTROLS}  # what an empty link opens
        self._location: Any = None  # pn.state.location of the session (deep links)
        self.runner = Runner(name=f"s{id(self) % 100000}", after=final_pictures, run_kwargs=RUN_KWARGS,
                             live_pictures=True)
        self.limits: Limits | None = None  # the server's per-session limits on problem size (app/main.py)
        self.ref_job: ReferenceJob | None = None
        self.dmrg_options: dict[str, Any] = {}  # rel_tol, chi_max of nqs_core.references.dmrg_job (defaults)
        self._inbox: queue.Queue = queue.Queue()  # loaded runs, from the loading thread
        self.loading = False
        self.history: list[Any] = []
        self.reference: dict | None = None
        self.summary: dict | None = None
        self.run_settings: RunSettings | None = None
        self.folder = SessionFolder()  # removed when the session ends (app/upload.py)
        self.workdir = self.folder.path
        self._runs = 0
        self.checkpoint = self.workdir / "checkpoint-0.npz"  # one file per run (an abandoned one may still write)
        self._callback = None
        self._doc = None
        self._connected = False
        self._closed = False
        self._was_alive = False
        self._message_cause = ""
        self._pause_asked: float | None = None  # when Pause reached the server (its latency goes to the log)

        self.spins, self.energy, self.sign = SpinsView(), EnergyView(), SignView()
        self.momentum, self.diagnostics, self.ising = MomentumView(), DiagnosticsView(), IsingView()
        self.views = [self.spins, self.energy, self.sign, self.momentum, self.diagnostics, self.ising]
        self.compare = CompareView(self.settings, run_preset=self._run_preset,  # finished runs as overlays
                                   busy=lambda: self.runner.alive or self.sweep.alive)
        self.compare.attach(self.energy.overlays)
        self.sweep = SweepView(self.settings, busy=lambda: self.runner.alive, run_queue=lambda: self.runner.run_queue,
                               problem=lambda s: self.limits.problem(s) if self.limits is not None else None)
        self.views[4:4] = [self.compare, self.sweep]  # after Momentum

        self._build_controls()
        self._build_buttons()
        self._build_export()
        self.slides = ExportPanel(self.snapshot)  # movie, figures and report of the run (app/export_panel.py)
        self.large_font = pn.ui.Switch(label="Large fonts (projector)", value=False)
        # Material UI sizes its text in rem and the figures' text follows the root font size too
        # (assets/lab.css): a larger root font size enlarges everything, in the browser alone
        self.large_font.jscallback(value=LARGE_FONT_JS)
        self.server_line = pn.pane.HTML(self._server_text(), margin=(4, 8))
        self.tabs = self._build_tabs()
        self.spins.shown = self._shown_view() is self.spins  # until the first tick tells them
        self.momentum.correlations.shown = self._shown_view() is self.momentum
        self.stage = pn.pane.HTML("", sizing_mode="stretch_width", margin=(6, 10),
                                  styles={"font-size": "1.05rem", "font-weight": "500"})
        self.page = self._build_page()
        self._reset_views(self._settings_or_default())
        self._refresh_controls()
        self._refresh_buttons()
        self._set_status(self.runner.status_text(reason=False))
        self._refresh_stage()

    # ----- construction -----------------------------------------------------------------
    def _build_controls(self) -> None:
        self.widgets: dict[str, Any] = {}
        self.fields: dict[str, NumberField] = {}  # numeric settings: typed text checked against the param
        for name in CONTROLS:
            p = self.settings.param[name]
            if isinstance(p, param.Number):  # Integer too
                self.fields[name] = NumberField(self.settings, name, on_change=self._refresh_controls,
                                                sizing_mode="stretch_width")
                self.widgets[name] = self.fields[name].widget
            else:
                self.widgets[name] = pn.ui.Select.from_param(p, sizing_mode="stretch_width")
        # a long preset name wraps onto a second line instead of being cut (the two sign-problem presets
        # differ only at the end); the chosen preset's story is the caption under the menu (changing the
        # menu's own tooltip re-rendered it open while another menu was being used)
        self.preset = pn.ui.Select.from_param(self.settings.param.preset, label="Preset (talk or research)",
                                              sizing_mode="stretch_width",
                                              sx={"& .MuiSelect-select.MuiSelect-select": {
                                                  "whiteSpace": "normal", "height": "auto", "lineHeight": 1.3}})
        self.preset.description = "Talk presets: measured recipes; the chosen one's story is shown below"
        self.story = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["nqs-story"], margin=(0, 10),
                                  styles={"font-size": "0.8rem", "opacity": "0.85"})
        self.settings.param.watch(lambda *_: self._refresh_story(), "preset")
        self._refresh_story()
        self.settings.param.watch(lambda *_: self._refresh_controls(), [*CONTROLS, "preset"])
        self.settings.param.k.watchers  # noqa: B018 (objects changes are pushed by Panel itself)
        self.control_groups = [
            pn.Column(heading(title), *[self.widgets[n] for n in names],
                      sizing_mode="stretch_width")
            for title, names in GROUPS.items()]

    def _build_buttons(self) -> None:
        def button(label: str, color: str, handler) -> Any:
            b = pn.ui.Button(label=label, color=color, variant="contained", sizing_mode="stretch_width",
                             margin=(4, 3))
            b.on_click(lambda event: self._locked(handler))
            return b

        self.run_button = button("Run", "success", self._on_run)
        self.pause_button = button("Pause", "warning", self._on_pause)
        self.resume_button = button("Resume", "primary", self._on_resume)
        self.stop_button = button("Stop", "error", self._on_stop)
        self.reset_button = button("Reset", "secondary", self._on_reset)
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", margin=(4, 8))
        # text panes sized in rem follow the root font size of the large-font option (Markdown's px do not)
        self.message = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["nqs-message"],
                                    styles={"font-size": "0.95rem"}, margin=(4, 8))

    def _build_export(self) -> None:
        self.download_csv = pn.ui.FileDownload(callback=self._csv_bytes, filename="history.csv",
                                               label="History (CSV)", sizing_mode="stretch_width", disabled=True)
        self.download_json = pn.ui.FileDownload(callback=self._json_bytes, filename="run.json",
                                                label="Run (JSON)", sizing_mode="stretch_width", disabled=True)
        self.download_ckpt = pn.ui.FileDownload(callback=self._checkpoint_bytes, filename="checkpoint.npz",
                                                label="Checkpoint (.npz)", sizing_mode="stretch_width",
                                                disabled=True)
        self.upload = upload_input(on_refused=lambda text: self._say(text, error=True),  # size-limited
                                   sizing_mode="stretch_width", label="Load a run (.json or .npz)")
        self.upload.param.watch(self._on_upload, "value")

    def _build_page(self) -> Any:
        buttons = pn.Column(pn.Row(self.run_button, self.pause_button, self.resume_button),
                            pn.Row(self.stop_button, self.reset_button), sizing_mode="stretch_width")
        sidebar = [
            self.preset, self.story, self.compare.sidebar_button, buttons, self.status, self.message,
            *self.control_groups,
            heading("Export and load"),
            pn.Row(self.download_csv, self.download_json), self.download_ckpt, heading("Export for slides"), self.slides,
            pn.pane.HTML("Load an exported run (the JSON or the checkpoint) to view it again:",
                         styles={"font-size": "0.9rem"}, margin=(0, 8)), self.upload,
            heading("Display"), self.large_font, self.server_line,
        ]
        return pn.ui.Page(title="NQS Lab: neural quantum states, live", sidebar=sidebar, main=[self.stage, self.tabs],
                          sidebar_width=380, theme_toggle=True)

    def _build_tabs(self) -> Any:
        """The views' tabs, each view's models built the first time its tab is shown and kept after: a
        new session builds, sends and draws the shown tab only (benchmarks/README.md, "A class on one
        server").  A filled tab's slot carries the class ``nqs-filled`` (tests/browser wait on it)."""
        self._slots = [pn.Column(sizing_mode="stretch_width", css_classes=["nqs-tab", "nqs-tab-" + tab_slug(v.title)])
                       for v in self.views]
        tabs = pn.ui.Tabs(*[(v.title, slot) for v, slot in zip(self.views, self._slots)], sizing_mode="stretch_width")
        self._fill_tab(tabs.active)
        tabs.param.watch(lambda event: self._fill_tab(event.new), "active")
        return tabs

    def _fill_tab(self, index: Any) -> None:
        if isinstance(index, int) and 0 <= index < len(self._slots) and not self._slots[index].objects:
            slot = self._slots[index]
            slot.param.update(objects=[self.views[index].panel], css_classes=[*slot.css_classes, "nqs-filled"])

    def _locked(self, fn: Any) -> None:
        """Run ``fn`` where the views' Bokeh models may change: at once without a server, else in the
        document's next tick (Bokeh's add_next_tick_callback holds the document lock; Panel may deliver
        a widget event without it, and a direct Bokeh change there fails)."""
        doc = self._doc
        if doc is None or getattr(doc, "session_context", None) is None:
            fn()
        else:
            doc.add_next_tick_callback(fn)

    # ----- settings ---------------------------------------------------------------------
    def _refresh_story(self) -> None:
        """The caption under the preset menu tells the chosen preset's story."""
        import html

        story = self.settings.preset_story()
        self.story.object = html.escape(story or "Custom settings: pick a preset to start from a measured recipe.")

    def _settings_or_default(self) -> RunSettings:
        rs = self.settings.run_settings()
        return rs if not rs.problems() else RunSettings()

    def refused(self) -> dict[str, str]:
        """Messages of the visible fields whose typed text was refused (the setting kept its value)."""
        visible = set(self.settings.visible_parameters())
        return {n: f.error for n, f in self.fields.items() if f.error and n in visible}

    def _refresh_controls(self) -> None:
        """Visibility and messages of every control; a settings message goes once its cause is gone."""
        visible = set(self.settings.visible_parameters())
        problems = self.settings.problems()
        for name, widget in self.widgets.items():
            widget.visible = name in visible
            msg = problems.get(name)
            if name in self.fields:
                self.fields[name].show(msg or "")
            else:
                widget.error_state = msg is not None
                widget.helper_text = msg or HINTS.get((name, getattr(self.settings, name)), "")
        if not self.runner.alive and self.runner.phase == "idle" and not self.history and not self.loading:
            # nothing shown yet: the line says what Run will do (a loaded run keeps its own line)
            self.runner.total = self.settings.steps
            self._set_status(self.runner.status_text(reason=False))
            if not problems and not self.refused():
                self._show_idle(self.settings.run_settings())
        hidden_problem = [m for n, m in problems.items() if n not in visible]
        if hidden_problem:
            self._say(hidden_problem[0], error=True, cause="settings")
        elif self._message_cause == "settings" and not problems and not self.refused():
            self._say("")

    # ----- buttons ----------------------------------------------------------------------
    def _on_run(self, *_: Any) -> None:
        log.info("Run pressed in %s", self.runner.name)
        if self.runner.alive:
            return
        if self.sweep.alive:
            self._say("Not started: a sweep is running (Stop it in the Sweep tab first).", error=True)
            return
        refused = self.refused()
        try:
            if refused:
                raise SettingsError(*next(iter(refused.items())))
            settings = self.settings.to_run_settings()
        except SettingsError as err:
            self._say(f"Not started: {err} (fix the setting marked in red).", error=True, cause="settings")
            self._refresh_controls()
            return
        too_big = self.limits.problem(settings) if self.limits is not None else None
        if too_big:
            self._say(f"Not started: {too_big}.", error=True, cause="settings")
            return
        self._forget_loading()
        self._reset_views(settings)
        self.run_settings = settings
        self._start_reference(settings)
        self._runs += 1
        self.checkpoint = self.workdir / f"checkpoint-{self._runs}.npz"
        try:
            self.runner.start(settings, checkpoint=self.checkpoint)
        except Exception as err:  # keep Run usable whatever happens
            log.exception("could not start a run")
            self._say(f"Could not start: {type(err).__name__}: {err}", error=True)
        self._say("")
        self._refresh_buttons()
        self._set_status(self.runner.status_text(reason=False))

    def _run_preset(self, name: str) -> None:
        """Run the preset ``name`` (the Compare tab's comparison runs its presets one after the other)."""
        def run() -> None:
            self.settings.preset = name
            self._on_run()

        self._locked(run)

    def _on_pause(self, *_: Any) -> None:
        self._pause_asked = time.monotonic()
        self.runner.pause()
        self._refresh_buttons()
        self._set_status(self.runner.status_text(reason=False))

    def _on_resume(self, *_: Any) -> None:
        self.runner.resume()
        self._refresh_buttons()
        self._set_status(self.runner.status_text(reason=False))

    def _on_stop(self, *_: Any) -> None:
        if self.runner.phase in ("queued", "starting", "compiling") and not self.history:
            self._on_reset()  # nothing to keep yet: do not wait for the compilation to end
            self._say("Stopped before the first step.")
            return
        self.runner.stop()
        self._say("stopping after the current step…")

    def _on_reset(self, *_: Any) -> None:
        """Back to idle at once, even while compiling (the worker is abandoned, see Runner.abandon)."""
        self.runner.abandon()
        self._cancel_reference()
        self._forget_loading()
        self._runs += 1
        self.checkpoint = self.workdir / f"checkpoint-{self._runs}.npz"
        self.runner.total = self.settings.steps
        self.history, self.reference, self.summary = [], None, None  # Reset forgets the run (or the loaded one)
        self._idle_key = None
        self._show_idle(self._settings_or_default())
        self._say("")
        self._refresh_buttons()
        self._set_status(self.runner.status_text(reason=False))

    def _refresh_buttons(self) -> None:
        alive, phase = self.runner.alive, self.runner.phase
        finishing = alive and phase in FINAL_PHASES  # the run ended; its worker still draws the final pictures
        self.run_button.disabled = alive
        self.pause_button.disabled = not alive or finishing or phase in ("paused", "pausing")
        self.resume_button.disabled = not alive or phase != "paused"
        self.stop_button.disabled = not alive
        has_data = bool(self.history) and not finishing  # an export of an ended run carries its summary
        self.download_csv.disabled = not has_data
        self.download_json.disabled = not has_data
        self.download_ckpt.disabled = not self.checkpoint.exists()

    def _set_status(self, text: str) -> None:
        """The status line: phase, ``step N / M`` and iterations/s (role=status for screen readers)."""
        import html

        live = " data-connected='1'" if self._connected else ""  # set once the page's websocket is up
        # one line that never wraps (the sidebar does not jump); the reasons go to the message below
        self.status.object = (f"<div class='nqs-status' role='status'{live} style='font-family:monospace;"
                              f"font-size:0.92em;font-weight:600;white-space:nowrap;overflow:hidden;"
                              f"text-overflow:ellipsis' title='{html.escape(text)}'>{html.escape(text)}</div>")

    @staticmethod
    def _notify(text: str, error: bool = False) -> None:
        """A run's outcome as a notification a projector audience sees (none without a session)."""
        notifications = pn.state.notifications
        if notifications is not None:
            (notifications.error if error else notifications.success)(text, duration=8000)

    def _say(self, text: str, error: bool = False, cause: str = "") -> None:
        """The message under the status line; ``cause="settings"`` clears it once the settings are valid."""
        import html

        self._message_cause = cause if text else ""
        body = html.escape(text)
        self.message.object = f"<span style='color:#D55E00'>{body}</span>" if (error and text) else body

    # ----- the reference computed by the app (DMRG) --------------------------------------
    def _start_reference(self, settings: RunSettings, lookup: bool = False, dmrg: bool = True) -> None:
        """Start (or keep) the background reference job for ``settings``' Hamiltonian (``dmrg=False``:
        look up closed forms, ED and stored values only, as an idle page does)."""
        job = self.ref_job
        if job is not None and job.key == hamiltonian_key(settings) and (job.running or job.state == "done"):
            if job.state == "done" and job.reference is not None:
                self._set_reference(job.reference)
            return
        self._cancel_reference()
        self.ref_job = ReferenceJob(settings, lookup=lookup, dmrg=dmrg, **self.dmrg_options)

    def _set_reference(self, ref: dict) -> None:
        """A reference arrived: the energy line, and per-sector energies on the Brillouin zone (ED)."""
        self.reference = ref
        self.energy.set_reference(ref)
        self.compare.store.set_reference(reference_energy(ref))  # the kept run of a late reference (DMRG)
        self.momentum.show_sector_energies(ref)

    def _cancel_reference(self) -> None:
        if self.ref_job is not None:
            self.ref_job.cancel()
            self.ref_job = None

    def _poll_reference(self) -> None:
        job = self.ref_job
        if job is None:
            return
        text, ref = job.poll()
        if text:
            self.energy.set_progress(text)
        if ref is not None and (self.reference is None or self.reference.get("energy") is None):
            self._set_reference(ref)

    # ----- views ------------------------------------------------------------------------
    def _show_idle(self, settings: RunSettings) -> None:
        """An idle page shows what Run will do: lattice, sector, energy axis and the reference,
        looked up at once where it is known (closed form, ED, stored; never a new DMRG run)."""
        key = (hamiltonian_key(settings), settings.model, settings.k, settings.steps)
        if key == getattr(self, "_idle_key", None):
            return
        self._idle_key = key

        def show() -> None:
            if self.history or self.loading or self.runner.alive or self.runner.phase != "idle":
                return  # a run or a loaded run came first: its views stay
            self._reset_views(settings)
            self._start_reference(settings, lookup=True, dmrg=False)

        self._locked(show)

    def _stage_text(self) -> str:
        """The line above the views: what the page is doing when the plots cannot show it yet."""
        phase = self.runner.phase
        if self.sweep.alive:
            return f"Coupling sweep (Sweep tab): {self.sweep.message}"
        if phase == "queued":  # the server's run queue (app/run_queue.py): its place in line, Stop leaves it
            return f"Waiting for a free place on this server: {self.runner.message} (Stop cancels)."
        if phase in ("starting", "compiling"):
            return (f"Compiling the VMC step for these settings… {self.runner.seconds():.0f} s "
                    "(once per lattice, model and precision; the first energy point follows)")
        if phase == "idle" and not self.history and not self.loading:
            return "Idle: pick a preset or change the settings in the sidebar, then press Run (or load an exported run)."
        if self.loading:
            return "Loading the run…"
        return ""

    def _refresh_stage(self) -> None:
        import html

        text = self._stage_text()
        obj = f"<div class='nqs-stage' role='status'>{html.escape(text)}</div>" if text else ""
        if self.stage.object != obj:
            self.stage.object = obj
            self.stage.visible = bool(text)


    def _reset_views(self, settings: RunSettings) -> None:
        self.history, self.reference, self.summary = [], None, None
        if pn.state.notifications is not None:  # the last run's outcome must not sit over the fresh views
            pn.state.notifications.clear()
        lat = make_lattice(settings.lattice, settings.L, settings.bc)
        self.spins.reset(settings.lattice, settings.L)
        self.energy.reset(settings.steps, lat.n_sites, settings.hamiltonian, CONVENTIONS.get(settings.hamiltonian, ""))
        sign_note = "" if settings.hamiltonian != "tfim" else \
            "TFIM: the ground state is positive, there is no sign structure to learn"
        self.sign.reset(sign_note)
        self.momentum.reset(lat, settings.k, settings.hamiltonian == "tfim")
        self.compare.store.release_shown()  # the run shown so far becomes an overlay
        self.diagnostics.reset()

    def tick(self) -> None:
        """Periodic callback on the event loop: drain the worker's queue into the views."""
        if self._closed:
            return
        if self._connection_lost():
            # the tab is gone: stop now instead of waiting for Bokeh to discard the session (its
            # discard is deferred while this callback holds the document lock, ~20 s under load)
            log.info("connection of %s closed", self.runner.name)
            self.shutdown()
            return
        try:
            batch = self.runner.drain()
            self._show_batch(batch)
            if batch.result is not None:
                self._show_result(batch.result)
            if batch.phase in ("error", "diverged"):
                what = "The run diverged" if batch.phase == "diverged" else "The run failed"
                self._say(f"{what}: {batch.message} (the plots keep its last finite steps)", error=True)
                self._notify(f"{what}: {batch.message}", error=True)
            if batch.phase == "paused" and self._pause_asked is not None:  # benchmarks/class_load.py reads it
                log.info("session %s paused %.3f s after Pause reached the server", self.runner.name,
                         time.monotonic() - self._pause_asked)
                self._pause_asked = None
            alive = self.runner.alive
            if not batch.empty or alive != self._was_alive:
                self._was_alive = alive
                self._set_status(self.runner.status_text(reason=False))
                self._refresh_buttons()
            elif self.runner.phase in ("running",):
                self._set_status(self.runner.status_text(reason=False))
            self._refresh_views()
        except Exception:  # a broken update must not kill the periodic callback
            log.exception("tick failed")

    def _show_batch(self, batch: Any) -> None:
        """The worker's records, frames, reference and pictures of one drain, in the views."""
        if batch.records:
            self.history.extend(batch.records)
            self.energy.update(batch.records)
            self.sign.update(batch.records)
            self.diagnostics.update(batch.records)
        if batch.records or batch.frames:
            self.momentum.update(batch.records, batch.frames)
        if batch.frames:
            self.spins.update(batch.frames)
        if batch.reference is not None:
            self._set_reference(batch.reference)
        if batch.phase == "running" and self.runner.compile_seconds is not None:
            self.diagnostics.set_compile_seconds(self.runner.compile_seconds)
        configs = batch.extra.get("configurations")
        if configs is not None:
            self.sign.show_configurations(configs["log_psi"], configs["target"], configs["target_name"],
                                          configs.get("label", ""))
        final = batch.extra.get("final_translation")
        if final is not None:
            self.momentum.show_final(final["value"], final["n_samples"])
        correlation_map = batch.extra.get("correlation_map")
        if correlation_map is not None:
            self.momentum.correlations.show_final(correlation_map)

    def _show_result(self, result: Any) -> None:
        """A finished run: its summary under the status (and as a notification) and its place among the
        overlays (its final correlation map comes with the final pictures, ``_show_batch``)."""
        self.sign.note_if_empty()
        self.summary = getattr(result, "summary", None)
        self._say(self._summary_text())
        if reference_energy(self.reference) is None and not (self.ref_job is not None and self.ref_job.running):
            self.energy.show_no_reference((self.summary or {}).get("reference_note") or "none was found")
        if self.runner.phase in ("done", "stopped"):
            failed = (self.summary or {}).get("verdict") == "failed"
            self._notify(f"Run {self.runner.phase}: {self._summary_text()}", error=failed)
        self.compare.run_finished(self.run_settings, self.history, reference_energy(self.reference),
                                  self.runner.phase)  # kept as an overlay; a comparison goes on

    def _refresh_views(self) -> None:
        """What every tick refreshes whether or not the worker sent anything."""
        self._poll_reference()
        self._apply_loaded()
        self._refresh_stage()
        self.server_line.object = self._server_text()
        self.ising.tick()
        snap = self.snapshot()
        shown = self._shown_view()
        self.spins.poll(snap, shown=shown is self.spins)  # the Metropolis movie or the batch, when seen
        self.momentum.correlations.set_shown(shown is self.momentum)  # the live correlation map, when seen
        self.slides.refresh(snap)
        for view in (self.compare, self.sweep):
            view.tick()

    def _shown_view(self) -> Any:
        """The view of the active tab (the views draw some pictures only while seen)."""
        active = self.tabs.active
        return self.views[active] if isinstance(active, int) and 0 <= active < len(self.views) else None

    @staticmethod
    def _server_text() -> str:
        stopping, queued = stopping_workers(), queued_workers()
        extra = (f", {queued} waiting" if queued else "") + (f", {stopping} stopping" if stopping else "")
        return (f"<span class='nqs-server' style='font-size:0.85rem;opacity:0.8'>"
                f"this server: {live_workers()} run(s) active{extra}</span>")

    def _summary_text(self) -> str:
        s = self.summary or {}
        e, err = s.get("final_energy"), s.get("final_error")
        if e is None or not np.isfinite(e):
            return self.runner.message
        text = f"E = {_number(e)} ± {_number(err)} ({s.get('final_source', '')})"
        rel, method = s.get("relative_error"), s.get("reference_method")
        ref_e = (self.reference or {}).get("energy")
        if rel is None and ref_e:  # the reference came after the summary (DMRG, or a loaded checkpoint)
            rel, method = abs(e - ref_e) / abs(ref_e), self.reference.get("method")
        if rel is not None:
            text += f"; relative error {rel:.2e} vs {method_name(method)}"
        exact_rel = s.get("exact_relative_error")
        if exact_rel is not None:  # ⟨ψ|H|ψ⟩/⟨ψ|ψ⟩ over the ED basis: the state's energy without sampling noise
            text += f"; exact ⟨H⟩ of the final state {_number(s['exact_energy'])} (relative error {exact_rel:.2e})"
        if s.get("verdict") in ("warning", "failed") and s.get("warnings"):
            text += f" · {s['verdict']}: " + "; ".join(s["warnings"])
        return text

    # ----- export / load ----------------------------------------------------------------
    def snapshot(self) -> RunSnapshot:
        """The run as the slide exports and the Metropolis movie see it; a loaded run (phase idle) has
        no checkpoint of this session."""
        ckpt = self.checkpoint if self.runner.phase != "idle" else None
        return RunSnapshot(self.run_settings, self.history, self.reference, self.summary, ckpt,
                           self.runner.phase, self.runner.alive)

    def _csv_bytes(self) -> io.BytesIO:
        return io.BytesIO(history_csv(self.history).encode())

    def _json_bytes(self) -> io.BytesIO:
        settings = self.run_settings or self._settings_or_default()
        return io.BytesIO(run_json(settings, self.history, self.reference, self.summary).encode())

    def _checkpoint_bytes(self) -> io.BytesIO:
        return io.BytesIO(self.checkpoint.read_bytes() if self.checkpoint.exists() else b"")

    def _on_upload(self, event: Any) -> None:
        if event.new:
            self.load_bytes(display_name(self.upload.filename), event.new)  # the name is only shown

    def load_bytes(self, filename: str, data: bytes, background: bool = True) -> None:
        """Load an exported run (JSON) or a checkpoint (.npz) and redraw every view.

        Reading a checkpoint restores the VMC state (seconds for a big model), so by default it
        happens in a thread and the periodic callback draws the result; ``background=False``
        loads and draws at once (tests, no server).
        """
        if self.runner.alive:
            self.runner.abandon()  # its late records, phase and pictures must not reach the loaded views
            self._was_alive = False  # nor its end the status line ("loaded", not "idle")

        inbox = self._inbox  # Run or Reset before the file is read replace it: this load is then dropped

        def work() -> None:
            try:
                inbox.put((filename, load_run_file(filename, data, folder=self.folder), None))
            except Exception as err:
                inbox.put((filename, None, err))

        self.loading = True
        self._say(f"Loading {filename or 'the file'}…")
        if background:
            threading.Thread(target=work, daemon=True, name="nqs-load").start()
        else:
            work()
            self._apply_loaded()

    def _forget_loading(self) -> None:
        """A file still being read is not drawn any more (Run or Reset came after it)."""
        self._inbox = queue.Queue()
        self.loading = False

    def _apply_loaded(self) -> None:
        """Draw a run the loading thread finished (called from the periodic callback)."""
        try:
            filename, loaded, err = self._inbox.get_nowait()
        except queue.Empty:
            return
        self.loading = False
        if err is not None or loaded is None:
            reason = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
            self._say(f"Could not load {filename or 'that file'}: {reason}", error=True)
            self._notify(f"Could not load {filename or 'that file'}: {reason}", error=True)
            return
        self.show_loaded(loaded, filename)

    def show_loaded(self, loaded: LoadedRun, filename: str = "") -> None:
        """Put a loaded run into the controls and every view."""
        settings, history = loaded.settings, loaded.history
        self.settings.load_run_settings(settings)
        self._reset_views(settings)
        self.run_settings = settings
        self.history = list(history)
        self.energy.update(history)
        self.sign.update(history)
        self.diagnostics.update(history)
        frames = [loaded.samples] if loaded.samples is not None else []
        self.momentum.update(history, frames)
        if frames:
            self.spins.update(frames)
        configs = loaded.extra.get("configurations")
        if configs is not None:
            self.sign.show_configurations(configs["log_psi"], configs["target"], configs["target_name"],
                                          f"loaded checkpoint, after step {len(history) - 1}")
        else:
            self.sign.config_note.text = "a JSON export holds no wavefunction: load its checkpoint (.npz) for this picture"
        final = loaded.extra.get("final_translation")
        if final is not None:
            self.momentum.show_final(final["value"], final["n_samples"])
        if loaded.reference:
            self._set_reference(loaded.reference)
        else:  # a checkpoint stores no reference: look it up (closed form, ED, stored, or DMRG)
            self._start_reference(settings, lookup=True)
        self.compare.store.keep(settings, self.history, reference_energy(self.reference), "loaded")  # to compare
        self.summary = loaded.summary
        phase = loaded.phase or "loaded"
        self.runner.phase, self.runner.message = "idle", ""
        self.runner.step, self.runner.total = len(history), settings.steps
        what = "checkpoint" if loaded.kind == "checkpoint" else "run"
        self._say(f"Loaded a {what} of {len(history)} steps ({filename}, {phase}). " + self._summary_text())
        self._set_status(f"loaded · step {len(history)} / {settings.steps}")
        self._refresh_buttons()

    # ----- lifecycle --------------------------------------------------------------------
    def start_session(self) -> None:
        """Apply the page URL's settings, keep the URL in step, register the periodic drain and the
        end-of-session hook (call inside a session)."""
        self._doc = pn.state.curdoc
        log.info("session %s created", self.runner.name)
        self._location = pn.state.location
        if self._location is not None:
            self.apply_link(self._location.query_params)
            self.settings.param.watch(lambda *_: self._update_link(), [*CONTROLS, "preset"])
        pn.state.onload(self._start_ticking)
        pn.state.on_session_destroyed(self._on_session_destroyed)

    def apply_link(self, query: dict[str, Any]) -> None:
        """Open the settings of a deep link (``?preset=…`` or ``?L=6&steps=50``); refusals are said."""
        refused = apply_link(self.settings, query, CONTROLS, self.fields)
        if refused:
            self._say("This link's settings were refused: " + "; ".join(refused), error=True, cause="settings")

    def _update_link(self) -> None:
        """The URL follows the settings, so reloading (or copying the link) keeps them."""
        from urllib.parse import urlencode

        if self._location is None:
            return
        query = urlencode(link_query(self.settings, CONTROLS, self._defaults))
        search = f"?{query}" if query else ""
        if self._location.search != search:
            self._location.search = search

    def _start_ticking(self) -> None:
        """Start the 10 Hz drain once the page has loaded (never for sessions nobody connects to)."""
        log.info("session %s loaded", self.runner.name)
        if self._callback is None and not self._closed:
            # pn.io.PeriodicCallback is public; its ``background=True`` is not documented, and no public
            # API replaces it: pn.state.add_periodic_callback toggles Panel's process-wide "busy" state on
            # every tick (every other session's busy indicator then updated at 10 Hz, and a second tab
            # never finished loading), and Bokeh's own Document.add_periodic_callback leaves Panel's
            # event state so that a button click arrived unlocked and the views' Bokeh changes failed
            # ("_pending_writes should be non-None", tests/browser, pause/resume test)
            self._callback = pn.io.PeriodicCallback(callback=self.tick, period=TICK_MS, background=True)
            self._callback.start()
            self._connected = True
            self._set_status(self.runner.status_text(reason=False))

    def _connection_lost(self) -> bool:
        """True when the page that loaded this session has no open websocket any more."""
        ctx = getattr(self._doc, "session_context", None)
        server = getattr(ctx, "server_context", None)
        if server is None:
            return False
        # BokehServerContext.sessions and ServerSession.connection_count: Bokeh's public server API
        return any(s.id == ctx.id and s.connection_count == 0 for s in server.sessions)

    def _on_session_destroyed(self, session_context: Any) -> None:
        log.info("session destroyed: %s", self.runner.name)
        self.shutdown()
        release_page(self.page)  # Bokeh discarded the session: nothing is sent to its page any more
        release_document_views(self._doc)

    def shutdown(self) -> None:
        """Stop the worker and the periodic callback (the session is gone)."""
        self._closed = True
        self.runner.stop()
        self.sweep.stop()
        self._cancel_reference()
        self.folder.remove(after=self.runner.threads())  # once its workers can no longer write there
        if self._callback is not None:
            try:
                self._callback.stop()
            except Exception:  # Bokeh removed it already with the session
                log.debug("periodic callback of %s already gone", self.runner.name)
        log.info("session closed: worker stop requested (alive=%s)", self.runner.alive)


__all__ = ["Lab", "HISTORY_FIELDS", "history_csv", "run_json", "parse_run_json", "PRESETS", "FINAL_PHASES", "io",
           "np"]
