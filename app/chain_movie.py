"""The lab's Metropolis movies, computed off the event loop.

A movie is ``nqs_core.exports.movie.chain_trajectory``: the run's own sampler, one chain, one Metropolis
sub-step per frame, started from the chain's configuration, PRNG key and parameters in this session's
checkpoint (written by the driver every 2 s, on Pause and at the end).  :class:`ChainMovies` computes
one in a background thread on request and hands it over once (``take``, on the event loop); a reset
(``forget``) drops a movie of an earlier run that is still being computed.  Nothing here touches Panel.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from app.snapshot import RunSnapshot
from nqs_core.exports.movie import Trajectory

log = logging.getLogger("nqs_lab.movie")
MOVIE_STEPS = 120  # Metropolis sub-steps per movie (the lab's and the exported one)


@dataclass(frozen=True)
class Movie:
    """A computed trajectory and the run step of the checkpoint it starts from (or why there is none)."""

    trajectory: Trajectory | None
    step: int | None
    error: str = ""


class ChainMovies:
    """Computes one movie at a time from a run's checkpoint (see the module docstring)."""

    def __init__(self, steps: int = MOVIE_STEPS, chain: int = 0) -> None:
        self.steps, self.chain = steps, chain
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._result: Movie | None = None
        self._generation = 0
        self.used_mtime: int | None = None  # the checkpoint version the last request read

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request(self, snap: RunSnapshot) -> bool:
        """Start computing a movie from ``snap``'s checkpoint; False while another is being computed."""
        if self.busy or snap.settings is None or snap.checkpoint is None:
            return False
        generation, settings, path = self._generation, snap.settings, snap.checkpoint
        self.used_mtime = snap.checkpoint_mtime

        def work() -> None:
            from nqs_core.checkpoint import load_checkpoint
            from nqs_core.exports.movie import chain_trajectory

            try:
                ckpt = load_checkpoint(path)
                movie = Movie(chain_trajectory(settings, ckpt, self.steps, self.chain), ckpt.step)
            except Exception as err:  # shown under the movie; never breaks the session
                log.warning("Metropolis movie failed: %s: %s", type(err).__name__, err)
                movie = Movie(None, None, f"{type(err).__name__}: {err}")
            with self._lock:
                if generation == self._generation:
                    self._result = movie

        self._thread = threading.Thread(target=work, daemon=True, name="nqs-movie")
        self._thread.start()
        return True

    def take(self) -> Movie | None:
        """The movie computed since the last call, once."""
        with self._lock:
            movie, self._result = self._result, None
        return movie

    def forget(self) -> None:
        """A new run (or Reset): a movie still being computed is dropped."""
        with self._lock:
            self._generation += 1
            self._result = None
        self.used_mtime = None


__all__ = ["ChainMovies", "Movie", "MOVIE_STEPS"]
