"""Races and leaks of the session machinery (issue 11's review), each shown on the case that broke it.

* ``app.pictures`` cached compiled functions by ``id(engine)``: an engine evicted from the engine
  cache let its id be reused by a new engine, which then got the old model's function, and the
  entry stayed forever.  The cache is now keyed weakly by the engine itself.
* A stopped worker's late events (records, phase, pictures, result) must not reach views that
  Reset or Load has just made fresh; neither may a file that was still being read when Run or
  Reset came.
* The exact observer's thread when building the model raises: ``tests/test_driver.py``
  (``test_a_model_constructor_that_raises_leaves_no_observer_thread_waiting``), an engine test.
* The session's temporary folder: ``tests/test_app_classroom.py``.
"""

from __future__ import annotations

import gc
import threading
import weakref
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
from conftest import TINY as SUITE_TINY
from conftest import poll_until, tick_until

from app import pictures
from app.export import run_json
from nqs_core.settings import RunSettings

# the suite's small run (its programs come from the compilation cache); sign given: the lab's default preset has
# Marshall's prior
TINY = dict(SUITE_TINY, sign="none")


class Engine:
    """Stands for ``nqs_core.vmc.Engine`` as the cache sees it: an object compared by identity."""


def session_vmc(factor: float, engine: Engine | None = None) -> SimpleNamespace:
    """What ``pictures._apply`` reads of a VMC: its engine and its model's ``apply``."""
    return SimpleNamespace(engine=engine or Engine(), model=SimpleNamespace(apply=lambda params, x: factor * x))


def test_compiled_functions_follow_their_engine_not_its_id() -> None:
    before = len(pictures._APPLY)
    first = session_vmc(1.0)
    assert float(pictures._apply(first)(None, np.float32(3.0))) == 3.0
    assert pictures._apply(first) is pictures._apply(first)  # compiled once per engine
    gone = weakref.ref(first.engine)
    old_id = id(first.engine)
    del first
    gc.collect()
    assert gone() is None, "the cache keeps an evicted engine alive"
    assert len(pictures._APPLY) == before, "the cache keeps an entry for an engine that no longer exists"

    # a new engine at the old address gets its own function; CPython's allocator may or may not place
    # one there (it rarely does here), so this part checks only when it did: the entry kept above for a
    # dead engine is what let an old function be found under a recycled id
    engines = [Engine() for _ in range(1000)]
    for engine in [e for e in engines if id(e) == old_id] + engines[:1]:
        second = session_vmc(2.0, engine)
        assert float(pictures._apply(second)(None, np.float32(3.0))) == 6.0, "another model's function was handed out"


def test_concurrent_sessions_get_one_function_per_engine() -> None:
    vmc = session_vmc(1.0)
    start = threading.Barrier(8)
    got: list[Callable] = []

    def ask() -> None:
        start.wait()
        got.append(pictures._apply(vmc))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 8 and all(fn is got[0] for fn in got)


# ----- late events after Reset and Load ---------------------------------------------------------
def exported_run(steps: int = 4) -> bytes:
    from nqs_core.events import StepRecord

    history = [StepRecord(step=i, energy=-2.0 - 0.1 * i, error=0.01, variance=0.1, acceptance=0.5, r_hat=1.0,
                          tau=1.0, grad_norm=0.1, v_score=0.01, seconds=0.01) for i in range(steps)]
    return run_json(RunSettings(**TINY, steps=steps), history, None,
                    {"final_energy": -2.3, "final_error": 0.01, "phase": "done"}).encode()


def running_lab() -> Any:
    """A lab whose worker has queued steps that the page has not drawn yet, and that worker's thread."""
    from app.lab import Lab

    lab = Lab()
    lab.settings.param.update(preset="custom", **TINY, steps=100_000)
    lab._on_run()
    tick_until(lab, lambda: len(lab.history) >= 1, 180, "the first steps")
    worker = lab.runner._thread
    poll_until(lambda: None, lambda: lab.runner._queue.qsize() >= 2, 60, "steps queued and not drained")
    return lab, worker


def ended(lab: Any, worker: threading.Thread) -> None:
    """Let the abandoned worker finish everything it would still report, then drain as the page does."""
    worker.join(120)
    assert not worker.is_alive(), "the stopped worker did not end"
    for _ in range(5):
        lab.tick()


@pytest.mark.slow
def test_reset_with_records_still_queued_shows_none_of_them() -> None:
    lab, worker = running_lab()
    lab._on_reset()
    ended(lab, worker)
    assert lab.history == [] and lab.energy.n_points == 0 and lab.summary is None
    assert lab.runner.phase == "idle" and "step 0 /" in lab.status.object
    assert len(lab.sign.config_source.data["phase"]) == 0, "a picture of the stopped run reached the idle page"
    lab.shutdown()


@pytest.mark.slow
def test_load_during_a_run_shows_only_the_loaded_run() -> None:
    lab, worker = running_lab()
    lab.load_bytes("run.json", exported_run(), background=False)
    assert len(lab.history) == 4
    ended(lab, worker)
    assert [r.step for r in lab.history] == [0, 1, 2, 3] and lab.energy.n_points == 4
    assert lab.summary["final_energy"] == -2.3 and "Loaded a run of 4 steps" in lab.message.object
    assert lab.settings.steps == 4 and "loaded · step 4 / 4" in lab.status.object
    assert lab.runner.phase == "idle" and not lab.runner.alive
    assert len(lab.sign.config_source.data["phase"]) == 0, "the stopped run's final picture reached the loaded views"
    lab.shutdown()


@pytest.mark.parametrize("then", ["reset", pytest.param("run", marks=pytest.mark.slow)])
def test_a_file_still_being_read_is_dropped_by_reset_or_run(then: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run or Reset while a loaded file is still being read (a checkpoint takes seconds): the
    file's run must not replace the views afterwards.  The real loader is held until then."""
    import app.export as export
    from app.lab import Lab

    lab = Lab()
    reading, release = threading.Event(), threading.Event()

    def held_load(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        assert release.wait(60)
        return export.load_run_file(*args, **kwargs)

    monkeypatch.setattr("app.lab.load_run_file", held_load)
    try:
        lab.load_bytes("run.json", exported_run(), background=True)
        assert reading.wait(60) and lab.loading
        if then == "reset":
            lab._on_reset()
        else:
            lab.settings.param.update(preset="custom", **TINY, steps=3)
            lab._on_run()
        loader = next(t for t in threading.enumerate() if t.name == "nqs-load")
        release.set()
        loader.join(60)
        lab.tick()
        lab.tick()
        assert "Loaded" not in lab.message.object and not lab.loading
        if then == "reset":
            assert lab.history == [] and lab.energy.n_points == 0 and lab.runner.phase == "idle"
        else:
            assert lab.run_settings.steps == 3 and lab.runner.alive and lab.runner.phase != "idle"
    finally:
        release.set()
        lab.shutdown()
        lab.runner.join(120)
