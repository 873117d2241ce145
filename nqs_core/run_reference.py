"""What a run is compared with: its reference energy and the exact state, found off the hot path.

* ``find_reference``: the ground-state energy (``nqs_core.references.reference``: closed form >
  ED > DMRG > published), or, for a run projected to momentum k, the lowest energy of that
  sector by ED (``sector_reference``) where ED reaches;
* ``ReferenceLookup``: that lookup in a background thread, so a run never waits for it;
* ``ExactObserver``: fidelity |⟨ψ₀|ψ⟩|² and sign agreement against the ED ground state of the run's
  sector, on the whole basis, throttled to a small share of the run time; at the end the energy
  ⟨ψ|H|ψ⟩/⟨ψ|ψ⟩ of the final state on that basis, free of Monte Carlo noise.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

from nqs_core.basis import decode, sparse_matrix
from nqs_core.lattice import momentum_text
from nqs_core.observables import compare_with_exact, log_psi_on_basis, variational_energy
from nqs_core.problem import build_problem
from nqs_core.references import NeedsDMRG, reference
from nqs_core.references.ed import ed_problem, exact_diagonalization
from nqs_core.settings import RunSettings


def find_reference(settings: RunSettings, compute_dmrg: bool = True) -> dict[str, Any] | None:
    """The ground-state energy of the settings' Hamiltonian (``nqs_core.references.reference``:
    closed form > ED > DMRG > published), or None when there is none (or only a new DMRG run
    could answer and ``compute_dmrg`` is False)."""
    _, ham = build_problem(settings)
    if settings.k is not None and ham.lattice.pbc:
        sector = sector_reference(settings)
        if sector is not None:
            return sector
    try:
        found = dict(reference(ham, compute_dmrg=compute_dmrg))
    except NeedsDMRG:
        return None
    if settings.k is not None and ham.lattice.pbc:
        found["sector_note"] = (f"lowest energy over all momenta: ED does not reach this size, so the "
                                f"{momentum_label(settings.k)} sector is not resolved")
    return found


def momentum_label(k_over_pi: tuple[float, ...] | list[float]) -> str:
    """``k=π``, ``k=0``, ``k=(π,0)``, ``k=π/2``: a momentum given in units of π (``lattice.momentum_text``)."""
    return "k=" + momentum_text(k_over_pi, separator=",")


def sector_reference(settings: RunSettings) -> dict[str, Any] | None:
    """The lowest energy of the momentum sector ``settings.k`` by ED (method ``"ed (k=π)"``), or None
    when ED does not reach the system.  The ED result (all sectors) is cached like any reference;
    ``ground_energy`` keeps the global ground energy."""
    _, ham = build_problem(settings)
    if settings.k is None or ed_problem(ham) is not None:
        return None
    ref = dict(reference(ham, method="ed", compute_dmrg=False))
    target = np.mod(np.asarray(settings.k, dtype=float), 2.0)
    energy = None
    for sector in ref.get("sector_energies") or []:
        k = np.mod(np.asarray(sector["k_over_pi"], dtype=float), 2.0)
        d = np.abs(k - target)
        if k.shape == target.shape and np.all(np.minimum(d, 2.0 - d) < 1e-9):
            energy = float(sector["energy"])
            break
    if energy is None or not math.isfinite(energy):  # a stored entry without sector energies
        energy = float(exact_diagonalization(ham, want_vector=False, k=tuple(settings.k)).energy)
    n = ham.lattice.n_sites
    label = momentum_label(settings.k)
    return {**ref, "energy": energy, "energy_per_site": energy / n, "method": f"ed ({label})",
            "ground_energy": ref["energy"], "momentum_over_pi": [float(x) for x in settings.k],
            "sector_note": f"lowest energy of the {label} sector (global ground energy {ref['energy']:.8f})"}


def reference_detail(ref: dict[str, Any]) -> str:
    """A short provenance string: the formula, library or citation behind a reference energy."""
    prov = ref.get("provenance") or {}
    if isinstance(prov, dict):
        for key in ("formula", "citation", "library"):
            if prov.get(key):
                return str(prov[key])
    return str(prov) if prov else ""


def error_text(err: Exception) -> str:
    """Why a reference could not be had, for a person: the message of a ``ValueError`` (the references'
    own refusals, e.g. "no reference for …: too large for ED …") as it is, anything else with its type."""
    return str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"


class ReferenceLookup:
    """The reference energy, looked up in a background thread so the run does not wait for it."""

    def __init__(self, settings: RunSettings, enabled: bool, compute_dmrg: bool = True):
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        if enabled:
            self._thread = threading.Thread(target=self._work, args=(settings, compute_dmrg), daemon=True,
                                            name="nqs-reference")
            self._thread.start()

    def _work(self, settings: RunSettings, compute_dmrg: bool) -> None:
        try:
            self.result = find_reference(settings, compute_dmrg)
            if self.result is None:
                self.error = "none stored; a DMRG run is needed (nqs reference --method dmrg)"
        except Exception as err:  # a missing reference must not stop a run
            self.error = error_text(err)

    @property
    def ready(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def wait(self, timeout: float) -> dict[str, Any] | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result if self.ready else None


# the exact observer: ED must reach the system with at most this many basis states
MAX_EXACT_DIM = 200_000
EXACT_MIN_INTERVAL = 0.75  # seconds between two exact measurements, at least
EXACT_BUDGET = 0.1  # and at most this fraction of the run's time spent on them


def exact_basis_dim(settings: RunSettings) -> int:
    """Size of the basis the exact state lives on: Sᶻ = 0 (Heisenberg, J1-J2) or the full space."""
    n = settings.n_sites
    return math.comb(n, n // 2) if settings.hamiltonian in ("heisenberg", "j1j2") else 2**n


class ExactObserver:
    """Fidelity |⟨ψ₀|ψ⟩|² and sign agreement Σ|ψ₀|²[sign ψ = sign ψ₀] (``observables.compare_with_exact``)
    against the ED ground state of the run's momentum sector (``settings.k``), else the global one.

    ED (``references.ed.exact_diagonalization``, in-memory cached) runs in a background thread
    started before the model is built, together with a first (compiling) call of the network on
    the basis, so the run never waits for it.  ``due`` throttles the measurements: at most one per
    ``max(EXACT_MIN_INTERVAL, cost / EXACT_BUDGET)`` seconds, plus the last step.

    ``cancel()`` (the driver calls it when the run ends, also when building the model raised) ends
    the thread at its next stage: before ED, after ED, or while it waits for the model; the
    Lanczos call itself is not interruptible (≤ ~1 s at ``MAX_EXACT_DIM`` on one core).
    """

    def __init__(self, settings: RunSettings, enabled: bool):
        self.settings = settings
        self.psi0: np.ndarray | None = None
        self.configs: np.ndarray | None = None
        self.codes: np.ndarray | None = None  # of ``configs``
        self.hamiltonian: Any = None  # the run's Hamiltonian, built by the background thread
        self.matrix: Any = None  # H on the basis of ``configs`` (scipy.sparse), built by ``energy``
        self.log_psi: np.ndarray | None = None  # of the last ``measure``
        self.label: str | None = None
        self.error: str | None = None
        self.cost = 0.0  # seconds of the last measurement
        self.total = 0.0  # seconds spent measuring in the run loop
        self._last = -math.inf
        self._apply: Any = None
        self._thread: threading.Thread | None = None
        self._model_ready = threading.Event()
        self._cancelled = threading.Event()
        self._warm_params: Any = None
        if enabled and self.reachable(settings) and jax.process_count() == 1:
            self._thread = threading.Thread(target=self._work, daemon=True, name="nqs-exact")
            self._thread.start()

    @staticmethod
    def reachable(settings: RunSettings) -> bool:
        if exact_basis_dim(settings) > MAX_EXACT_DIM:
            return False
        return ed_problem(build_problem(settings)[1]) is None

    def set_model(self, apply: Callable[..., Any], params: Any) -> None:
        """The network (jitted here once) and parameters of the right shapes to compile it with."""
        self._apply = jax.jit(apply)
        self._warm_params = params
        self._model_ready.set()

    def cancel(self) -> None:
        """Stop the background work at its next stage (no effect on a finished observer)."""
        self._cancelled.set()
        self._model_ready.set()  # wake a thread waiting for a model that will never come

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _work(self) -> None:
        try:
            if self.cancelled:
                return
            lattice, ham = build_problem(self.settings)
            k = tuple(self.settings.k) if self.settings.k is not None and lattice.pbc else None
            res = exact_diagonalization(ham, want_vector=True, k=k)
            configs = decode(res.codes, lattice.n_sites)
            self._model_ready.wait()
            if self.cancelled:
                return
            log_psi_on_basis(self._apply, self._warm_params, configs[: self.batch(len(configs))])  # compile
            self.hamiltonian, self.configs, self.codes, self.psi0 = ham, configs, res.codes, res.vector
            self.label = (f"ed ({momentum_label(self.settings.k)})" if k is not None else "ed") + \
                f", {len(configs)} basis states"
        except Exception as err:  # the observer must never stop a run
            self.error = error_text(err)
        finally:
            if self.cancelled and self.psi0 is None and self.error is None:
                self.error = "cancelled: the run ended before the exact state was ready"

    @staticmethod
    def batch(dim: int) -> int:
        return min(dim, 4096)

    @property
    def ready(self) -> bool:
        return self.psi0 is not None

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the exact state; True when it is ready."""
        if self._thread is not None and timeout > 0:
            self._thread.join(timeout)
        return self.ready

    @property
    def working(self) -> bool:
        """Whether the background thread is still running."""
        return self._thread is not None and self._thread.is_alive()

    def due(self, last_call: bool) -> bool:
        if not self.ready:
            return False
        return last_call or time.perf_counter() - self._last >= max(EXACT_MIN_INTERVAL, self.cost / EXACT_BUDGET)

    def measure(self, params: Any) -> tuple[float, float]:
        """(fidelity, sign agreement) of the state with ``params``; timed for the throttle."""
        t0 = time.perf_counter()
        self.log_psi = log_psi_on_basis(self._apply, params, self.configs, self.batch(len(self.configs)))
        out = compare_with_exact(self.log_psi, self.psi0)
        self._last = time.perf_counter()
        self.cost = self._last - t0
        self.total += self.cost
        return out

    def energy(self) -> float:
        """⟨ψ|H|ψ⟩/⟨ψ|ψ⟩ of the last measured state on the whole basis (the Sᶻ = 0 sector for
        Sᶻ-conserving models: the state the sampler explores); H is built here, once, at the run's end."""
        if self.matrix is None:
            self.matrix = sparse_matrix(self.hamiltonian, self.codes)
        return variational_energy(self.log_psi, self.matrix)
