"""Compile probe (benchmarks/compile_report.py): with ``COMPILE_PROBE_DIR`` set and this folder on
``PYTHONPATH``, every Python process (pytest workers, served labs, CLI subprocesses, run workers)
appends each XLA compilation (test, program name, seconds, cache hit) to ``$COMPILE_PROBE_DIR/<pid>.jsonl``.

JAX's compile timer (``backend_compile_duration``) also covers a program read from the persistent
compilation cache; those are recorded with ``hit = true`` (JAX reports the hit, in the same thread, before
the timer ends)."""
import json
import os
import sys
import threading

_dir = os.environ.get("COMPILE_PROBE_DIR")
if _dir:
    _path = os.path.join(_dir, f"{os.getpid()}.jsonl")
    _file = None
    _hit = threading.local()

    def _on_event(event, **kw):
        if event == "/jax/compilation_cache/cache_hits":
            _hit.value = True

    def _listener(event, duration, **kw):
        global _file
        if not event.endswith("backend_compile_duration"):
            return
        hit, _hit.value = getattr(_hit, "value", False), False
        if _file is None:
            _file = open(_path, "a", buffering=1)
            _file.write(json.dumps({"argv": sys.argv[:6]}) + "\n")
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        _file.write(json.dumps([test, kw.get("fun_name"), round(duration, 4), hit]) + "\n")

    try:
        import jax.monitoring

        jax.monitoring.register_event_listener(_on_event)
        jax.monitoring.register_event_duration_secs_listener(_listener)
    except Exception:  # a process without JAX records nothing
        pass
