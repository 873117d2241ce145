"""Exports for slides, in the sidebar: the Metropolis movie (GIF, MP4), each figure (PNG at 1920×1080,
SVG) and the one-page HTML report of the session's run, paused or finished.

Each button is a ``FileDownload`` whose callback builds its file on click through the engine's public
export API (``nqs_core.exports``: ``RunRecord``, ``figures``, ``report``, ``movie.chain_trajectory``
from this session's checkpoint).  The callback is a coroutine that awaits the build in a thread
(``asyncio.to_thread``), so the server's event loop keeps serving every session while a movie is
encoded (panel.md: nothing slow on the event loop); one build at a time per server
(matplotlib's style context is process-wide).  Every download carries its own stamp
(:mod:`app.file_stamp`), so pressing a button again downloads the file again.  What cannot be exported yet disables its button and
the note under them says why; a click that still finds a bad state gets that message, not a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import io
import logging
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import panel as pn

from app.chain_movie import MOVIE_STEPS
from app.file_stamp import stamp
from app.snapshot import RunSnapshot
from nqs_core.exports import RunRecord

log = logging.getLogger("nqs_lab.exports")

EXPORTS = {  # file name: button label
    "metropolis.gif": "Movie (GIF)", "metropolis.mp4": "Movie (MP4)",
    "energy.png": "Energy (PNG)", "energy.svg": "Energy (SVG)",
    "relative_error.png": "Rel. error (PNG)", "relative_error.svg": "Rel. error (SVG)",
    "report.html": "Run report (HTML)",
}
MOVIE_SIZE, MOVIE_MS = (1920, 1080), 150  # pixels, ms per frame (MOVIE_STEPS: the lab's movie's sub-steps)
MOVIE_NOTE = f"Movie: {MOVIE_STEPS} Metropolis steps of chain 0 from the run's last checkpoint, 1920×1080."
_BUILD_LOCK = threading.Lock()


class ExportUnavailable(ValueError):
    """This export cannot be made from the run as it is (the message says why)."""


def unavailable(snap: RunSnapshot, name: str) -> str:
    """Why export ``name`` cannot be made from ``snap`` now ('' when it can)."""
    if snap.settings is None or not snap.history:
        return "Nothing to export yet: run (or load) a run first."
    if not snap.settled:
        return "Pause the run (or let it finish) to export it."
    if name.startswith("metropolis"):
        if snap.settings.sampler != "metropolis":
            return "The exact sampler draws independent configurations: there is no Markov chain to film."
        if snap.checkpoint_mtime is None:
            return "The movie needs this session's checkpoint of the run (a loaded run has none: run it here)."
    if name.startswith("relative_error") and _reference_energy(snap) is None:
        return "The relative error needs a reference energy (none known yet)."
    return ""


def _reference_energy(snap: RunSnapshot) -> float | None:
    return RunRecord("", "json", None, [], snap.reference, snap.summary).reference_energy


def _inputs(snap: RunSnapshot) -> tuple:
    """What :func:`unavailable` decides on: the settings (by identity), whether there are steps,
    whether the run is settled, whether the checkpoint exists, the reference energy."""
    return snap.settings, bool(snap.history), snap.settled, snap.checkpoint_mtime is not None, _reference_energy(snap)


def _record(snap: RunSnapshot) -> RunRecord:
    return RunRecord("NQS Lab session", "json", snap.settings, list(snap.history), snap.reference, snap.summary)


def build(snap: RunSnapshot, name: str, folder: Path) -> Path:
    """Write export ``name`` of the run into ``folder`` (ExportUnavailable says why it cannot)."""
    from nqs_core.checkpoint import load_checkpoint
    from nqs_core.exports import figures, movie, report

    why = unavailable(snap, name)
    if why:
        raise ExportUnavailable(why)
    stem, fmt = name.split(".")
    record = _record(snap)
    with _BUILD_LOCK:
        if stem == "metropolis":
            traj = movie.chain_trajectory(snap.settings, load_checkpoint(snap.checkpoint), MOVIE_STEPS)
            write = movie.write_gif if fmt == "gif" else movie.write_mp4
            return write(traj, folder / name, MOVIE_SIZE, MOVIE_MS)
        if stem == "report":
            return report.write_report(record, folder / name)
        fig = figures.energy_figure(record) if stem == "energy" else figures.relative_error_figure(record)
        return figures.save_figure(fig, folder, stem, (fmt,))[0]


def export_bytes(snap: RunSnapshot, name: str) -> bytes:
    """The bytes of export ``name`` (built in a private temporary folder, removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="nqs-export-") as tmp:
        return build(snap, name, Path(tmp)).read_bytes()


class ExportPanel(pn.viewable.Viewer):
    """The sidebar block: one download button per export and a note (see the module docstring)."""

    def __init__(self, snapshot: Callable[[], RunSnapshot], **params) -> None:
        super().__init__(**params)
        self._snapshot = snapshot
        self.buttons = {name: pn.ui.FileDownload(callback=self._fetcher(name), filename=name, label=label,
                                                 disabled=True, sizing_mode="stretch_width", margin=(2, 3))
                        for name, label in EXPORTS.items()}
        self.note = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["nqs-export-note"],
                                 styles={"font-size": "0.85rem"}, margin=(2, 8))
        self._said = self._why = ""
        self._inputs: tuple | None = None  # those of the last refresh (nothing to redo while they hold)
        self._downloads = 0
        names = list(self.buttons)
        rows = [pn.Row(*[self.buttons[n] for n in names[i:i + 2]], sizing_mode="stretch_width")
                for i in range(0, len(names), 2)]
        self._layout = pn.Column(*rows, self.note, sizing_mode="stretch_width")  # under the lab's sidebar heading

    def __panel__(self) -> pn.Column:
        return self._layout

    def refresh(self, snap: RunSnapshot) -> None:
        """Enable what can be exported from ``snap``; the note says why the rest cannot (periodic callback;
        only when what decides it changed)."""
        inputs = _inputs(snap)
        if self._inputs is not None and inputs[0] is self._inputs[0] and inputs[1:] == self._inputs[1:]:
            return
        self._inputs = inputs
        reasons = {name: unavailable(snap, name) for name in self.buttons}
        for name, button in self.buttons.items():
            button.disabled = bool(reasons[name])
        why = next((r for r in reasons.values() if r), "")
        if why != self._why:  # the run changed: the last export's message is stale
            self._why, self._said = why, ""
        if not self._said:
            self._show(why or MOVIE_NOTE)

    def say(self, text: str, error: bool = False) -> None:
        """A message about the last export (kept until the next one)."""
        self._said = text
        self._show(text, error)

    def _show(self, text: str, error: bool = False) -> None:
        body = html.escape(text)
        obj = f"<span style='color:#D55E00'>{body}</span>" if error else body
        if self.note.object != obj:
            self.note.object = obj

    def _fetcher(self, name: str) -> Callable:
        async def fetch() -> io.BytesIO:
            current = self._snapshot()
            snap = dataclasses.replace(current, history=list(current.history))  # the build reads a copy
            why = unavailable(snap, name)
            if why:
                self.say(why, error=True)
                raise ExportUnavailable(why)
            self.say(f"Preparing {name}…")
            self._downloads += 1
            note = f"NQS Lab export {self._downloads}, {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
            try:
                data = await asyncio.to_thread(lambda: stamp(export_bytes(snap, name), name.split(".")[1], note))
            except Exception as err:
                log.warning("export of %s failed: %s: %s", name, type(err).__name__, err)
                self.say(f"Could not export {name}: {err}", error=True)
                raise
            self.say(f"{name} ({len(data) / 1e6:.2f} MB) sent to the browser.")
            return io.BytesIO(data)

        return fetch


__all__ = ["EXPORTS", "ExportPanel", "ExportUnavailable", "build", "export_bytes", "unavailable"]
