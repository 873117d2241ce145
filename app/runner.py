"""One background worker per browser session (DESIGN.md §6).

The worker thread waits for its place in the run queue, then has the session's executor
(:mod:`nqs_core.executors`: this thread, a local process or a Dask cluster) run
:func:`nqs_core.driver.run`; the events reach the driver's callback in that thread, which only puts
NumPy data on a ``queue.Queue``.  The page drains the queue from a periodic callback on
the server's event loop (about 10 Hz) with :meth:`Runner.drain`, which merges everything that
arrived since the last call into one :class:`Batch`.  Nothing here touches Panel or Bokeh, so the
worker is tested without a server.  Python threads cannot be killed: stopping asks the driver's
:class:`RunControl`, which is checked between jitted calls.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from app.run_queue import RunQueue, Ticket
from nqs_core.events import RunControl
from nqs_core.executors import Executor, Finished, RemoteRunError, ThreadExecutor
from nqs_core.settings import RunSettings

log = logging.getLogger("nqs_lab.runner")

PHASES = ("idle", "queued", "starting", "compiling", "running", "pausing", "paused", "resuming", "stopped", "diverged",
          "done", "error")
FINAL_PHASES = ("idle", "stopped", "diverged", "done", "error")

_live_lock = threading.Lock()
_live_workers: set[threading.Thread] = set()
_stopping_workers: set[threading.Thread] = set()  # abandoned: asked to stop, still inside a jitted call
_queued_workers: set[threading.Thread] = set()  # waiting for a place in the run queue (app/run_queue.py)


def live_workers() -> int:
    """Number of runs active in this server process (all sessions; abandoned and queued workers excluded)."""
    with _live_lock:
        return sum(1 for t in _live_workers if t.is_alive() and t not in _queued_workers)


def queued_workers() -> int:
    """Runs of this server process waiting for a place in the run queue."""
    with _live_lock:
        return sum(1 for t in _queued_workers if t.is_alive())


def stopping_workers() -> int:
    """Abandoned worker threads still finishing their current call (compilation, a step)."""
    with _live_lock:
        return sum(1 for t in _stopping_workers if t.is_alive())


@dataclass
class Batch:
    """Everything that arrived since the previous :meth:`Runner.drain`."""

    records: list[Any] = field(default_factory=list)  # StepRecord, in step order
    frames: list[np.ndarray] = field(default_factory=list)  # sample sets (n_show, N), oldest first
    reference: dict | None = None
    phase: str | None = None  # the newest phase, if it changed
    message: str = ""
    result: Any = None  # RunResult when the run finished
    extra: dict[str, Any] = field(default_factory=dict)  # other event payloads (newest wins)

    @property
    def empty(self) -> bool:
        return not (self.records or self.frames or self.reference or self.phase or self.result is not None
                    or self.extra)


def _queueing_callback(q: queue.Queue) -> Callable[[Any], None]:
    """The driver's callback: every event as NumPy data on ``q`` (runs in the worker thread)."""

    def callback(event: Any) -> None:
        kind = getattr(event, "kind", None)
        if kind == "steps":
            samples = getattr(event, "samples", None)
            if samples is not None:
                samples = np.asarray(samples).copy()  # NumPy in the worker, never on the event loop
            q.put(("steps", list(event.records), samples, time.monotonic()))
        elif kind == "phase":
            q.put(("phase", event.phase, getattr(event, "message", "") or "", time.monotonic()))
        elif kind == "reference":
            q.put(("reference", dict(event.reference), None, time.monotonic()))
        else:
            payload = {k: v for k, v in vars(event).items() if k != "kind"}
            q.put(("extra", kind, payload, time.monotonic()))

    return callback


class Runner:
    """Start, pause, resume and stop one VMC run in a background thread; drain its events."""

    def __init__(self, name: str = "session", max_frames: int = 512,
                 after: Callable[[Any], dict[str, Any]] | None = None, run_kwargs: dict[str, Any] | None = None,
                 live_pictures: bool = False, run_queue: RunQueue | None = None, executor: Executor | None = None):
        self.executor: Executor = executor or ThreadExecutor()  # where runs execute (app/main.py)
        self.run_queue = run_queue  # the server's queue (app/main.py); None: a run starts at once
        self._ticket: Ticket | None = None
        self._after = after  # run where the run ran, on the RunResult; returns extra payloads by name
        self._run_kwargs = dict(run_kwargs or {})  # e.g. n_show, checkpoint_every for the driver
        self._live_pictures = live_pictures  # per-configuration sign picture from the checkpoint while running
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._control: RunControl | None = None
        self._max_frames = max_frames
        self.phase = "idle"
        self.message = ""
        self.step = 0
        self.total = 0
        self.compile_seconds: float | None = None
        self._t_start = 0.0
        self._t_compile = None
        self._rate_window: deque[tuple[float, int]] = deque(maxlen=64)
        self._started: list[threading.Thread] = []  # every worker thread, abandoned ones too

    # ----- control ----------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, settings: RunSettings, checkpoint: str | Path | None = None) -> None:
        """Validate ``settings`` (raises SettingsError) and start the worker thread."""
        settings.validate()
        if self.alive:
            raise RuntimeError("a run is still active: stop it first")
        executor = self.executor
        self._queue = queue.Queue()
        self._control = RunControl()
        self.phase, self.message = "starting", ""
        self.step, self.total = 0, settings.steps
        self.compile_seconds = None
        self._t_start = time.monotonic()
        self._t_compile = None
        self._rate_window.clear()
        q, control = self._queue, self._control
        callback = _queueing_callback(q)
        ticket = self._ticket = self.run_queue.join(self.name) if self.run_queue is not None else None

        def target() -> None:
            try:
                if ticket is not None and not self._wait_turn(ticket, q):
                    return
                kwargs: dict[str, Any] = {"callback": callback, "control": control, **self._run_kwargs,
                                          **self._live_view(q)}
                if checkpoint is not None:
                    kwargs["checkpoint"] = checkpoint
                self._finish(executor.execute(settings, after=self._after, **kwargs), q)
            except Exception as exc:  # the page must stay usable: report, don't crash the server
                log.warning("run failed in %s: %s", self.name, traceback.format_exc())
                why = str(exc) if isinstance(exc, RemoteRunError) else f"{type(exc).__name__}: {exc}"  # the same text
                q.put(("phase", "error", why, time.monotonic()))
            finally:
                if ticket is not None:
                    ticket.release()  # the next run in line may start
                with _live_lock:
                    _live_workers.discard(threading.current_thread())
                    _stopping_workers.discard(threading.current_thread())
                log.info("worker of %s finished", self.name)

        thread = threading.Thread(target=target, name=f"nqs-worker-{self.name}", daemon=True)
        with _live_lock:
            _live_workers.add(thread)
        self._thread = thread
        self._started = [t for t in self._started if t.is_alive()] + [thread]
        thread.start()
        log.info("worker of %s started: %s", self.name, settings)

    def _live_view(self, q: queue.Queue) -> dict[str, Any]:
        """The executor's ``live`` and ``on_extra``: the per-configuration sign picture from the run's
        checkpoint, computed where the run runs (none without a checkpoint), its payloads onto ``q``."""
        if not self._live_pictures:
            return {}
        from app.pictures import LivePictures

        return {"live": LivePictures,
                "on_extra": lambda name, payload: q.put(("extra", name, payload, time.monotonic()))}

    def _wait_turn(self, ticket: Ticket, q: queue.Queue) -> bool:
        """In the worker, before anything is built: wait for a place in the server's run queue,
        reporting the position in line; False when the run was stopped while it waited."""
        me = threading.current_thread()

        def report(position: int) -> None:
            where = ticket.status() or f"place {position + 1} in line"  # and the wait it expects now
            q.put(("phase", "queued", f"{where}; this server computes {ticket.queue.slots} at once",
                   time.monotonic()))

        with _live_lock:
            _queued_workers.add(me)
        try:
            granted = ticket.wait_for_turn(report)
        finally:
            with _live_lock:
                _queued_workers.discard(me)
        if not granted:
            q.put(("phase", "stopped", "cancelled while waiting for a free place", time.monotonic()))
        return granted

    @staticmethod
    def _finish(finished: Finished, q: queue.Queue) -> None:
        """In the worker, after the run: the final pictures (after the last live one), then the result."""
        for name, payload in finished.extras.items():
            q.put(("extra", name, payload, time.monotonic()))
        q.put(("result", finished.result, None, time.monotonic()))

    def pause(self) -> None:
        if self.alive and self._control is not None:
            self._control.pause()
            self.phase = "pausing"  # "paused" comes from the driver once the step in flight is reported

    def resume(self) -> None:
        if self.alive and self._control is not None:
            self._control.resume()
            self.phase = "resuming"

    def stop(self) -> None:
        """Ask the worker to stop (returns at once; the thread ends at its next check); a run still
        waiting in the queue leaves it."""
        if self._control is not None:
            self._control.stop()
        if self._ticket is not None:
            self._ticket.cancel()

    def abandon(self) -> None:
        """Stop the worker and let go of it at once: the runner is idle now, whatever the thread does.

        A thread cannot be interrupted inside a jitted call (a compilation takes seconds): it is asked
        to stop, its late events go to a queue nobody reads, and it counts as "stopping", not active.
        """
        self.stop()
        thread = self._thread
        if thread is not None and thread.is_alive():
            with _live_lock:
                _live_workers.discard(thread)
                _stopping_workers.add(thread)
        self._thread, self._control, self._ticket = None, None, None
        self._queue = queue.Queue()
        self.phase, self.message, self.step = "idle", "", 0
        self.compile_seconds = None
        self._rate_window.clear()

    def threads(self) -> list[threading.Thread]:
        """The worker threads this runner started that still run (abandoned ones included): what may
        still write into the session's folder (a worker ends after its run and its live picture did)."""
        return [t for t in self._started if t.is_alive()]

    def seconds(self) -> float:
        """Seconds since the current run was started (0 when none was)."""
        return time.monotonic() - self._t_start if self._t_start else 0.0

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to end; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.alive

    # ----- events -----------------------------------------------------------------------
    def drain(self, max_items: int = 10_000) -> Batch:
        """Merge what the worker queued since the last call (call from the event loop)."""
        batch = Batch()
        for _ in range(max_items):
            try:
                kind, a, b, t = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "steps":
                batch.records.extend(a)
                if b is not None:
                    batch.frames.append(b)
                if a:
                    self.step = int(a[-1].step) + 1
                    self._rate_window.append((t, self.step))
                    if self.compile_seconds is None:
                        self.compile_seconds = t - (self._t_compile or self._t_start)
                if self.phase in ("starting", "compiling", "resuming"):
                    self.phase = "running"
                    batch.phase = "running"
            elif kind == "phase":
                if a == "compiling":
                    if self.phase == "queued":
                        self._t_start = t  # the run begins when its turn comes (Lab's "Compiling… N s")
                    self._t_compile = t
                elif a == "running" and self._t_compile is not None and self.compile_seconds is None:
                    self.compile_seconds = t - self._t_compile
                self.phase, self.message = a, b
                batch.phase, batch.message = a, b
            elif kind == "reference":
                batch.reference = a
            elif kind == "result":
                batch.result = a
                if self.phase not in FINAL_PHASES:
                    self.phase = "done"
                    batch.phase = "done"
            else:
                batch.extra[a] = b
        if len(batch.frames) > self._max_frames:
            batch.frames = batch.frames[-self._max_frames:]
        return batch

    def iterations_per_second(self) -> float:
        """Steps per wall-clock second over the recent window (0 before two updates)."""
        if len(self._rate_window) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self._rate_window[0], self._rate_window[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def status_text(self, reason: bool = True) -> str:
        """``phase · step N / M · x it/s`` as shown under the buttons (``reason``: the end's reason too)."""
        label = {"compiling": "compiling…", "starting": "starting…", "pausing": "pausing…",
                 "resuming": "resuming…"}.get(self.phase, self.phase)
        if self.phase == "queued" and self._ticket is not None:
            place = self._ticket.status()  # place 2 in line, about 40 s
            label = f"waiting: {place}" if place else label
        parts = [label, f"step {self.step} / {self.total}"]
        rate = self.iterations_per_second()
        if self.phase == "running" and rate > 0:
            parts.append(f"{rate:.0f} it/s" if rate >= 10 else f"{rate:.1f} it/s")  # short: the line never wraps
        text = " · ".join(parts)
        if reason and self.message and self.phase in ("diverged", "error", "stopped"):
            text += f" — {self.message}"
        return text
