"""Where a run executes: in this thread, in a local process, or on a Dask distributed cluster.

An :class:`Executor` runs :func:`nqs_core.driver.run` for one :class:`RunSettings` and blocks the
calling thread until it ends, exactly like calling ``run`` there: the ``callback`` hears every
:class:`RunEvent` in order (in the calling thread), the caller's :class:`RunControl` pauses, resumes
and stops the run, and the :class:`Finished` it returns holds the :class:`RunResult` and the payloads
of ``after(result)``, computed where the run ran (e.g. the lab's final pictures).  A ``live`` view
(``live(settings, checkpoint, emit)``, fed every sample set, e.g. the lab's live sign picture) also runs
where the run runs; what it emits reaches ``on_extra(name, payload)`` in the calling thread.

* :class:`ThreadExecutor`: in the calling thread (the lab's worker thread; today's behaviour).
* :class:`ProcessExecutor`: a fresh process per run (forked from ``multiprocessing``'s fork server, which
  has imported JAX and the engine once), at a lower priority than the server (``NQS_WORKER_NICE``) and
  ending with it; events come back through a ``multiprocessing`` queue, pause/resume/stop go the other
  way through a second one.
* :class:`DaskExecutor`: a task on a Dask ``distributed`` cluster (``NQS_DASK_SCHEDULER``); events and
  commands travel through two ``distributed.Queue``\\ s held by the scheduler.

Remote events lose their ``params`` (JAX arrays stay where they live); a remote result's final ``state``
comes back as NumPy arrays.  A remote run that hears nothing from its caller for 30 s (no heartbeat)
stops.  :func:`executor_from_env` picks an executor from ``NQS_EXECUTOR`` / ``NQS_DASK_SCHEDULER``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import queue
import tempfile
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from nqs_core import fork_server
from nqs_core.events import POLL_SECONDS, RunControl, RunEvent
from nqs_core.settings import RunSettings

log = logging.getLogger("nqs_core.executors")

# POLL_SECONDS (nqs_core.events): how often the caller's side forwards pause/resume/stop and looks for events
DASK_POLL_SECONDS = 0.25  # a Dask queue is looked at (one RPC to the scheduler) this often at most
HEARTBEAT_SECONDS = 5.0  # the caller says "alive" this often; a run that hears nothing for 6x that stops
EXECUTORS = ("thread", "process", "dask")
After = Callable[[Any], dict[str, Any]]
Emit = Callable[[str, Any], None]
Live = Callable[[RunSettings, Any, Emit], Any]  # -> an object with add_samples(step, samples), stop(), join(timeout)


@dataclass
class Finished:
    """A run's end: its ``RunResult``, the payloads ``after(result)`` returned by name, and the final
    checkpoint's bytes when the run had to write it elsewhere than asked (see :func:`execute_here`)."""

    result: Any
    extras: dict[str, Any] = field(default_factory=dict)
    checkpoint: bytes | None = None


class RemoteRunError(RuntimeError):
    """A run failed where it executed; the message is the remote ``Type: message``."""


class Executor(Protocol):
    """Runs one run to its end (see the module docstring)."""

    name: str

    def execute(self, settings: RunSettings, *, callback: Callable[[RunEvent], None], control: RunControl,
                after: After | None = None, live: Live | None = None, on_extra: Emit | None = None,
                **run_kwargs: Any) -> Finished: ...


def apply_after(after: After | None, result: Any) -> dict[str, Any]:
    """``after(result)``, or ``{}`` when there is none or it failed (a picture must never fail a run)."""
    if after is None:
        return {}
    try:
        return dict(after(result))
    except Exception:
        log.warning("post-processing of a run failed: %s", traceback.format_exc())
        return {}


def start_live(live: Live | None, settings: RunSettings, run_kwargs: dict[str, Any], emit: Emit | None) -> Any:
    """The run's live view (None without ``live``, a checkpoint to watch or anyone to hear it)."""
    checkpoint = run_kwargs.get("checkpoint")
    return live(settings, checkpoint, emit) if live and checkpoint is not None and emit else None


def feeding(callback: Callable[[RunEvent], None], view: Any) -> Callable[[RunEvent], None]:
    """``callback``, handing each ``steps`` event's configurations to the live view first."""
    if view is None:
        return callback

    def fed(event: RunEvent) -> None:
        if event.kind == "steps" and event.samples is not None and event.records:
            view.add_samples(event.records[-1].step, np.asarray(event.samples))
        callback(event)

    return fed


def stop_live(view: Any) -> None:
    """End the live view before the final pictures, so that they come after its last one."""
    if view is not None:
        view.stop()
        view.join(10.0)


class ThreadExecutor:
    """The run in the calling thread (:func:`nqs_core.driver.run`)."""

    name = "thread"

    def execute(self, settings: RunSettings, *, callback: Callable[[RunEvent], None], control: RunControl,
                after: After | None = None, live: Live | None = None, on_extra: Emit | None = None,
                **run_kwargs: Any) -> Finished:
        from nqs_core.driver import run

        view = start_live(live, settings, run_kwargs, on_extra)
        try:
            result = run(settings, callback=feeding(callback, view), control=control, **run_kwargs)
        finally:
            stop_live(view)
        return Finished(result, apply_after(after, result))


# ----- the remote side: what runs in the child process or on the Dask worker -----------------------
def portable_event(event: RunEvent) -> RunEvent:
    """The event without its parameters (JAX arrays), ready to pickle."""
    return dataclasses.replace(event, params=None) if event.params is not None else event


def relay_commands(commands: Any, control: RunControl, done: threading.Event,
                   silence: float = 6 * HEARTBEAT_SECONDS) -> None:
    """Apply ``"pause"`` / ``"resume"`` / ``"stop"`` from the command channel to ``control`` until
    ``done``; stop the run when the caller has said nothing (not even ``"alive"``) for ``silence`` s or
    the channel fails: a server that went away must not leave its runs computing unseen."""
    actions = {"pause": control.pause, "resume": control.resume, "stop": control.stop, "alive": lambda: None}
    heard = time.monotonic()
    while not done.is_set():
        try:
            command = commands.get(timeout=POLL_SECONDS * 4)
        except (queue.Empty, TimeoutError):
            if time.monotonic() - heard > silence and not control.stopped:
                log.warning("nothing from the run's caller for %.0f s: stopping the run", silence)
                control.stop()
            continue
        except Exception:
            log.warning("the run's command channel failed, stopping: %s", traceback.format_exc())
            control.stop()
            return
        heard = time.monotonic()
        action = actions.get(command)
        if action is None:
            log.warning("unknown run command %r: ignored", command)
        else:
            action()


def execute_here(settings: RunSettings, run_kwargs: dict[str, Any], after: After | None, live: Live | None,
                 events: Any, commands: Any) -> None:
    """Run in this process, streaming ``("event", e)`` and ``("extra", name, payload)`` items, then
    ``("done", Finished)`` or ``("error", message)``, on ``events``; obey the commands read from ``commands``.

    A ``checkpoint`` path whose folder is not on this machine (a Dask worker elsewhere) is written to a
    temporary folder here instead, and its final bytes travel back in the :class:`Finished`.
    """
    import jax

    from nqs_core.devices import start_devices
    from nqs_core.driver import run

    start_devices()  # before the live view computes: a fresh worker process splits its CPU into devices
    control, done = RunControl(), threading.Event()
    relay = threading.Thread(target=relay_commands, args=(commands, control, done), daemon=True,
                             name="nqs-run-commands")
    relay.start()
    asked = run_kwargs.get("checkpoint")
    elsewhere = asked is not None and not Path(asked).parent.is_dir()
    try:
        with tempfile.TemporaryDirectory(prefix="nqs-run-") as tmp:
            kwargs = {**run_kwargs, "checkpoint": Path(tmp) / "checkpoint.npz"} if elsewhere else run_kwargs
            view = start_live(live, settings, kwargs, lambda name, payload: events.put(("extra", name, payload)))
            try:
                result = run(settings, callback=feeding(lambda e: events.put(("event", portable_event(e))), view),
                             control=control, **kwargs)
            finally:
                stop_live(view)
            extras = apply_after(after, result)
            data = kwargs["checkpoint"].read_bytes() if elsewhere and kwargs["checkpoint"].exists() else None
        events.put(("done", Finished(dataclasses.replace(result, state=jax.device_get(result.state)), extras, data)))
    except BaseException as exc:
        log.warning("run failed: %s", traceback.format_exc())
        events.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        done.set()
        relay.join(POLL_SECONDS * 10)


# ----- the caller's side -----------------------------------------------------------------------------
def _control_state(control: RunControl) -> str:
    return "stop" if control.stopped else "pause" if control.paused else "resume"


def follow(events: Any, commands: Any, control: RunControl, callback: Callable[[RunEvent], None],
           alive: Callable[[], bool], where: str, checkpoint: str | Path | None = None,
           on_extra: Emit | None = None) -> Finished:
    """On the caller's side: hand the remote events to ``callback`` (the live view's payloads to
    ``on_extra``) and forward ``control``'s changes, until the remote run reports its end (its checkpoint
    bytes, if it sent them, written to ``checkpoint``); ``alive()`` false with nothing left to read means
    the remote side died (``where`` names it in the error)."""
    sent, ended, beat = "resume", False, time.monotonic()
    while True:
        state = _control_state(control)
        if state != sent:
            commands.put(state)
            sent = state
        if time.monotonic() - beat > HEARTBEAT_SECONDS:
            commands.put("alive")
            beat = time.monotonic()
        try:
            item = events.get(timeout=POLL_SECONDS)
        except (queue.Empty, TimeoutError):
            if ended:  # looked once more after it ended: nothing was in flight
                raise RemoteRunError(f"the run's {where} ended without reporting its end") from None
            ended = not alive()
            continue
        if item[0] == "event":
            callback(item[1])
        elif item[0] == "extra":
            if on_extra is not None:
                on_extra(item[1], item[2])
        elif item[0] == "done":
            if item[1].checkpoint is not None and checkpoint is not None:
                from nqs_core.checkpoint import write_atomically

                data = item[1].checkpoint
                write_atomically(checkpoint, lambda f: f.write(data))  # the lab may be reading it
            return item[1]
        else:
            raise RemoteRunError(item[1])


def _execute_in_child(env: dict[str, str], nice: int, watch: Any, *args: Any) -> None:
    """The child process: the caller's environment, priority and lifetime (``fork_server.adopt_caller``),
    then :func:`execute_here`."""
    fork_server.adopt_caller(env, watch, nice)
    execute_here(*args)


class ProcessExecutor:
    """Each run in a fresh process (its own interpreter, GIL and JAX runtime) forked from the fork server
    (:mod:`nqs_core.fork_server`, the engine imported there once), ``nice`` steps below the server's
    priority (``NQS_WORKER_NICE``, default 10; 0 keeps it)."""

    name = "process"

    def __init__(self, nice: int | None = None) -> None:
        self._ctx = fork_server.context()
        self.nice = worker_nice() if nice is None else nice

    def start(self) -> None:
        """Start the fork server now, not at the first run."""
        fork_server.start()

    def execute(self, settings: RunSettings, *, callback: Callable[[RunEvent], None], control: RunControl,
                after: After | None = None, live: Live | None = None, on_extra: Emit | None = None,
                **run_kwargs: Any) -> Finished:
        events, commands = self._ctx.Queue(), self._ctx.Queue()
        watch, server_end = fork_server.caller_pipe(self._ctx)
        live = live if on_extra is not None else None
        process = self._ctx.Process(target=_execute_in_child,
                                    args=(dict(os.environ), self.nice, watch, settings, run_kwargs, after, live,
                                          events, commands),
                                    name="nqs-run", daemon=True)
        process.start()
        watch.close()
        try:
            return follow(events, commands, control, callback, process.is_alive, "process",
                          run_kwargs.get("checkpoint"), on_extra)
        finally:
            commands.put("stop")  # nothing if it ended; a run left behind by an error here stops
            process.join(POLL_SECONDS * 20)
            server_end.close()
            events.close()
            commands.close()


class _PickledQueue:
    """A ``distributed.Queue`` of pickled items (the scheduler only passes msgpack-able bytes).

    ``get`` hands out what the last look fetched; when that is used up it makes one look, one RPC taking
    whatever waits (``batch=True`` never blocks on the scheduler, where a timed-out ``get`` logs an
    error), at most every ``poll_seconds``: it first waits out the rest of that interval, whatever
    ``timeout`` says.  Empty means that look found nothing.
    """

    def __init__(self, name: str, client: Any = None, poll_seconds: float = DASK_POLL_SECONDS) -> None:
        from distributed import Queue

        self.name, self._queue = name, Queue(name, client=client)
        self.poll_seconds = poll_seconds
        self._buffer: deque[bytes] = deque()
        self._next_look = 0.0

    def put(self, item: Any) -> None:
        self._queue.put(pickle.dumps(item))

    def get(self, timeout: float | None = None) -> Any:
        if not self._buffer:
            wait = self._next_look - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._buffer.extend(self._queue.get(batch=True))
            self._next_look = time.monotonic() + self.poll_seconds
        if not self._buffer:
            raise queue.Empty
        return pickle.loads(self._buffer.popleft())

    def close(self) -> None:
        self._queue.close()


def _execute_on_worker(settings: RunSettings, run_kwargs: dict[str, Any], after: After | None, live: Live | None,
                       events: str, commands: str) -> str:
    """The Dask task: the run, with its queues bound to this worker's client (the command relay's
    thread has no task context to find it)."""
    from distributed import get_client

    client = get_client()
    execute_here(settings, run_kwargs, after, live, _PickledQueue(events, client), _PickledQueue(commands, client))
    return "ended"


class DaskExecutor:
    """Each run as one task on a Dask ``distributed`` cluster (scheduler at ``address``)."""

    name = "dask"

    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The connection to the scheduler (made on first use, shared by every run)."""
        with self._lock:
            if self._client is None:
                from distributed import Client

                self._client = Client(self.address, set_as_default=False)
            return self._client

    def execute(self, settings: RunSettings, *, callback: Callable[[RunEvent], None], control: RunControl,
                after: After | None = None, live: Live | None = None, on_extra: Emit | None = None,
                **run_kwargs: Any) -> Finished:
        run_id = uuid.uuid4().hex
        events = _PickledQueue(f"nqs-events-{run_id}", self.client)
        commands = _PickledQueue(f"nqs-commands-{run_id}", self.client)
        live = live if on_extra is not None else None
        future = self.client.submit(_execute_on_worker, settings, run_kwargs, after, live, events.name,
                                    commands.name, pure=False, key=f"nqs-run-{run_id}")
        try:
            return follow(events, commands, control, callback, lambda: not future.done(), "Dask task",
                          run_kwargs.get("checkpoint"), on_extra)
        except RemoteRunError:
            if future.status == "error":
                raise RemoteRunError(f"the Dask task failed: {future.exception()!r}") from None
            raise
        finally:
            if not future.done():
                commands.put("stop")
            events.close()
            commands.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def worker_nice() -> int:
    """``NQS_WORKER_NICE`` (0–19), default 10: how much lower a process worker's priority is."""
    raw = os.environ.get("NQS_WORKER_NICE", "").strip() or "10"
    if not raw.isdigit() or int(raw) > 19:
        raise ValueError(f"NQS_WORKER_NICE={raw!r}: give a whole number from 0 to 19")
    return int(raw)


def executor_from_env(default: str = "thread") -> Executor:
    """``NQS_DASK_SCHEDULER=tcp://host:port`` → Dask; else ``NQS_EXECUTOR`` (thread | process | dask)
    or ``default``.  A bad value raises ValueError naming the variable."""
    address = os.environ.get("NQS_DASK_SCHEDULER", "").strip()
    kind = os.environ.get("NQS_EXECUTOR", "").strip().lower() or ("dask" if address else default)
    if kind not in EXECUTORS:
        raise ValueError(f"NQS_EXECUTOR={kind!r}: choose one of {', '.join(EXECUTORS)}")
    if kind == "dask":
        if not address:
            raise ValueError("NQS_EXECUTOR=dask needs NQS_DASK_SCHEDULER=tcp://host:port (the scheduler's address)")
        return DaskExecutor(address)
    return ProcessExecutor() if kind == "process" else ThreadExecutor()


__all__ = ["EXECUTORS", "HEARTBEAT_SECONDS", "DaskExecutor", "Executor", "Finished",
           "ProcessExecutor", "RemoteRunError", "ThreadExecutor", "apply_after", "execute_here", "executor_from_env",
           "feeding", "follow", "portable_event", "relay_commands", "start_live", "stop_live", "worker_nice"]
