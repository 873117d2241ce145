"""What the exact (ED) ground state says about a system, and how close a network is to it.

For settings whose basis ED reaches (``run_reference.MAX_EXACT_DIM`` states: Sᶻ = 0 for Heisenberg and
J1-J2, the full space for the TFIM), ``exact_state`` diagonalises the run's momentum sector (``settings.k``
on a periodic lattice, else the global ground state; scipy Lanczos, ``nqs_core.references.ed``) and
``exact_observables`` evaluates, with the weights |ψ₀(σ)|² on the whole basis (no sampling error):

* ``energy_per_site`` E₀/N;
* TFIM: ``magnetisation`` ⟨|Σσᶻ|⟩/N and ``sigma_x`` ⟨σˣ⟩ (site average; ψ₀ on the full basis, where
  σ^i has code(σ) XOR 2^i);
* ``correlation_map``: ⟨σᶻ_0σᶻ_r⟩ (TFIM) or ⟨S_0·S_r⟩ (S·S models) on the lattice
  (``correlations.by_displacement``: translation-averaged when periodic);
* S·S models: ``structure_factor`` S(q) = ⟨|Σ_i e^{iq·r_i}σ_i|²⟩/(4N) on every allowed q with its peak,
  ``marshall_agreement`` Σ|ψ₀|²[sign ψ₀ = (−1)^{N↑_A}] (best global phase; 1 where Marshall's rule holds,
  bipartite lattices only) and ``ground_momentum`` k/π of the lowest sector (without ``settings.k``).

``network_vs_exact`` gives the fidelity |⟨ψ₀|ψ⟩|² and sign agreement of a network on the same basis
(``observables.compare_with_exact``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import numpy as np

from nqs_core.basis import decode
from nqs_core.correlations import by_displacement
from nqs_core.lattice import Lattice
from nqs_core.observables import best_half_plane, compare_with_exact, log_psi_on_basis, marshall_phase, structure_factor
from nqs_core.problem import build_problem
from nqs_core.references.ed import EDResult, ed_problem, exact_diagonalization
from nqs_core.run_reference import MAX_EXACT_DIM, exact_basis_dim
from nqs_core.settings import RunSettings


@dataclass
class ExactState:
    """The ED state of a run's sector: the result, its basis configurations and the lattice."""

    result: EDResult
    configs: np.ndarray  # (D, N) int8, the basis of ``result.vector``
    lattice: Lattice
    is_ising: bool
    sector: tuple[float, ...] | None  # k/π solved, or None for the global ground state

    @property
    def weights(self) -> np.ndarray:
        w = np.abs(self.result.vector) ** 2
        return w / w.sum()


def exact_problem(settings: RunSettings) -> str | None:
    """Why there is no exact state for ``settings`` (a sentence), or None when ED reaches it."""
    dim = exact_basis_dim(settings)
    if dim > MAX_EXACT_DIM:
        return f"ED reaches at most {MAX_EXACT_DIM} basis states; this system has {dim}"
    return ed_problem(build_problem(settings)[1])


class _StateCache:
    """The last exact states, by their problem (the Hamiltonian: model, lattice and couplings, and the
    momentum sector), up to ``max_bytes`` of arrays: a sweep's exact curve and its points ask for the
    same states (``app.sweep_job``, ``nqs_core.sweep``).  Thread-safe; a state is computed outside the
    lock (two threads asking at once may both compute it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._states: OrderedDict[Hashable, tuple[ExactState, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], ExactState]) -> ExactState:
        with self._lock:
            if key in self._states:
                self._states.move_to_end(key)
                self.hits += 1
                return self._states[key][0]
            self.misses += 1
        state = compute()
        size = state.configs.nbytes + sum(np.asarray(a).nbytes for a in (state.result.vector, state.result.codes)
                                          if a is not None)
        with self._lock:
            self._states[key] = (state, size)
            while len(self._states) > 1 and sum(n for _, n in self._states.values()) > self.max_bytes:
                self._states.popitem(last=False)
        return state

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
            self.hits = self.misses = 0


STATE_CACHE = _StateCache(64 << 20)  # TFIM on 12 sites: 0.2 MB a state; the largest ED basis: about 9 MB


def exact_state(settings: RunSettings) -> ExactState | None:
    """The ED ground state of the run's sector, or None beyond ED (``exact_problem``); kept in
    :data:`STATE_CACHE` by its Hamiltonian and sector (callers must not change it)."""
    if exact_problem(settings) is not None:
        return None
    lattice, ham = build_problem(settings)
    k = tuple(float(x) for x in settings.k) if settings.k is not None and lattice.pbc else None

    def compute() -> ExactState:
        res = exact_diagonalization(ham, want_vector=True, k=k)
        return ExactState(res, decode(res.codes, lattice.n_sites), lattice, ham.is_ising, k)

    return STATE_CACHE.get((ham, k), compute)


def _peak(q: np.ndarray, s_q: np.ndarray) -> dict[str, Any]:
    i = int(np.argmax(s_q))
    return {"q_over_pi": [round(float(x) / np.pi, 12) for x in q[i]], "value": float(s_q[i])}


def structure_factor_dict(samples: np.ndarray, lattice: Lattice, weights: np.ndarray | None = None) -> dict[str, Any]:
    """S(q) on every allowed q (``observables.structure_factor``) and its peak, JSON-ready."""
    q, s_q = structure_factor(samples, lattice, weights)
    s_q = np.asarray(s_q, dtype=float)
    return {"q_over_pi": [[round(float(x) / np.pi, 12) for x in k] for k in q], "values": s_q.tolist(),
            "peak": _peak(q, s_q)}


def marshall_agreement_exact(state: ExactState) -> float | None:
    """Σ|ψ₀|² [sign ψ₀ = (−1)^{N↑_A}] at the best global phase; None on a non-bipartite lattice."""
    if not state.lattice.is_bipartite:
        return None
    psi = np.asarray(state.result.vector, dtype=np.complex128)
    theta = np.angle(psi) - np.asarray(marshall_phase(state.configs, state.lattice))
    return float(best_half_plane(np.asarray(theta, dtype=float), state.weights))


def sigma_x_exact(state: ExactState) -> np.ndarray:
    """(N,) ⟨ψ₀|σˣ_i|ψ₀⟩/⟨ψ₀|ψ₀⟩ = Re Σ_σ ψ₀*(σ^i) ψ₀(σ)/Σ|ψ₀|², σ^i = σ with spin i flipped (full basis)."""
    codes, psi = state.result.codes, np.asarray(state.result.vector, dtype=np.complex128)
    norm = np.vdot(psi, psi).real
    out = []
    for i in range(state.lattice.n_sites):
        idx = np.searchsorted(codes, codes ^ (1 << i))
        out.append(np.vdot(psi[idx], psi).real / norm)
    return np.asarray(out)


def correlation_matrix_exact(state: ExactState) -> np.ndarray:
    """(N, N) ⟨σᶻ_iσᶻ_j⟩ (TFIM) or ⟨S_i·S_j⟩ = ¼⟨σ_iσ_j⟩ + ½ Re Σ_σ [σ_i ≠ σ_j] ψ₀*(σ^{ij})ψ₀(σ)/Σ|ψ₀|²
    (S·S models; σ^{ij}: spins i, j exchanged, code(σ) XOR 2^i XOR 2^j) of the exact state."""
    s, w = state.configs.astype(float), state.weights
    zz = (s * w[:, None]).T @ s
    if state.is_ising:
        return zz
    codes, psi = state.result.codes, np.asarray(state.result.vector, dtype=np.complex128)
    psi = psi / np.sqrt(np.vdot(psi, psi).real)
    out = 0.25 * zz
    for i in range(s.shape[1]):
        for j in range(i + 1, s.shape[1]):
            differ = state.configs[:, i] != state.configs[:, j]
            idx = np.searchsorted(codes, codes[differ] ^ ((1 << i) | (1 << j)))
            out[i, j] = out[j, i] = out[i, j] + 0.5 * np.vdot(psi[idx], psi[differ]).real
    np.fill_diagonal(out, 0.75)
    return out


def exact_observables(state: ExactState) -> dict[str, Any]:
    """The observables of the module docstring for one exact state (JSON-ready)."""
    res, n = state.result, state.lattice.n_sites
    out: dict[str, Any] = {"energy": float(res.energy), "energy_per_site": float(res.energy) / n,
                           "basis_dimension": int(len(state.configs)),
                           "sector": None if state.sector is None else list(state.sector)}
    if state.is_ising:
        out.update(magnetisation=float(np.sum(state.weights * np.abs(state.configs.sum(axis=1)))) / n,
                   sigma_x=float(np.mean(sigma_x_exact(state))))
    else:
        out["structure_factor"] = structure_factor_dict(state.configs, state.lattice, state.weights)
        out["marshall_agreement"] = marshall_agreement_exact(state)
    out["correlation_map"] = by_displacement(correlation_matrix_exact(state), state.lattice).tolist()
    if state.sector is None and state.lattice.pbc:
        out["ground_momentum"] = [round(float(x) / np.pi, 12) for x in res.ground_momentum]
    return out


def network_vs_exact(apply: Callable[..., Any], params: Any, state: ExactState) -> dict[str, float]:
    """Fidelity |⟨ψ₀|ψ⟩|²/(⟨ψ₀|ψ₀⟩⟨ψ|ψ⟩) and sign agreement of the network on the exact state's basis;
    ``apply`` jitted (e.g. ``jax.jit(model.apply)``, kept by the caller so it compiles once)."""
    log_psi = log_psi_on_basis(apply, params, state.configs, min(len(state.configs), 4096))
    fid, sign = compare_with_exact(log_psi, state.result.vector)
    return {"fidelity": fid, "sign_agreement": sign}


def exact_curve(settings: RunSettings, coupling: str, values: list[float] | tuple[float, ...]) -> list[dict[str, Any] | None]:
    """``exact_observables`` at each value of ``coupling`` (None where ED does not reach): the exact
    curve a sweep's points are drawn against (cheap: no VMC)."""
    out = []
    for v in values:
        state = exact_state(settings.replace(**{coupling: float(v)}))
        out.append(None if state is None else {coupling: float(v), **exact_observables(state)})
    return out
