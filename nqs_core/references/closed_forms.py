"""Closed-form ground-state energies, in DESIGN.md §2 conventions.

* Heisenberg chain, periodic, even L: Bethe ansatz (Bethe 1931).  With M = L/2 real rapidities λ_j,
      L·2 arctan(2λ_j) = 2π I_j + Σ_{l≠j} 2 arctan(λ_j − λ_l),   I_j = −(M−1)/2, …, (M−1)/2,
      E = J (L/4 − Σ_j 2/(4λ_j² + 1))
  (each magnon of momentum k, e^{ik} = (λ+i/2)/(λ−i/2), lowers E by J(1 − cos k) = 2J/(4λ²+1)).
* TFIM chain, periodic: free fermions (Pfeuty 1970).  H ≅ −J Σ XX − h Σ Z; Jordan–Wigner gives
  H = Σ_k 2(h − J cos k)(n_k − ½) + pairing; a pair (k, −k) has quasiparticle energy
  ε_k = 2√(J² + h² − 2Jh cos k).  Even fermion parity ↔ antiperiodic momenta k = (2n+1)π/L,
  odd parity ↔ periodic momenta k = 2πn/L; the ground energy is the lower of the two sectors
  with the parity constraint enforced mode by mode (valid for any sign of J and h, any L).
* TFIM chain, open: the same free fermions with the Lieb–Schultz–Mattis quadratic form,
  diagonalised numerically (E = −½ Σ_n Λ_n with Λ_n the singular values of A − B, up to the
  constant; Lieb, Schultz & Mattis 1961).
* J1-J2 chain at J2 = J1/2 > 0, periodic, even L ≥ 6: Majumdar–Ghosh (1969), E = −3/8 J1 L.

A lattice with L = 2 and periodic boundaries lists its single bond once (as ``Lattice.bonds``),
while a ring of two sites counts it twice; the formulas are evaluated with the halved coupling.
"""

from __future__ import annotations

import numpy as np

from nqs_core.hamiltonians import Hamiltonian


def bethe_rapidities(L: int, tol: float = 1e-14, max_iter: int = 200) -> np.ndarray:
    """Ground-state rapidities of the periodic spin-1/2 Heisenberg ring (M = L/2), by Newton's method."""
    if L < 2 or L % 2:
        raise ValueError(f"the Bethe ansatz ground state needs an even L ≥ 2; got {L}")
    M = L // 2
    I = np.arange(M) - (M - 1) / 2
    lam = 0.5 * np.tan(np.pi * I / L)  # non-interacting start
    for _ in range(max_iter):
        d = lam[:, None] - lam[None, :]
        F = 2 * L * np.arctan(2 * lam) - 2 * np.arctan(d).sum(axis=1) - 2 * np.pi * I
        off = 2 / (1 + d**2)
        jac = off.copy()
        np.fill_diagonal(jac, 0.0)
        jac[np.diag_indices(M)] = 4 * L / (1 + 4 * lam**2) - (off.sum(axis=1) - 2)
        step = np.linalg.solve(jac, F)
        lam = lam - step
        if np.max(np.abs(step)) < tol * max(1.0, np.max(np.abs(lam))):
            return lam
    raise RuntimeError(f"Bethe equations did not converge for L = {L}")


def heisenberg_chain_bethe(L: int, J: float = 1.0) -> float:
    """Ground energy of H = J Σ_i S_i·S_{i+1} on the periodic ring of even L sites (J > 0)."""
    lam = bethe_rapidities(L)
    return float(J * (L / 4 - np.sum(2 / (4 * lam**2 + 1))))


def _sector_minimum(pair_eps: np.ndarray, single: list[float], parity: int) -> float:
    """Lowest energy of paired modes (−ε each, parity even; breaking one costs ε) and single modes
    a(n − ½) (minimum −|a|/2, flipping costs |a|), restricted to total fermion parity ``parity``."""
    energy = -float(np.sum(pair_eps)) - 0.5 * sum(abs(a) for a in single)
    occupied = sum(1 for a in single if a < 0)
    if occupied % 2 == parity:
        return energy
    costs = list(pair_eps) + [abs(a) for a in single]
    return energy + float(min(costs))


def tfim_chain_periodic(L: int, J: float = 1.0, h: float = 1.0) -> float:
    """Ground energy of H = −J Σ_i σᶻ_i σᶻ_{i+1} − h Σ_i σˣ_i on the periodic ring of L sites."""

    def sector(momenta: np.ndarray, parity: int) -> float:
        pairs, single = [], []
        for k in momenta:
            km = np.mod(k, 2 * np.pi)
            if np.isclose(km, 0.0) or np.isclose(km, 2 * np.pi):
                single.append(2 * (h - J))
            elif np.isclose(km, np.pi):
                single.append(2 * (h + J))
            elif km < np.pi:  # one representative per pair (k, −k)
                pairs.append(2 * np.sqrt(J**2 + h**2 - 2 * J * h * np.cos(km)))
        return _sector_minimum(np.array(pairs), single, parity)

    n = np.arange(L)
    even = sector(2 * np.pi * (n + 0.5) / L, parity=0)
    odd = sector(2 * np.pi * n / L, parity=1)
    return float(min(even, odd))


def tfim_chain_open(L: int, J: float = 1.0, h: float = 1.0) -> float:
    """Ground energy of the open TFIM chain by the Lieb–Schultz–Mattis free-fermion solution.

    With H = −J Σ_{i<L-1} X_i X_{i+1} − h Σ_i Z_i and Z_i = 1 − 2c†_i c_i:
    H = Σ_ij [c†_i A_ij c_j + ½(c†_i B_ij c†_j + h.c.)] + const, A = 2h·1 − J(δ_{j,i+1} + δ_{j,i−1}),
    B = −J(δ_{j,i+1} − δ_{j,i−1}), const = −hL + ½ tr A;  E₀ = const − ½ Σ Λ_n, Λ_n = singular values of A + B.
    The overall parity constraint is automatically satisfied (open chain: no boundary twist).
    """
    A = np.diag(np.full(L, 2.0 * h))
    B = np.zeros((L, L))
    for i in range(L - 1):
        A[i, i + 1] = A[i + 1, i] = -J
        B[i, i + 1] = -J
        B[i + 1, i] = J
    lam = np.linalg.svd(A + B, compute_uv=False)
    return float(-h * L + 0.5 * np.trace(A) - 0.5 * np.sum(lam))


def majumdar_ghosh(L: int, J1: float = 1.0) -> float:
    """E = −3/8 J1 L for J2 = J1/2 > 0 on the periodic chain of even L ≥ 6 (dimer ground state)."""
    return -0.375 * J1 * L


def closed_form(ham: Hamiltonian) -> tuple[float, str] | None:
    """(energy, formula name) if a closed form covers this Hamiltonian, else None."""
    lat = ham.lattice
    if lat.kind != "chain":
        return None
    L = lat.L
    scale = 0.5 if (lat.pbc and L == 2) else 1.0  # a 2-site ring counts its bond twice
    J, J2 = ham.nn_coupling, ham.next_coupling
    if ham.is_ising:
        if lat.pbc:
            return tfim_chain_periodic(L, J * scale, ham.field), "free fermions (Pfeuty 1970), both parity sectors"
        return tfim_chain_open(L, J, ham.field), "free fermions, open chain (Lieb, Schultz & Mattis 1961)"
    if not (lat.pbc and L % 2 == 0 and J > 0):
        return None
    if J2 == 0:
        return heisenberg_chain_bethe(L, J * scale), "Bethe ansatz (Bethe 1931), finite-L Bethe equations"
    if L >= 6 and J2 == 0.5 * J:
        return majumdar_ghosh(L, J), "Majumdar-Ghosh dimer state (Majumdar & Ghosh 1969): E = -3/8 J1 N"
    return None
