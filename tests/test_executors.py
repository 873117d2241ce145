"""Executors (nqs_core/executors.py): a queue of runs gives the same results in this thread, in local
processes and on a Dask ``LocalCluster``; pause, resume and stop reach a run in another process.

Everything waits on events (a drained phase, a record, a result); timeouts only guard against a hang.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from conftest import TINY, poll_until

from app.run_queue import RunQueue
from app.runner import Runner
from nqs_core.events import RunControl, RunEvent
from nqs_core.executors import (
    DaskExecutor,
    Finished,
    ProcessExecutor,
    RemoteRunError,
    ThreadExecutor,
    execute_here,
    executor_from_env,
    follow,
    relay_commands,
)
from nqs_core.settings import RunSettings

# the suite's TINY (tests/conftest.py), evaluated as test_driver's runs are: its programs come from the cache
CHAIN = dict(TINY, steps=6, eval_samples=256)
SEEDS = (0, 1, 2)
RUN_KWARGS = {"reference": False, "exact": False, "n_show": 4}


@pytest.fixture(scope="module", autouse=True)
def one_device_per_worker() -> Any:
    """The executors are compared bit for bit with this (one-device) process: their worker processes keep
    one CPU device too (``NQS_CPU_DEVICES=1``; the split's own agreement is test_devices')."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NQS_CPU_DEVICES", "1")
        yield


def run_queue_through(executor: Any, seeds: tuple[int, ...] = SEEDS, slots: int = 2) -> dict[int, Any]:
    """Each seed's run started at once by its own session's Runner on one RunQueue(``slots``); the
    RunResult of each, once all ended."""
    line = RunQueue(slots)
    runners = {seed: Runner(name=f"seed{seed}", executor=executor, run_queue=line, run_kwargs=RUN_KWARGS)
               for seed in seeds}
    results: dict[int, Any] = {}
    for seed, runner in runners.items():
        runner.start(RunSettings(**CHAIN, seed=seed))

    def drain() -> None:
        for seed, runner in runners.items():
            batch = runner.drain()
            assert batch.phase != "error", runner.message
            if batch.result is not None:
                results[seed] = batch.result

    poll_until(drain, lambda: len(results) == len(seeds), 600, f"the runs through {executor.name}",
               status=lambda: str({s: r.phase for s, r in runners.items()}))
    for runner in runners.values():
        assert runner.join(60)
    assert line.running == 0 and line.waiting == 0
    return results


def outcome(result: Any) -> tuple[list[float], float]:
    return [r.energy for r in result.history], result.summary["final_energy"]


def same_leaves(a: Any, b: Any) -> bool:
    """Whether two pytrees hold equal arrays."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def in_thread() -> dict[int, Any]:
    return run_queue_through(ThreadExecutor())


@pytest.mark.slow
def test_local_processes_give_the_same_results_as_this_thread(in_thread: dict[int, Any]) -> None:
    in_processes = run_queue_through(ProcessExecutor())
    for seed in SEEDS:
        assert outcome(in_processes[seed]) == outcome(in_thread[seed]), seed
        assert in_processes[seed].phase == "done"
        assert same_leaves(in_processes[seed].state, in_thread[seed].state)  # the final state came back
        assert len(in_processes[seed].history) == CHAIN["steps"]
    from app.pictures import final_pictures  # what the lab computes from a finished run's state

    assert "configurations" in final_pictures(in_processes[0])


@pytest.fixture(scope="module")
def dask_cluster() -> Any:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        yield cluster


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_results_as_this_thread(in_thread: dict[int, Any], dask_cluster: Any) -> None:
    executor = DaskExecutor(dask_cluster.scheduler_address)
    try:
        on_cluster = run_queue_through(executor)
    finally:
        executor.close()
    for seed in SEEDS:
        assert outcome(on_cluster[seed]) == outcome(in_thread[seed]), seed
        assert on_cluster[seed].phase == "done" and same_leaves(on_cluster[seed].state, in_thread[seed].state)


def drain_until(runner: Runner, predicate: Any, what: str) -> None:
    poll_until(runner.drain, lambda: predicate(runner), 300, what,
               status=lambda: f"(phase {runner.phase}, step {runner.step}: {runner.message})")


def niceness(result: Any) -> dict[str, Any]:
    """An ``after`` hook: the priority of the process the run ran in, and its ``NQS_TEST_MARK``."""
    return {"nice": os.nice(0), "mark": os.environ.get("NQS_TEST_MARK")}


def pause_resume_stop(executor: Any, folder: Path) -> tuple[Any, dict[str, Any]]:
    """A long run with the lab's live sign picture: pause once it steps, see the picture of the paused
    state (from the checkpoint written on pause, computed where the run runs), resume, stop; its final
    result and extras."""
    runner = Runner(name="long", executor=executor, run_kwargs=RUN_KWARGS, after=niceness, live_pictures=True)
    runner.start(RunSettings(**{**CHAIN, "steps": 100_000}), checkpoint=folder / "ck.npz")
    drain_until(runner, lambda r: r.step >= 2, "the first steps")
    runner.pause()
    pictures: list[Any] = []  # every picture from here on: one may come in the same drain as the pause

    def collect() -> None:
        picture = runner.drain().extra.get("configurations")
        if picture is not None:
            pictures.append(picture)

    poll_until(collect, lambda: runner.phase == "paused", 300, "the pause")
    held = runner.step

    def of_paused() -> list[Any]:
        return [p for p in pictures if f"parameters after step {held}" in p["label"]]

    poll_until(collect, lambda: bool(of_paused()), 300, "the live sign picture of the paused run")
    assert len(of_paused()[-1]["log_psi"]) > 0
    runner.resume()
    drain_until(runner, lambda r: r.step >= held + 2, "steps after the resume")
    runner.stop()
    seen: list[Any] = []
    poll_until(lambda: seen.append(runner.drain()), lambda: seen[-1].result is not None, 300, "the stopped result")
    assert runner.join(60) and runner.phase == "stopped"
    return seen[-1].result, seen[-1].extra


@pytest.mark.slow
def test_pause_resume_and_stop_reach_a_run_in_another_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    executor = ProcessExecutor(nice=5)
    executor.start()
    monkeypatch.setenv("NQS_TEST_MARK", "set after the fork server started")
    result, extra = pause_resume_stop(executor, tmp_path)
    assert result.summary["stop_reason"] == "stopped" and 4 <= len(result.history) < 100_000
    assert [r.step for r in result.history] == list(range(len(result.history)))  # nothing lost or repeated
    assert extra["nice"] == min(19, os.nice(0) + 5)  # the run computed below the server's priority
    assert extra["mark"] == "set after the fork server started"  # the server's environment of now


def test_the_fork_server_imports_the_engine_without_starting_jax() -> None:
    """Every run's and DMRG job's process is forked from a server that imported ``fork_server.PRELOAD``:
    forking is safe only while that import starts no JAX runtime (XLA's thread pools, a device) and no
    thread."""
    code = ("import importlib, threading\n"
            "from nqs_core.fork_server import PRELOAD\n"
            "for name in PRELOAD: importlib.import_module(name)\n"
            "from jax._src import xla_bridge\n"
            "print(xla_bridge.backends_are_initialized(), threading.active_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1"], done.stdout


@pytest.mark.slow
def test_stop_reaches_a_run_on_the_dask_cluster(dask_cluster: Any, tmp_path: Path) -> None:
    executor = DaskExecutor(dask_cluster.scheduler_address)
    try:
        result, _ = pause_resume_stop(executor, tmp_path)
    finally:
        executor.close()
    assert result.summary["stop_reason"] == "stopped"


class Channel:
    """A plain queue standing in for the remote side's event and command channels."""

    def __init__(self, *items: Any) -> None:
        self.q: queue.Queue = queue.Queue()
        for item in items:
            self.q.put(item)

    def put(self, item: Any) -> None:
        self.q.put(item)

    def get(self, timeout: float | None = None) -> Any:
        return self.q.get(timeout=timeout)


def test_follow_forwards_control_and_reports_remote_ends() -> None:
    event = RunEvent(kind="phase", phase="running")
    heard: list[RunEvent] = []
    control, commands = RunControl(), Channel()
    control.pause()
    done = follow(Channel(("event", event), ("done", Finished("result", {"x": 1}))), commands, control,
                  heard.append, lambda: True, "test")
    assert heard == [event] and done.result == "result" and done.extras == {"x": 1}
    assert commands.get(timeout=0) == "pause"
    with pytest.raises(RemoteRunError, match="ValueError: L"):
        follow(Channel(("error", "ValueError: L")), Channel(), RunControl(), heard.append, lambda: True, "test")
    with pytest.raises(RemoteRunError, match="process ended without reporting its end"):
        follow(Channel(), Channel(), RunControl(), heard.append, lambda: False, "process")


def test_the_executor_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NQS_EXECUTOR", raising=False)
    monkeypatch.delenv("NQS_DASK_SCHEDULER", raising=False)
    assert executor_from_env().name == "thread" and executor_from_env("process").name == "process"
    monkeypatch.setenv("NQS_DASK_SCHEDULER", "tcp://127.0.0.1:8786")
    chosen = executor_from_env()
    assert chosen.name == "dask" and chosen.address == "tcp://127.0.0.1:8786"  # connects on first use only
    monkeypatch.setenv("NQS_EXECUTOR", "threads")
    with pytest.raises(ValueError, match="NQS_EXECUTOR='threads': choose one of thread, process, dask"):
        executor_from_env()
    monkeypatch.setenv("NQS_EXECUTOR", "dask")
    monkeypatch.delenv("NQS_DASK_SCHEDULER")
    with pytest.raises(ValueError, match="needs NQS_DASK_SCHEDULER"):
        executor_from_env()
    monkeypatch.setenv("NQS_EXECUTOR", "process")
    assert executor_from_env().nice == 10
    monkeypatch.setenv("NQS_WORKER_NICE", "0")
    assert executor_from_env().nice == 0
    monkeypatch.setenv("NQS_WORKER_NICE", "high")
    with pytest.raises(ValueError, match="NQS_WORKER_NICE='high': give a whole number from 0 to 19"):
        executor_from_env()


def test_a_checkpoint_whose_folder_is_elsewhere_comes_back_at_the_end(tmp_path: Any) -> None:
    """A worker on another machine cannot write into the session's folder: it writes its own and sends
    the final checkpoint back, which lands where the lab asked for it."""
    from nqs_core.checkpoint import load_checkpoint

    events = Channel()
    kwargs = {**RUN_KWARGS, "checkpoint": tmp_path / "not-on-this-machine" / "ck.npz"}
    execute_here(RunSettings(**CHAIN, seed=0), kwargs, None, None, events, Channel())
    wanted = tmp_path / "ck.npz"
    done = follow(events, Channel(), RunControl(), lambda e: None, lambda: False, "test", wanted)
    assert done.result.phase == "done" and not (tmp_path / "not-on-this-machine").exists()
    assert load_checkpoint(wanted).step == CHAIN["steps"]


def test_the_final_checkpoint_replaces_the_old_one_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes a remote run sends back go to a temporary file in the checkpoint's folder, then replace
    the checkpoint in one step (the lab may be reading it)."""
    wanted = tmp_path / "ck.npz"
    wanted.write_bytes(b"the previous checkpoint")
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        assert wanted.read_bytes() == b"the previous checkpoint"  # untouched until the replace
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    follow(Channel(("done", Finished("result", {}, b"the final checkpoint"))), Channel(), RunControl(),
           lambda e: None, lambda: True, "test", wanted)
    assert wanted.read_bytes() == b"the final checkpoint"
    assert [(src.parent, dst) for src, dst in replaced] == [(tmp_path, wanted)] and replaced[0][0] != wanted
    assert sorted(tmp_path.iterdir()) == [wanted]  # no temporary file left


def test_an_unknown_command_is_ignored_and_the_relay_goes_on() -> None:
    commands, control, done = Channel("pasue", "pause"), RunControl(), threading.Event()
    relay = threading.Thread(target=relay_commands, args=(commands, control, done))
    relay.start()
    try:
        poll_until(lambda: None, lambda: control.paused, 60, "the command after the unknown one to act")
        assert relay.is_alive() and not control.stopped
    finally:
        done.set()
        relay.join(60)
    assert not relay.is_alive()


def test_a_dask_queue_is_looked_at_once_per_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each look at a Dask queue is one RPC (a batch get, which never blocks on the scheduler), at most
    every DASK_POLL_SECONDS; items it fetched are handed out without another one."""
    import pickle
    import time

    import distributed

    from nqs_core.executors import DASK_POLL_SECONDS, _PickledQueue

    class Scheduler:  # stands in for distributed.Queue: records when it was asked
        def __init__(self) -> None:
            self.asked: list[float] = []
            self.waiting: list[bytes] = []

        def get(self, batch: bool = False) -> list[bytes]:
            assert batch is True
            self.asked.append(time.monotonic())
            out, self.waiting = self.waiting, []
            return out

    scheduler = Scheduler()
    monkeypatch.setattr(distributed, "Queue", lambda name, client=None: scheduler)
    q = _PickledQueue("test")
    for _ in range(3):
        with pytest.raises(queue.Empty):
            q.get(timeout=0.05)
    scheduler.waiting = [pickle.dumps("a"), pickle.dumps("b")]
    assert [q.get(timeout=0.05), q.get(timeout=0.05)] == ["a", "b"]
    asked = scheduler.asked
    assert len(asked) == 4  # three empty looks and one that fetched both items
    assert all(b - a >= DASK_POLL_SECONDS for a, b in zip(asked, asked[1:]))
    assert 0.2 <= DASK_POLL_SECONDS <= 0.3  # with the relay's poll on the other side, Pause acts within 1 s


def test_a_class_is_not_served_with_an_unknown_executor() -> None:
    """``make class EXECUTOR=…`` (scripts/serve_class.sh) checks the executor before it serves anything."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "serve_class.sh"
    env = {**os.environ, "ORIGIN": "127.0.0.1:5999", "ADDRESS": "127.0.0.1", "NQS_EXECUTOR": "threads"}
    done = subprocess.run([str(script)], cwd=script.parents[1], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "NQS_EXECUTOR='threads': choose one of thread, process, dask" in done.stderr
    assert "Bokeh app running" not in done.stdout + done.stderr


def test_a_run_whose_caller_went_silent_stops() -> None:
    """The remote side obeys its commands, and stops by itself once the caller (a server that went away)
    has said nothing, not even its heartbeat, for the allowed silence."""
    commands, control, done = Channel("pause", "alive"), RunControl(), threading.Event()
    relay = threading.Thread(target=relay_commands, args=(commands, control, done, 0.5))
    relay.start()
    try:
        poll_until(lambda: None, lambda: control.stopped, 60, "the silent caller's run to stop")
    finally:
        done.set()
        relay.join(60)
    assert not relay.is_alive()


ORPHAN = r"""
import json, sys, threading
from nqs_core import make_hamiltonian, make_lattice
from nqs_core.events import RunControl
from nqs_core.executors import ProcessExecutor
from nqs_core.references.dmrg import DMRGJob
from nqs_core.settings import RunSettings
if __name__ == "__main__":
    settings = RunSettings(**json.loads(sys.argv[1]), steps=100000)
    def stepping(event):
        if event.kind == "steps":
            import multiprocessing
            run = [p.pid for p in multiprocessing.active_children() if p.name == "nqs-run"]
            # sweeps for far longer than the test waits: a 128-site ring to a bond dimension of 2048
            job = DMRGJob(make_hamiltonian("heisenberg", make_lattice("chain", 128)), rel_tol=1e-14, chi_max=2048)
            print("children", run[0], job._process.pid, flush=True)
            threading.Event().wait()  # hold the follower: the run keeps computing, unread
    ProcessExecutor().execute(settings, callback=stepping, control=RunControl(), reference=False, exact=False)
"""


@pytest.mark.slow
def test_a_process_worker_and_a_dmrg_job_end_with_their_server(tmp_path: Path) -> None:
    """A server killed outright (no chance to stop its runs) leaves nothing computing: the run's worker
    process and the DMRG job's see the server gone and exit."""
    script = tmp_path / "server.py"
    script.write_text(ORPHAN)
    server = subprocess.Popen([sys.executable, str(script), json.dumps(TINY)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        line = server.stdout.readline()  # blocks until the run steps (or the server dies: "")
        assert line.startswith("children "), line
        children = [int(pid) for pid in line.split()[1:]]
    finally:
        server.kill()
        server.wait(60)
    for child in children:
        poll_until(lambda: None, lambda: not Path(f"/proc/{child}").exists() or zombie(child), 120,
                   "the orphaned worker to exit")


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True
