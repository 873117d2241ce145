"""A session's run as the slide exports and the Metropolis movie see it.

``Lab.snapshot()`` takes it on the event loop (10 Hz, so it copies nothing); the export buttons
(:mod:`app.export_panel`) and the movie (:mod:`app.views.movie`) read it, and a build in a worker
thread copies the history it needs first.  Nothing here touches Panel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from nqs_core.settings import RunSettings


@dataclass(frozen=True)
class RunSnapshot:
    """The run of a session: its settings (None before any run or load), history, reference, summary,
    this session's checkpoint file of it (written every 2 s, on Pause and at the end; it may not exist
    yet), and the worker's phase."""

    settings: RunSettings | None
    history: Sequence[Any]
    reference: dict[str, Any] | None
    summary: dict[str, Any] | None
    checkpoint: Path | None
    phase: str
    alive: bool

    @functools.cached_property
    def checkpoint_mtime(self) -> int | None:
        """The checkpoint's modification time (ns), None while there is none."""
        try:
            return self.checkpoint.stat().st_mtime_ns if self.checkpoint is not None else None
        except OSError:
            return None

    @property
    def settled(self) -> bool:
        """No step will change the run while it is exported: paused, or ended (its summary arrived; the
        worker may still be finishing its last pictures), or no run at all."""
        return not self.alive or self.phase == "paused" or self.summary is not None


__all__ = ["RunSnapshot"]
