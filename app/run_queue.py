"""The server-wide run queue (issue 11, item 2): at most N runs compute at once, first come first served.

Every session's worker asks for a place (:meth:`RunQueue.join`, at the moment Run is pressed) and,
before it builds or compiles anything, waits for its turn (:meth:`Ticket.wait_for_turn`), hearing its
position in line whenever it changes; a finished, failed or stopped run gives its place back
(:meth:`Ticket.release`); a session that stops, resets or closes its tab while waiting leaves the
line (:meth:`Ticket.cancel`) and the ones behind it move up.

A waiting run also hears how long it may wait (:meth:`Ticket.status`, ``place 2 in line, about 40 s``):
:meth:`RunQueue.expected_wait` gives each running run the mean duration of the last
``RECENT_RUNS`` finished ones on this server minus its elapsed time, then lets every run ahead in line
take the place that frees first for that mean; before any run finished there is no estimate.

N comes from ``NQS_MAX_RUNS`` (``make class MAX_RUNS=4``), default: the cores this process may use.
Only the served lab (``app/main.py``) uses the queue; a Runner without one starts at once.

Where a granted run computes is the server's executor (:func:`server_executor`, from
``NQS_EXECUTOR`` / ``NQS_DASK_SCHEDULER``; :mod:`nqs_core.executors`): the line is the same whatever it is.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import deque
from typing import Callable

from nqs_core.executors import Executor, ProcessExecutor, executor_from_env

log = logging.getLogger("nqs_lab.queue")

WAITING, RUNNING, DONE, CANCELLED = "waiting", "running", "done", "cancelled"
RECENT_RUNS = 10  # finished runs whose mean duration the wait estimate uses


def default_slots() -> int:
    """``NQS_MAX_RUNS`` when set to a whole number ≥ 1, else the number of cores this process may use."""
    raw = os.environ.get("NQS_MAX_RUNS", "").strip()
    if raw:
        try:
            if int(raw) >= 1:
                return int(raw)
        except ValueError:
            pass
        log.warning("NQS_MAX_RUNS=%r is not a whole number >= 1: using the number of cores", raw)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Ticket:
    """One run's place: waiting in line, running, or done/cancelled (both final)."""

    def __init__(self, queue: "RunQueue", name: str) -> None:
        self.queue, self.name = queue, name
        self.state = WAITING
        self.started_at: float | None = None  # the queue's clock when the place was granted

    @property
    def position(self) -> int:
        """Runs ahead of this one in the waiting line (0: next); -1 once it is no longer waiting."""
        return self.queue._position(self)

    def status(self) -> str:
        """``place 2 in line, about 40 s`` (or ``…, no estimate yet``); "" once no longer waiting."""
        return self.queue._status(self)

    def wait_for_turn(self, on_position: Callable[[int], None] | None = None,
                      timeout: float | None = None) -> bool:
        """Block until this run may start (True) or was cancelled (False).

        ``on_position(n)`` hears the position in line once at first and again whenever it changes
        (called without the queue's lock held).  ``timeout`` only guards tests: False when it passes.
        """
        return self.queue._wait(self, on_position, timeout)

    def cancel(self) -> None:
        """Leave the line (a waiting run: Stop, Reset or a closed tab); no effect once running."""
        self.queue._cancel(self)

    def release(self) -> None:
        """Give the place back: the run ended, or it never started (idempotent)."""
        self.queue._release(self)


class RunQueue:
    """At most ``slots`` tickets running at once; the others wait in the order they joined."""

    def __init__(self, slots: int | None = None, clock: Callable[[], float] = time.monotonic,
                 recent: int = RECENT_RUNS) -> None:
        self.slots = default_slots() if slots is None else int(slots)
        if self.slots < 1:
            raise ValueError(f"a run queue needs at least one place, not {self.slots}")
        self._cond = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._running: set[Ticket] = set()
        self._clock = clock  # seconds; tests pass a fake one
        self._durations: deque[float] = deque(maxlen=recent)  # of the last finished runs

    def join(self, name: str = "") -> Ticket:
        """A new ticket at the end of the line (granted at once while a place is free)."""
        ticket = Ticket(self, name)
        with self._cond:
            self._waiting.append(ticket)
            self._grant()
        return ticket

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def describe(self) -> str:
        """``2 of 2 places computing, 3 waiting`` (the page's server line)."""
        with self._cond:
            running, waiting = len(self._running), len(self._waiting)
        return f"{running} of {self.slots} places computing" + (f", {waiting} waiting" if waiting else "")

    def expected_wait(self, position: int) -> float | None:
        """Seconds until the run ``position`` places from the head of the line (0: next) may start;
        None before any run finished on this server (see the module docstring)."""
        with self._cond:
            return self._expected_wait(position)

    # ----- under the lock ----------------------------------------------------------------------------
    def _grant(self) -> None:
        """First come, first served: the head of the line runs while places are free (lock held)."""
        changed = False
        while self._waiting and len(self._running) < self.slots:
            ticket = self._waiting.popleft()
            ticket.state = RUNNING
            ticket.started_at = self._clock()
            self._running.add(ticket)
            changed = True
        if changed:
            self._cond.notify_all()

    def _expected_wait(self, position: int) -> float | None:
        if not self._durations:
            return None
        mean, now = sum(self._durations) / len(self._durations), self._clock()
        # when each place frees: a running run after the mean duration (at once once past it), a free one now
        free = [max(mean - (now - t.started_at), 0.0) for t in self._running if t.started_at is not None]
        free += [0.0] * (self.slots - len(free))
        heapq.heapify(free)
        for _ in range(position):  # each run ahead takes the place that frees first, for the mean duration
            heapq.heapreplace(free, free[0] + mean)
        return free[0]

    def _status(self, ticket: Ticket) -> str:
        with self._cond:
            if ticket.state != WAITING:
                return ""
            position = self._waiting.index(ticket)
            return f"place {position + 1} in line, {wait_text(self._expected_wait(position))}"

    def _position(self, ticket: Ticket) -> int:
        with self._cond:
            return self._waiting.index(ticket) if ticket.state == WAITING else -1

    def _wait(self, ticket: Ticket, on_position: Callable[[int], None] | None, timeout: float | None) -> bool:
        reported = None
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while ticket.state == WAITING:
                position = self._waiting.index(ticket)
                if position != reported and on_position is not None:
                    reported = position
                    self._cond.release()  # not under the lock: the callback is the session's business
                    try:
                        on_position(position)
                    finally:
                        self._cond.acquire()
                    continue  # the line may have moved meanwhile: look again before sleeping
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return ticket.state == RUNNING

    def _cancel(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.state == WAITING:
                self._waiting.remove(ticket)
                ticket.state = CANCELLED
                self._cond.notify_all()  # the cancelled waiter and everyone behind it

    def _release(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.state == WAITING:
                self._waiting.remove(ticket)
            self._running.discard(ticket)
            if ticket.state == RUNNING and ticket.started_at is not None:
                self._durations.append(self._clock() - ticket.started_at)
            if ticket.state in (WAITING, RUNNING):
                ticket.state = DONE if ticket.state == RUNNING else CANCELLED
            self._grant()
            self._cond.notify_all()


def wait_text(seconds: float | None) -> str:
    """``about 40 s`` (5 s steps), ``about 3 min`` beyond 90 s, or ``no estimate yet`` for None."""
    if seconds is None:
        return "no estimate yet"
    if seconds < 90:
        return f"about {max(5, 5 * round(seconds / 5))} s"
    return f"about {round(seconds / 60)} min"


_SERVER_QUEUE: RunQueue | None = None
_SERVER_EXECUTOR: Executor | None = None
_SERVER_LOCK = threading.Lock()
# the served lab's default where NQS_EXECUTOR is not set: a process per run kept the event loop 1.05-4.6x
# less late and new tabs 1.05-1.7x quicker with 3 runs going, in 4 of 4 pairs (benchmarks/README.md)
DEFAULT_EXECUTOR = "process"


def server_queue() -> RunQueue:
    """The queue every session of this server process shares (created on first use)."""
    global _SERVER_QUEUE
    with _SERVER_LOCK:
        if _SERVER_QUEUE is None:
            _SERVER_QUEUE = RunQueue()
            log.info("run queue: at most %d runs at once", _SERVER_QUEUE.slots)
        return _SERVER_QUEUE


def server_executor() -> Executor:
    """Where every session's runs execute (created on first use from the environment)."""
    global _SERVER_EXECUTOR
    with _SERVER_LOCK:
        if _SERVER_EXECUTOR is None:
            _SERVER_EXECUTOR = executor_from_env(DEFAULT_EXECUTOR)
            if isinstance(_SERVER_EXECUTOR, ProcessExecutor):
                _SERVER_EXECUTOR.start()  # its fork server imports the engine while the first page loads
            log.info("runs execute in: %s", _SERVER_EXECUTOR.name)
        return _SERVER_EXECUTOR


__all__ = ["DEFAULT_EXECUTOR", "RECENT_RUNS", "RunQueue", "Ticket", "default_slots", "server_executor", "server_queue",
           "wait_text"]
