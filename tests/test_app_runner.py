"""The lab's worker thread, driven through the real engine (nqs_core.driver.run), no server.

Small chains keep compile and steps short on two shared cores.
"""

import time

import numpy as np
import pytest

from app.runner import Runner, live_workers
from nqs_core.settings import RunSettings, SettingsError

TINY = dict(hamiltonian="heisenberg", lattice="chain", L=6, model="rbm", samples=64, chains=4, eval_samples=0,
            dtype="float32")


def drain_until(runner, predicate, timeout, collected):
    """Drain batches into ``collected`` until predicate(runner, batch) holds; fail after timeout."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        batch = runner.drain()
        collected.append(batch)
        if predicate(runner, batch):
            return batch
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s in phase {runner.phase} at step {runner.step}")


@pytest.mark.slow
def test_start_pause_resume_stop():
    runner = Runner(name="test")
    batches = []
    before = live_workers()
    runner.start(RunSettings(**TINY, steps=100_000))
    assert runner.alive and live_workers() == before + 1
    with pytest.raises(RuntimeError):
        runner.start(RunSettings(**TINY, steps=10))  # one run per session at a time

    drain_until(runner, lambda r, b: r.step >= 5, 180, batches)
    assert "step" in runner.status_text() and "/ 100000" in runner.status_text()
    records = [r for b in batches for r in b.records]
    assert [r.step for r in records] == list(range(len(records)))
    assert all(np.isfinite(r.energy) for r in records)
    frames = [f for b in batches for f in b.frames]
    assert frames and frames[0].shape[1] == 6 and set(np.unique(frames[0])) <= {-1, 1}
    assert runner.compile_seconds is not None and runner.compile_seconds > 0

    runner.pause()
    drain_until(runner, lambda r, b: b.phase == "paused", 30, batches)
    held = runner.step
    time.sleep(1.5)
    late = runner.drain()
    assert not late.records and runner.step == held and runner.phase == "paused"

    runner.resume()
    drain_until(runner, lambda r, b: r.step >= held + 3, 60, batches)
    assert runner.phase == "running" and runner.iterations_per_second() > 0

    t0 = time.monotonic()
    runner.stop()
    assert runner.join(10.0), "worker still alive 10 s after stop"
    stopped_in = time.monotonic() - t0
    drain_until(runner, lambda r, b: b.result is not None, 10, batches)
    assert runner.phase == "stopped" and "stopped after step" in runner.message
    assert stopped_in < 5.0
    assert live_workers() == before


@pytest.mark.slow
def test_divergence_is_reported_with_its_reason():
    runner = Runner(name="test-diverge")
    runner.start(RunSettings(**TINY, optimizer="sr", lr=10.0, diag_shift=0.0, steps=200))
    batches = []
    drain_until(runner, lambda r, b: b.result is not None, 180, batches)
    assert runner.phase == "diverged"
    assert "NaN/inf" in runner.message and "smaller learning rate" in runner.message
    assert "diverged" in runner.status_text() and "smaller learning rate" in runner.status_text()
    assert runner.join(5.0)
    # the last finite steps were still delivered
    assert all(np.isfinite(r.energy) for b in batches for r in b.records)


def test_invalid_settings_are_refused_without_a_thread():
    runner = Runner(name="test-invalid")
    with pytest.raises(SettingsError) as err:
        runner.start(RunSettings(**{**TINY, "L": 5}))
    assert err.value.setting == "L"
    assert not runner.alive and runner.phase == "idle"


def test_drain_merges_and_bounds_frames():
    runner = Runner(name="test-queue", max_frames=3)
    from nqs_core.driver import RunEvent, StepRecord

    rec = [StepRecord(step=i, energy=-1.0 * i, error=0.1, variance=1.0, acceptance=0.5, r_hat=1.0, tau=1.0,
                      grad_norm=1.0, v_score=0.1, seconds=0.01) for i in range(5)]
    # the same callback path the worker uses
    q = runner._queue
    for i in range(5):
        q.put(("steps", [rec[i]], np.full((2, 4), (-1) ** i, dtype=np.int8), time.monotonic() + i))
    q.put(("phase", "diverged", "why", time.monotonic()))
    batch = runner.drain()
    assert [r.step for r in batch.records] == list(range(5))
    assert len(batch.frames) == 3 and batch.frames[-1][0, 0] == 1
    assert batch.phase == "diverged" and runner.step == 5
    assert runner.drain().empty
    assert RunEvent is not None
