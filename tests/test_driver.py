"""The run loop with the real engine on a tiny chain: events, pause/resume/stop from another thread
within 0.5 s, divergence handling with a finite checkpoint, timing and the summary."""

from __future__ import annotations

import math
import queue
import threading
import time

import jax
import numpy as np

from nqs_core.checkpoint import load_checkpoint
from nqs_core.driver import RunControl, RunEvent, StepRecord, run
from nqs_core.settings import RunSettings

TINY = RunSettings(hamiltonian="heisenberg", lattice="chain", L=6, samples=64, chains=4, optimizer="sr",
                   lr=0.05, eval_samples=256, seed=1)
LATENCY = 0.5


def test_events_summary_and_reference():
    events: list[RunEvent] = []
    result = run(TINY.replace(steps=12, steps_per_call=3), callback=events.append, n_show=2)
    phases = [e.phase for e in events if e.kind == "phase"]
    assert phases[0] == "compiling" and phases[1] == "running" and phases[-1] == "done"
    steps = [e for e in events if e.kind == "steps"]
    assert len(steps) == 4 and all(len(e.records) == 3 for e in steps)  # 3 steps per call
    assert [r.step for e in steps for r in e.records] == list(range(12))
    for e in steps:
        assert e.samples.shape == (2, 6) and set(np.unique(e.samples)) <= {-1, 1}
        assert np.all(e.samples.sum(axis=1) == 0)  # Heisenberg chains stay in Sᶻ = 0
        for r in e.records:
            assert isinstance(r, StepRecord) and math.isfinite(r.energy) and r.seconds > 0
            assert 0 <= r.acceptance <= 1 and r.error >= 0 and r.variance >= 0
    refs = [e.reference for e in events if e.kind == "reference"]
    assert len(refs) == 1 and refs[0]["method"] == "exact" and "Bethe" in refs[0]["provenance"]["formula"]
    s = result.summary
    assert s["reference_energy"] == refs[0]["energy"] and s["reference_method"] == "exact"
    assert "Bethe" in s["reference_detail"]
    assert s["relative_error"] == abs(s["final_energy"] - s["reference_energy"]) / abs(s["reference_energy"])
    assert s["final_source"] == "evaluation with 256 samples" and s["steps"] == 12 and s["devices"] == 1
    assert s["parameters"] == 6 + 6 + 36  # complex RBM α=1: visible bias, hidden bias, weights
    assert s["compile_seconds"] > 0 and s["iterations_per_second"] > 0 and s["wall_seconds"] >= s["compile_seconds"]
    assert "S_i·S_j" in s["convention"]
    assert s["v_score"] == TINY.n_sites * s["final_variance"] / s["final_energy"] ** 2


def _threaded_run(settings: RunSettings, **kwargs):
    events: queue.Queue = queue.Queue()
    control = RunControl()
    out: dict = {}

    def work() -> None:
        out["result"] = run(settings, callback=lambda e: events.put((time.perf_counter(), e)), control=control,
                            reference=False, **kwargs)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return events, control, thread, out


def _wait_for(events: queue.Queue, predicate, timeout: float) -> tuple[float, RunEvent, list[RunEvent]]:
    seen = []
    deadline = time.perf_counter() + timeout
    while True:
        t, e = events.get(timeout=max(0.01, deadline - time.perf_counter()))
        seen.append(e)
        if predicate(e):
            return t, e, seen


def test_pause_resume_stop_take_effect_within_half_a_second(tmp_path):
    ck = tmp_path / "live.npz"
    events, control, thread, out = _threaded_run(TINY.replace(steps=100_000, eval_samples=0), checkpoint=ck)
    _wait_for(events, lambda e: e.kind == "steps", timeout=120)  # compiled and running

    t0 = time.perf_counter()
    control.pause()
    t, _, seen = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "paused", timeout=5)
    assert t - t0 < LATENCY, f"pause took {t - t0:.3f} s"
    last_step = max([r.step for e in seen if e.kind == "steps" for r in e.records], default=-1)
    time.sleep(0.6)
    assert events.empty(), "steps were reported while paused"
    assert load_checkpoint(ck).step >= last_step + 1  # a pause writes the checkpoint

    control.resume()
    _, e, _ = _wait_for(events, lambda e: e.kind == "steps", timeout=5)
    assert e.records[0].step > last_step

    t0 = time.perf_counter()
    control.stop()
    t, _, _ = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "stopped", timeout=5)
    assert t - t0 < LATENCY, f"stop took {t - t0:.3f} s"
    thread.join(timeout=10)
    assert not thread.is_alive()
    result = out["result"]
    assert result.phase == "stopped" and result.summary["phase"] == "stopped"
    assert load_checkpoint(ck).step == len(result.history) == int(result.state.step)


def test_stop_while_paused():
    events, control, thread, out = _threaded_run(TINY.replace(steps=100_000, eval_samples=0))
    _wait_for(events, lambda e: e.kind == "steps", timeout=120)
    control.pause()
    _wait_for(events, lambda e: e.kind == "phase" and e.phase == "paused", timeout=5)
    t0 = time.perf_counter()
    control.stop()
    t, _, _ = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "stopped", timeout=5)
    assert t - t0 < LATENCY
    thread.join(timeout=10)
    assert out["result"].phase == "stopped"


def test_diverging_learning_rate_stops_cleanly_with_a_finite_checkpoint(tmp_path):
    """SGD at the largest allowed lr with heavy momentum blows up (log ψ ratios overflow) for most seeds;
    the first seed that diverges must stop with phase "diverged", a clear message and a finite state."""
    ck = tmp_path / "diverged.npz"
    for seed in range(8):
        events: list[RunEvent] = []
        settings = TINY.replace(optimizer="sgd", lr=10.0, momentum=0.99, steps=100, eval_samples=0,
                                steps_per_call=2, seed=seed)
        result = run(settings, callback=events.append, checkpoint=ck, reference=False)
        if result.phase == "diverged":
            break
    assert result.phase == "diverged", "no seed diverged at lr=10, momentum=0.99"
    assert events[-1].kind == "phase" and events[-1].phase == "diverged"
    assert "NaN/inf at step" in result.message and "smaller learning rate" in result.message
    assert "diverged" not in [e.phase for e in events[:-1]]
    assert len(result.history) < 100
    assert all(math.isfinite(r.energy) for r in result.history)
    reported = [r.step for e in events if e.kind == "steps" for r in e.records]
    assert reported == list(range(len(result.history)))  # every kept step was reported, none after
    for leaf in jax.tree_util.tree_leaves(result.state.params):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert int(result.state.step) == len(result.history)
    saved = load_checkpoint(ck)
    assert saved.extra["phase"] == "diverged" and saved.step == len(result.history)
    assert all(np.all(np.isfinite(a)) for a in saved.leaves if a.dtype.kind in "fc")
    assert result.summary["phase"] == "diverged" and result.summary["final_source"].startswith("last step")
