"""Per-configuration pictures of a state (sign per sampled σ, translation eigenvalue), live and final.

The engine reports per-step numbers (``StepRecord.marshall_agreement``, ``translation_eigenvalue``,
``sign_agreement``) but no amplitudes, and its events carry no parameters.  The per-configuration
sign picture needs log ψ(σ) of the shown samples, so during a run it is computed here from the
engine's own checkpoint, which the worker asks the driver to write every few seconds
(``run(..., checkpoint_every=...)``) and which the driver also writes on Pause:

* :class:`LivePictures` runs in its own thread next to the worker, watches the checkpoint file
  and, when it changed, restores the parameters (``nqs_core.checkpoint``) and evaluates
  ``model.apply`` on the latest sampled configurations; the payload names both the parameter
  step and the sample step, since they can differ by one fused call.
* :func:`final_pictures` does the same from the finished ``RunResult`` (in the worker thread), and
  adds the final state's ``correlation_map`` (``nqs_core.state_observables``).

Targets: Marshall's sign (−1)^{N↑ on A} for Heisenberg / J1-J2 on a bipartite lattice, the
positive sign for the TFIM (its ground state is positive), none otherwise.
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nqs_core.settings import RunSettings

log = logging.getLogger("nqs_lab.pictures")
N_CONFIGURATIONS = 64


def sign_target(settings: RunSettings, lattice: Any, samples: np.ndarray) -> tuple[np.ndarray, str] | None:
    """(target sign ±1 per configuration, its name), or None when there is no known sign rule."""
    from nqs_core.observables import marshall_phase

    if settings.hamiltonian == "tfim":
        return np.ones(len(samples), dtype=int), "positive"
    if lattice.is_bipartite:
        phase = np.asarray(marshall_phase(samples, lattice))
        return np.where(np.round(phase / np.pi) % 2 == 0, 1, -1), "Marshall"
    return None


def state_pictures(vmc: Any, params: Any, samples: np.ndarray, with_translation: bool = True) -> dict[str, Any]:
    """Payloads ``configurations`` (log ψ, target, target name) and ``final_translation`` for
    the configurations ``samples`` (n, N) under ``params``."""
    samples = np.asarray(samples)
    log_psi = np.asarray(_apply(vmc)(params, samples))
    out: dict[str, Any] = {}
    if with_translation and vmc.lattice.pbc:
        ev = np.asarray(_translations(vmc)(params, samples))
        out["final_translation"] = {"value": complex(ev[0]), "n_samples": len(samples)}
    target = sign_target(vmc.settings, vmc.lattice, samples)
    if target is not None:
        out["configurations"] = {"log_psi": log_psi, "target": target[0], "target_name": target[1]}
    return out


# jitted functions per engine, held no longer than the engine: keyed by the engine object itself (an id
# could be recycled by a new engine after the engine cache evicted the old one, and hand one model's
# function to another), weakly, so these caches never keep an evicted engine alive
_APPLY: "weakref.WeakKeyDictionary[Any, Callable]" = weakref.WeakKeyDictionary()
_TRANSLATIONS: "weakref.WeakKeyDictionary[Any, Callable]" = weakref.WeakKeyDictionary()
_APPLY_LOCK = threading.Lock()  # the worker and the live-picture thread of every session use them


def _per_engine(table: "weakref.WeakKeyDictionary[Any, Callable]", vmc: Any, build: Callable[[], Callable]) -> Callable:
    with _APPLY_LOCK:
        fn = table.get(vmc.engine)
        if fn is None:
            fn = table[vmc.engine] = build()
        return fn


def _apply(vmc: Any) -> Callable:
    """``jax.jit(model.apply)``, one per engine (compiled once per configuration count)."""
    import jax

    return _per_engine(_APPLY, vmc, lambda: jax.jit(vmc.model.apply))


def _translations(vmc: Any) -> Callable:
    """``(params, samples) → translation eigenvalues`` per axis (``observables.translation_eigenvalues``) as one
    jitted program per engine: run eagerly, its network passes and shifts compiled 50–80 single primitives
    in every process that drew a final picture (4–8 s on a loaded 2-core machine), none of them cached."""
    import jax

    from nqs_core.observables import translation_eigenvalues

    model, lattice = vmc.model, vmc.lattice  # not the engine: the table's value must not hold its key
    return _per_engine(_TRANSLATIONS, vmc,
                       lambda: jax.jit(lambda params, samples: translation_eigenvalues(model.apply, params, samples,
                                                                                       lattice)))


def final_pictures(result: Any, n_max: int = N_CONFIGURATIONS) -> dict[str, Any]:
    """The pictures of a finished run's final state (the Runner's ``after`` hook, worker thread)."""
    from nqs_core.vmc import VMC

    if not result.history:
        return {}
    vmc = VMC(result.settings)
    samples = np.asarray(vmc.samples(result.state, n_max))
    out = state_pictures(vmc, result.state.params, samples)
    if "configurations" in out:
        out["configurations"]["label"] = f"final state after step {result.history[-1].step}"
    try:  # the final state's correlation map (fresh samples), beside S(q) in the Momentum view
        from nqs_core.state_observables import state_observables

        observables = state_observables(vmc.engine, result.settings, result.state)
        out["correlation_map"] = np.asarray(observables["correlation_map"], dtype=float)
    except Exception as err:  # a picture must never break the run
        log.warning("final correlation map failed: %s: %s", type(err).__name__, err)
    return out


class LivePictures:
    """Watches a run's checkpoint and computes the per-configuration sign picture while it runs.

    ``add_samples(step, samples)`` is called by the worker's callback with every sample set;
    ``emit(name, payload)`` receives the pictures (from this object's thread).  ``stop()`` ends it.
    """

    def __init__(self, settings: RunSettings, checkpoint: str | Path, emit: Callable[[str, Any], None],
                 period: float = 1.0, n_max: int = N_CONFIGURATIONS):
        self.settings, self.checkpoint, self._emit = settings, Path(checkpoint), emit
        self.period, self.n_max = period, n_max
        self._lock = threading.Lock()
        self._samples: list[tuple[int, np.ndarray]] = []
        self._stop = threading.Event()
        self._seen: tuple[int, int] | None = self._version()  # ignore a checkpoint left from an earlier run
        self.computed = 0
        self._thread = threading.Thread(target=self._loop, daemon=True, name="nqs-live-pictures")
        self._thread.start()

    def _version(self) -> tuple[int, int] | None:
        """The checkpoint file's (mtime, inode): every save replaces the file by a new one
        (``write_atomically``), so two saves within one tick of the file system's clock still differ."""
        try:
            st = self.checkpoint.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def add_samples(self, step: int, samples: np.ndarray) -> None:
        with self._lock:
            self._samples.append((int(step), np.asarray(samples)))
            total = sum(len(s) for _, s in self._samples)
            while len(self._samples) > 1 and total - len(self._samples[0][1]) >= self.n_max:
                total -= len(self._samples.pop(0)[1])

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread:
        """The thread that reads the checkpoint (the session's folder outlives it)."""
        return self._thread

    def _loop(self) -> None:
        vmc = template = None
        while not self._stop.wait(self.period):
            version = self._version()
            if version is None or version == self._seen:
                continue
            with self._lock:
                pending = list(self._samples)
            if not pending:
                continue
            self._seen = version
            try:
                from nqs_core.checkpoint import load_checkpoint, restore_state
                from nqs_core.vmc import VMC

                if vmc is None:
                    vmc = VMC(self.settings)
                    template = vmc.init()
                ckpt = load_checkpoint(self.checkpoint)
                state = restore_state(ckpt, template)
                samples = np.concatenate([s for _, s in pending])[-self.n_max:]
                out = state_pictures(vmc, state.params, samples, with_translation=False)
                if "configurations" in out:
                    out["configurations"]["label"] = (f"parameters after step {ckpt.step} (checkpoint), samples "
                                                      f"of steps {pending[0][0]}–{pending[-1][0]}")
                    self._emit("configurations", out["configurations"])
                    self.computed += 1
            except Exception as err:  # a picture must never break the run
                log.warning("live sign picture failed: %s: %s", type(err).__name__, err)


__all__ = ["LivePictures", "final_pictures", "state_pictures", "sign_target", "N_CONFIGURATIONS"]
