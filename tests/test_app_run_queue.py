"""The server-wide run queue (app/run_queue.py): at most N runs at once, first come first served,
positions and the expected wait heard while waiting, cancellation, and a closed tab freeing its place.

Real threads and events throughout; nothing waits for something not to happen: a run that must
not have started is seen as a ticket still in the "waiting" state, which only the queue changes.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from conftest import TINY as SUITE_TINY
from conftest import poll_until, tick_until

from app.run_queue import RUNNING, WAITING, RunQueue, Ticket, default_slots, wait_text

# the suite's small run (its programs come from the compilation cache); sign given: the lab's default preset has
# Marshall's prior
TINY = dict(SUITE_TINY, sign="none")


def test_first_come_first_served_within_the_places() -> None:
    q = RunQueue(2)
    t = [q.join(f"s{i}") for i in range(5)]
    assert [x.state for x in t] == [RUNNING, RUNNING, WAITING, WAITING, WAITING]
    assert [x.position for x in t] == [-1, -1, 0, 1, 2] and q.running == 2 and q.waiting == 3
    t[0].release()
    assert t[2].state == RUNNING and [t[3].position, t[4].position] == [0, 1]
    t[3].cancel()  # a session left the line: the one behind moves up
    assert t[3].state == "cancelled" and t[4].position == 0
    t[3].release()  # releasing a cancelled ticket changes nothing
    assert q.running == 2 and t[4].state == WAITING
    t[1].release()
    assert t[4].state == RUNNING and q.describe() == "2 of 2 places computing"
    t[1].release()  # twice: still one place
    assert q.running == 2
    t[2].cancel()  # no effect on a running ticket
    assert t[2].state == RUNNING


class FakeClock:
    """The queue's clock, moved by the test (no sleeps, no wall time)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def finished_runs(q: RunQueue, clock: FakeClock, durations: list[float]) -> None:
    """Runs of these durations, one after the other, through the queue's places."""
    for d in durations:
        ticket = q.join("past")
        assert ticket.state == RUNNING
        clock.t += d
        ticket.release()


def test_the_wait_is_unknown_until_a_run_finished() -> None:
    clock = FakeClock()
    q = RunQueue(1, clock=clock)
    running, waiting = q.join("a"), q.join("b")
    assert q.expected_wait(0) is None and waiting.status() == "place 1 in line, no estimate yet"
    assert running.status() == ""  # not waiting


def test_the_wait_of_each_place_in_line_with_n_places() -> None:
    clock = FakeClock()
    q = RunQueue(2, clock=clock)
    finished_runs(q, clock, [30.0, 50.0])  # mean 40 s
    first = q.join("a")
    clock.t += 10
    second = q.join("b")
    clock.t += 10  # a ran 20 s (20 s left on average), b 10 s (30 s left)
    line = [q.join(f"w{i}") for i in range(4)]
    assert first.state == second.state == RUNNING and all(t.state == WAITING for t in line)
    # each place frees after the mean; every run ahead takes the first free place for 40 s
    assert [q.expected_wait(p) for p in range(4)] == pytest.approx([20, 30, 60, 70])
    assert [t.status() for t in line] == ["place 1 in line, about 20 s", "place 2 in line, about 30 s",
                                         "place 3 in line, about 60 s", "place 4 in line, about 70 s"]
    clock.t += 25  # a is 5 s past the mean: its place may free at any moment
    assert q.expected_wait(0) == pytest.approx(0) and q.expected_wait(1) == pytest.approx(5)


def test_the_wait_with_one_place_grows_by_the_mean_per_run_ahead() -> None:
    clock = FakeClock()
    q = RunQueue(1, clock=clock)
    finished_runs(q, clock, [60.0])
    q.join("running")
    clock.t += 15
    line = [q.join(f"w{i}") for i in range(3)]
    assert [q.expected_wait(p) for p in range(3)] == pytest.approx([45, 105, 165])
    assert line[2].status() == "place 3 in line, about 3 min"


def test_the_estimate_follows_a_finished_run_and_a_cancelled_one() -> None:
    clock = FakeClock()
    q = RunQueue(1, clock=clock)
    finished_runs(q, clock, [40.0])
    running = q.join("running")
    line = [q.join(f"w{i}") for i in range(3)]
    assert line[2].status() == "place 3 in line, about 2 min"  # 40 + 40 + 40 s
    clock.t += 20
    running.release()  # a 20 s run: the mean is 30 s now, w0 runs, the others move up
    assert line[0].state == RUNNING
    assert [t.status() for t in line[1:]] == ["place 1 in line, about 30 s", "place 2 in line, about 60 s"]
    line[1].cancel()  # cancel still works and the one behind gets its place and its wait
    assert line[1].state == "cancelled" and line[1].status() == ""
    assert line[2].status() == "place 1 in line, about 30 s"
    clock.t += 100
    line[1].release()  # a cancelled run never ran: its time is no duration
    assert q.expected_wait(0) == pytest.approx(0)  # w0 ran 100 s, past the 30 s mean
    line[0].release()
    assert line[2].state == RUNNING and q.expected_wait(0) == pytest.approx((40 + 20 + 100) / 3)


def test_the_wait_in_words() -> None:
    assert wait_text(None) == "no estimate yet"
    assert [wait_text(s) for s in (0, 3, 38, 42, 89)] == ["about 5 s", "about 5 s", "about 40 s", "about 40 s",
                                                           "about 90 s"]
    assert [wait_text(s) for s in (90, 150, 600)] == ["about 2 min", "about 2 min", "about 10 min"]


class Worker:
    """A run in a thread: waits for its turn, says it started, computes until told to finish."""

    def __init__(self, q: RunQueue, name: str, log: list[str], lock: threading.Lock, peak: list[int]) -> None:
        self.ticket: Ticket = q.join(name)
        self.started, self.finish, self.positions = threading.Event(), threading.Event(), []
        self.granted: bool | None = None
        self._log, self._lock, self._peak, self._q = log, lock, peak, q
        self.thread = threading.Thread(target=self._run, name=f"queue-test-{name}")
        self.thread.start()

    def _run(self) -> None:
        self.granted = self.ticket.wait_for_turn(self.positions.append, timeout=120)
        try:
            if self.granted:
                with self._lock:
                    self._log.append(self.ticket.name)
                    self._peak[0] = max(self._peak[0], self._q.running)
                self.started.set()
                assert self.finish.wait(120)
        finally:
            self.ticket.release()


def test_threads_run_at_most_n_at_once_in_the_order_they_asked() -> None:
    q, log, lock, peak = RunQueue(2), [], threading.Lock(), [0]
    workers = [Worker(q, f"w{i}", log, lock, peak) for i in range(6)]
    for w in workers[:2]:
        assert w.started.wait(60)
    assert all(w.ticket.state == WAITING for w in workers[2:])
    last = workers[5]
    for i in range(2, 6):  # each finish lets exactly the next one in line start
        # the last in line heard its current place before the line moves again (its thread may not have
        # run between two moves on a loaded machine, and then it hears only the newer place)
        poll_until(lambda: None, lambda: last.positions[-1:] == [5 - i], 60, f"w5 to hear place {5 - i}")
        workers[i - 2].finish.set()
        assert workers[i].started.wait(60), f"w{i} never started"
        assert all(w.ticket.state == WAITING for w in workers[i + 1:])
    for w in workers:
        w.finish.set()
        w.thread.join(60)
    assert log == [f"w{i}" for i in range(6)] and peak[0] <= 2 and q.running == 0
    assert workers[5].positions == [3, 2, 1, 0]  # heard its place each time the line moved


def test_a_waiting_run_can_cancel_and_leaves_at_once() -> None:
    q, log, lock, peak = RunQueue(1), [], threading.Lock(), [0]
    first, second, third = (Worker(q, name, log, lock, peak) for name in ("a", "b", "c"))
    assert first.started.wait(60)
    second.ticket.cancel()
    second.thread.join(60)
    assert not second.thread.is_alive() and second.granted is False and third.ticket.position == 0
    first.finish.set()
    assert third.started.wait(60)
    third.finish.set()
    third.thread.join(60)
    assert log == ["a", "c"]


def test_the_number_of_places_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("NQS_MAX_RUNS", "3")
    assert default_slots() == 3 and RunQueue().slots == 3
    for bad in ("", "0", "-2", "many"):
        monkeypatch.setenv("NQS_MAX_RUNS", bad)
        assert default_slots() == cores
    with pytest.raises(ValueError, match="at least one place"):
        RunQueue(0)


# ----- the lab: sessions sharing one queue ------------------------------------------------------
def lab_on(q: RunQueue, steps: int) -> Any:
    from app.lab import Lab

    lab = Lab()
    lab.runner.run_queue = q  # what app/main.py does for every served session
    lab.settings.param.update(preset="custom", **TINY, steps=steps)
    return lab


@pytest.mark.slow
def test_sessions_wait_for_their_turn_and_a_closed_tab_frees_its_place() -> None:
    q = RunQueue(1)
    a, b, c = lab_on(q, 100_000), lab_on(q, 100_000), lab_on(q, 3)
    try:
        a._on_run()
        tick_until(a, lambda: len(a.history) >= 1, 180, "the first session's steps")
        b._on_run()
        c._on_run()
        tick_until(b, lambda: b.runner.phase == "queued", 60, "the second session to queue")
        tick_until(c, lambda: c.runner.phase == "queued", 60, "the third session to queue")
        # no run has finished on this queue yet: places, but no estimate
        assert "waiting: place 1 in line, no estimate yet" in b.status.object
        assert "waiting: place 2 in line, no estimate yet" in c.status.object
        assert "Waiting for a free place" in b._stage_text() and "place 1 in line" in b._stage_text()
        assert "place 2 in line" in c._stage_text() and not b.stop_button.disabled

        b.shutdown()  # the second tab closes while it waits: its place goes
        b.runner.join(60)
        assert not b.runner.alive and q.waiting == 1
        tick_until(c, lambda: "waiting: place 1 in line" in c.status.object, 60, "the third session to move up")

        a._on_stop()  # the first run ends: the third, now next, starts and finishes
        tick_until(c, lambda: c.runner.phase == "done", 180, "the third session's run")
        assert len(c.history) == 3 and b.history == []
        tick_until(a, lambda: a.runner.phase == "stopped", 60, "the first session to show its stop")
        c.runner.join(60)
        assert q.running == 0 and q.waiting == 0
    finally:
        for lab in (a, b, c):
            lab.shutdown()
            lab.runner.join(120)


def test_stop_while_queued_cancels_the_run() -> None:
    q = RunQueue(1)
    holder = q.join("another session")  # the only place is taken
    lab = lab_on(q, 3)
    try:
        lab._on_run()
        tick_until(lab, lambda: lab.runner.phase == "queued", 60, "the run to queue")
        lab._on_stop()
        assert lab.runner.phase == "idle" and "Stopped before the first step" in lab.message.object
        assert q.waiting == 0 and q.running == 1
        holder.release()
        assert q.running == 0
    finally:
        lab.shutdown()
        lab.runner.join(60)
