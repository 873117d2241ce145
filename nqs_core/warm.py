"""Warm start: compile the steps of the engine's default and of the presets into JAX's persistent
compilation cache (``nqs_core.compile_cache``), so the first Run of the day loads them from disk.

Each configuration runs once through ``driver.run`` with ``steps = steps_per_call`` (one fused call,
the program the lab's worker compiles) and its final evaluation, so what lands in the cache is exactly
what a run later asks for, in any process that shares the cache folder (the lab's worker processes
included).  ``nqs warm`` calls it; the served lab starts it in a background process
(``app/warm_start.py``, ``make lab`` / ``make class``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from nqs_core.compile_cache import enable_compile_cache
from nqs_core.presets import get_preset, presets
from nqs_core.settings import RunSettings


def warm_settings(groups: tuple[str, ...] = ("talk",), names: tuple[str, ...] = ()) -> list[tuple[str, RunSettings]]:
    """(name, settings) of the engine's default and of every preset in ``groups`` (or only the presets
    ``names``), each cut to one fused call."""
    if names:
        named = [(n, get_preset(n).settings()) for n in names]
    else:
        named = [("default", RunSettings())] + [(p.name, p.settings()) for g in groups for p in presets(g)]
    return [(name, s.replace(steps=s.steps_per_call, time_budget=None)) for name, s in named]


def files_in(folder: Path | None) -> int:
    """How many compiled programs the cache folder holds (0 without one)."""
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder is not None and folder.exists() else 0


def warm(groups: tuple[str, ...] = ("talk",), names: tuple[str, ...] = (),
         say: Callable[[str], None] = print) -> dict[str, float]:
    """Compile (or load from the cache) every configuration of ``warm_settings(groups, names)``; seconds
    per name."""
    from nqs_core.driver import run  # local: the engine loads only when warming

    folder = enable_compile_cache()
    if folder is None:
        say("warm: the persistent compilation cache is off (NQS_COMPILE_CACHE=0): nothing to warm")
        return {}
    seconds = {}
    for name, settings in warm_settings(groups, names):
        t0, before = time.perf_counter(), files_in(folder)
        run(settings, reference=False)
        seconds[name] = time.perf_counter() - t0
        say(f"warm: {name}: {seconds[name]:.1f} s, {files_in(folder) - before} new programs in {folder}")
    return seconds
