"""Worker processes forked from one fork server that imported the engine once (``multiprocessing``'s
forkserver start method).

A spawned process starts a fresh interpreter and imports JAX and the engine (about 3 s of CPU), and
under ``panel serve`` the server's main module (Panel) as well: on every Run and every DMRG reference.
The fork server imports :data:`PRELOAD` once, and each worker is a fork of it.  None of these modules
starts JAX's runtime (no thread pool, no device) on import, so forking from that server is safe
(``tests/test_executors.py``).  A process has one fork server and its preload is fixed when it starts,
so every user takes its context from :func:`context`: the run workers (``executors.ProcessExecutor``)
and the DMRG jobs (``references.dmrg.DMRGJob``).  TeNPy is not preloaded: it would delay the first Run
of a served lab by 1.5–2.5 s (the preload took 4.3–6.1 s without it, 6.9–7.3 s with it), and a DMRG job
imports it in ~2.5 s itself.

A forked worker's parent is the fork server, which lives as long as any of its children, so a worker
cannot watch its parent to learn that its caller died: it watches a pipe whose sending end only the
caller holds (:func:`caller_pipe`, :func:`adopt_caller`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from multiprocessing.context import ForkServerContext

PRELOAD = ["nqs_core.driver", "nqs_core.executors", "nqs_core.references.dmrg"]


def context() -> ForkServerContext:
    """The forkserver context, with :data:`PRELOAD` set (it takes effect when the server starts)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start() -> None:
    """Start the fork server now (it imports :data:`PRELOAD`), not at the first worker."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


def caller_pipe(ctx: ForkServerContext) -> tuple[multiprocessing.connection.Connection,
                                                 multiprocessing.connection.Connection]:
    """(the worker's end, the caller's end) of a pipe that is never written: pass the first to the worker
    (:func:`adopt_caller`) and close it here once the worker started; keep the second as long as the
    worker may run.  Its end of file tells the worker that the caller is gone."""
    return ctx.Pipe(duplex=False)


def _exit_with_caller(watch: multiprocessing.connection.Connection) -> None:
    try:
        watch.recv()
    except (EOFError, OSError):
        pass
    os._exit(3)


def adopt_caller(env: dict[str, str], watch: multiprocessing.connection.Connection, nice: int = 0) -> None:
    """In the worker: take the caller's environment of now (the fork server's is that of its own start),
    lower this process's priority by ``nice``, and end at once when the caller is gone (killed: nobody
    would read the results)."""
    os.environ.clear()
    os.environ.update(env)
    if nice:
        os.nice(nice)
    threading.Thread(target=_exit_with_caller, args=(watch,), daemon=True, name="nqs-orphan-watch").start()


__all__ = ["PRELOAD", "adopt_caller", "caller_pipe", "context", "start"]
