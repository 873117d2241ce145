"""Helpers shared by the test files: the ``nqs`` command (subprocess or in-process), polling a
session until something holds, a private cache directory, and refusing any computation where a
test expects a stored answer.

Import the plain helpers with ``from conftest import poll_until`` (pytest puts tests/ on sys.path,
as for ``_table_state``); the fixtures need no import.

The suite runs on two pytest-xdist workers (``-n 2`` in pyproject.toml; ``-n 0`` runs it in one
process): every test is its own unit of work, except the browser tests, which stay together on one
worker (one served lab and one Chromium for all of them, see tests/browser/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

POLL_INTERVAL = 0.1  # the lab's periodic callback runs about 10 times a second

# The suite's small run: a test that needs "a run" (and not a particular model, lattice or size) uses these
# settings, as ``RunSettings(**TINY, steps=…)`` or the CLI's ``tiny_cli()``, so that its compiled programs come
# from the persistent compilation cache after the first test compiled them (a distinct configuration costs
# 10-60 s of compilation cold).  Run-time fields (steps, seed, lr, diag_shift, couplings...) are free to vary;
# the static ones (everything here, eval_samples, the ``n`` of ``VMC.step(state, n)``) each compile anew.
TINY = dict(hamiltonian="heisenberg", lattice="chain", L=6, model="rbm", samples=64, chains=4)


def tiny_cli(**overrides: Any) -> list[str]:
    """``TINY`` (with ``overrides``) as ``nqs run`` arguments."""
    return [a for k, v in {**TINY, **overrides}.items() for a in (f"--{k.replace('_', '-')}", str(v))]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The browser tests together on one worker, the rest spread (tests/_xdist_scheduling.py)."""
    if config.getoption("dist") != "load":
        return None  # an explicit --dist keeps its own scheduler
    from _xdist_scheduling import BrowserTestsTogether

    return BrowserTestsTogether(config, log)


SUBPROCESS_CPU_DEVICES = "1"  # NQS_CPU_DEVICES of every process the tests start, unless a test sets it
# XLA's LLVM backend at -O0 in every test process and every process the tests start (XLA_FLAGS): most of the
# suite's time is compilation of programs that then run a few small steps.  Measured cold on the 2-core machine:
# test_vmc + test_driver 516 -> 365 s of CPU; a TINY step compiles in 5.5 s of CPU instead of 9.7.  The compiled
# code computes the same (round-off aside) but runs 3-4x slower on a 1024-sample step, so the runs whose cost is
# their running time, the accuracy runs, compile at XLA's default (:func:`fully_optimised`), as users' runs do.
SUITE_XLA_FLAGS = "--xla_backend_optimization_level=0"
TWO_CPU_DEVICES_XLA_FLAGS = f"{SUITE_XLA_FLAGS} --xla_force_host_platform_device_count=2"  # a process on 2 devices
FULL_OPTIMISATION = {"xla_backend_optimization_level": 2}  # XLA's default, as a compiler option of one program


def pytest_configure(config: pytest.Config) -> None:
    """JAX starts here, on one CPU device, in every test process: the in-process tests then run on one
    device whichever test comes first (``driver.run``'s ``split_cpu_into_cores`` finds JAX started and
    leaves it).  The processes the tests start (the CLI, the served labs and their run workers) inherit
    ``NQS_CPU_DEVICES=1``: on one device they compile the same programs as the in-process tests and share
    them through the cache (a two-device process keeps its programs in a folder of its own,
    ``compile_cache.runtime_layout``), and two pytest workers already fill the two cores.  The tests of the
    split itself set ``NQS_CPU_DEVICES`` (or ``""``, the users' default: one device per core) themselves.

    The persistent compilation cache (``compile_cache``, the folder users get) is switched on before
    anything compiles: JAX decides once per process, at its first compilation, whether to use it, so a
    test process used to compile every program itself.  Now both workers and every subprocess share the
    programs: 146 engine and model tests took 7 min with an empty cache and 1.5 min with a filled one."""
    import jax

    from nqs_core.compile_cache import enable_compile_cache

    os.environ.setdefault("NQS_CPU_DEVICES", SUBPROCESS_CPU_DEVICES)
    if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SUITE_XLA_FLAGS}".strip()
    enable_compile_cache()
    jax.devices()


def _mapped_regions() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _map_limit() -> int:
    try:
        return int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return 65530


@pytest.fixture(autouse=True)
def release_compiled_programs() -> Any:
    """After a test, once this process holds half the kernel's memory maps, let go of every compiled program.

    Each XLA CPU executable kept alive (JAX's jit caches, the engines, the driver's compiled steps) holds
    memory maps; a test worker that has compiled hundreds of programs reached ``vm.max_map_count``
    (65530) and LLVM aborted while loading the next one from the persistent cache ("Fatal Python error:
    Aborted" in ``deserialize_executable``, a late test of the worker each time).  Eight small
    configurations cost ≈ 5200 maps; clearing the caches gives them back."""
    yield
    if sys.platform != "linux" or _mapped_regions() < _map_limit() // 2:
        return
    import gc

    import jax

    from nqs_core import driver, vmc

    jax.clear_caches()
    vmc._engine_for.cache_clear()
    driver._COMPILED.clear()
    gc.collect()


@pytest.fixture
def fully_optimised(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Any]:
    """For the runs whose cost is their running time: in this test, every ahead-of-time compilation (the
    driver's steps) is at XLA's default optimisation instead of the suite's -O0 (``SUITE_XLA_FLAGS``), and
    ``fully_optimised(vmc)`` returns ``vmc`` (a ``VMC``) whose ``step`` and ``evaluate`` are too (a jit around
    the engine's own jitted functions carries the compiler option, and the whole program compiles with it)."""
    import jax

    compile_lowered = jax.stages.Lowered.compile

    def compile_fully(self: Any, compiler_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return compile_lowered(self, {**FULL_OPTIMISATION, **(compiler_options or {})}, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", compile_fully)

    def apply(vmc: Any) -> Any:
        engine = vmc.engine  # a frozen dataclass: its cached properties live in its __dict__
        for name, static in (("multi_step", 2), ("evaluate_fn", 3)):
            fn = jax.jit(getattr(engine, name), static_argnums=static, compiler_options=FULL_OPTIMISATION)
            monkeypatch.setitem(engine.__dict__, name, fn)
        return vmc

    return apply


DIE_WITH_PARENT = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "  # PR_SET_PDEATHSIG
                   "os.execvp(sys.argv[1], sys.argv[1:])")


def dying_with_this_process(command: list[str]) -> list[str]:
    """``command`` started so that Linux sends it SIGTERM when the pytest process that started it ends:
    a crashed or killed worker leaves no served lab computing behind it.  (A small Python sets the
    signal and execs the command; ``preexec_fn`` would run Python in a forked copy of a threaded JAX
    process.)"""
    return [sys.executable, "-c", DIE_WITH_PARENT, *command]


def run_nqs(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m nqs_core ARGS`` as a user runs it: a subprocess with this interpreter."""
    return subprocess.run([sys.executable, "-m", "nqs_core", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def nqs_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``nqs ARGV`` in this process: (exit code, stdout, stderr); argparse's exits included."""
    from nqs_core.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@contextlib.contextmanager
def compilations(recording: Callable[[], bool] = lambda: True) -> Iterator[list[str]]:
    """The names of the programs XLA compiles (or reads back from the persistent cache) inside the block,
    those while ``recording()`` holds."""
    import jax

    names: list[str] = []

    def on_compile(event: str, duration: float, **kw: Any) -> None:
        if event.endswith("backend_compile_duration") and recording():
            names.append(kw.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(on_compile)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(on_compile)


def poll_until(step: Callable[[], Any], predicate: Callable[[], bool], timeout: float, what: str,
               status: Callable[[], str] = lambda: "") -> None:
    """Call ``step()`` (a tick, a drain) until ``predicate()`` holds; fail naming ``what`` after ``timeout`` s.

    The timeout only guards against a hang: the tests assert what happened, never how long it took.
    """
    t_end = time.monotonic() + timeout
    while True:
        step()
        if predicate():
            return
        if time.monotonic() > t_end:
            pytest.fail(f"timed out after {timeout} s waiting for {what} {status()}".rstrip())
        time.sleep(POLL_INTERVAL)  # a poll interval, not a wait for something not to happen


def tick_until(lab: Any, predicate: Callable[[], bool], timeout: float, what: str,
               each: Callable[[], Any] | None = None) -> None:
    """Run the lab's periodic callback until ``predicate()`` holds, calling ``each()`` after every tick."""

    def step() -> None:
        lab.tick()
        if each is not None:
            each()

    poll_until(step, predicate, timeout, what, status=lambda: f"({lab.runner.status_text()})")


def run_lab_to_end(lab: Any, timeout: float = 180.0) -> None:
    """Tick ``lab`` until its worker has ended in a final phase, then once more: "done" may come in the tick
    before the worker queued its result, and that tick drains what the ended worker left (its final
    pictures and the result, hence ``lab.summary``)."""
    ended = lambda: not lab.runner.alive and lab.runner.phase in ("done", "stopped", "diverged", "error")  # noqa: E731
    tick_until(lab, ended, timeout, "the run to end")
    lab.tick()


def translation_matrix(lattice: Any, codes: Any, t: int) -> Any:
    """Dense permutation matrix of translation ``t`` on the sorted basis ``codes``: (T ψ)(σ) = ψ(shift(σ, r_t))."""
    import numpy as np

    from nqs_core.basis import decode, encode

    target = np.searchsorted(codes, encode(decode(codes, lattice.n_sites)[:, lattice.translations[t]]))
    m = np.zeros((len(codes), len(codes)))
    m[np.arange(len(codes)), target] = 1.0
    return m


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NQS_CACHE_DIR in a fresh directory: references (and the compiled programs of subprocesses) are
    computed, not found.  This process keeps the compilation cache it started with (``pytest_configure``)."""
    monkeypatch.setenv("NQS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def refuse_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ED and DMRG raise: an answer must come from the cache or the shipped table."""
    import nqs_core.references as refs

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("computed a reference where a stored one was expected")

    monkeypatch.setattr(refs, "exact_diagonalization", refuse)
    monkeypatch.setattr(refs, "run_dmrg", refuse)


@pytest.fixture
def no_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the whole test: references come from the cache or the table (see refuse_computing)."""
    refuse_computing(monkeypatch)
