"""Exact diagonalisation by Lanczos (scipy ``eigsh``), momentum-resolved with translation symmetry.

Periodic lattices: the basis (Sᶻ = 0 sector for Heisenberg/J1-J2, full space for the TFIM) is
split into translation orbits, each represented by its smallest code r (Sandvik, AIP Conf. Proc.
1297, 135 (2010), §4).  The momentum-k state of r is
    |r, k⟩ = n_r^{-1/2} Σ_{σ ∈ orbit(r)} e^{ik·a(σ)} |σ⟩,   σ = shift(r, a(σ)),
which exists iff e^{ik·a} = 1 on the stabiliser of r (n_r = orbit size).  Its amplitudes obey
ψ(shift(σ, b)) = e^{ik·b} ψ(σ), the convention of docs/ARCHITECTURE.md.  Because H commutes
with translations,
    ⟨r', k|H|r, k⟩ = √(n_r/n_r') Σ_{τ ∈ orbit(r')} e^{−ik·a'(τ)} ⟨τ|H|r⟩,
so the connected configurations of each representative (one call of ``Hamiltonian.connected``)
give every momentum block.  H is real, so E(k) = E(−k) and only one of each pair is solved.
Open boundaries have no translations: the plain sparse matrix (``basis.sparse_matrix``) is used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import scipy
import scipy.linalg
import scipy.special
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from nqs_core.basis import connected_kernel, decode, encode, sparse_matrix
from nqs_core.hamiltonians import Hamiltonian
from nqs_core.lattice import Lattice

# Largest problems ED accepts: basis codes enumerated before the symmetry reduction.
MAX_SITES_SZ0_PERIODIC = 24  # 2.7e6 codes, ≈1.1e5 per momentum sector
MAX_SITES_FULL_PERIODIC = 22  # 4.2e6 codes, ≈1.9e5 per momentum sector
MAX_PLAIN_DIM = 800_000  # open boundaries: no reduction (Sᶻ = 0 up to 22 sites, full space up to 19)
DENSE_BELOW = 400  # blocks smaller than this are diagonalised densely


@dataclass
class EDResult:
    """Ground energy, lowest energy per momentum sector (ordered as ``lattice.momenta()``), and
    optionally the ground-state vector on ``sector_codes`` (= ``basis.basis_codes``) ordering."""

    energy: float
    sector_energies: np.ndarray
    momenta: np.ndarray
    ground_momentum: np.ndarray
    dim: int  # dimension of the Sᶻ = 0 sector / full space
    block_dims: np.ndarray  # dimension of each momentum block
    seconds: float
    vector: np.ndarray | None = field(default=None, repr=False)
    codes: np.ndarray | None = field(default=None, repr=False)


def sector_codes(n_sites: int, sz_zero: bool) -> np.ndarray:
    """Sorted codes of the Sᶻ = 0 sector or of the full space (the same as ``basis.basis_codes``)."""
    if n_sites > 30:
        raise ValueError(f"cannot enumerate a basis of {n_sites} sites")
    codes = np.arange(2**n_sites, dtype=np.int64)
    if sz_zero:
        if n_sites % 2:
            raise ValueError(f"the Sᶻ = 0 sector needs an even number of sites; got {n_sites}")
        codes = codes[np.bitwise_count(codes) == n_sites // 2]
    return codes


def ed_problem(ham: Hamiltonian) -> str | None:
    """Why ED cannot handle ``ham`` (a message naming the limit), or None if it can."""
    lat, n = ham.lattice, ham.lattice.n_sites
    if ham.conserves_sz and n % 2:
        return f"L must give an even number of sites for the Sᶻ = 0 sector; got {n} sites"
    if lat.pbc:
        limit = MAX_SITES_SZ0_PERIODIC if ham.conserves_sz else MAX_SITES_FULL_PERIODIC
        if n > limit:
            return f"method=ed handles at most {limit} sites for periodic {ham.name}; got {n}"
        return None
    dim = int(scipy.special.comb(n, n // 2, exact=True)) if ham.conserves_sz else 2**n
    if dim > MAX_PLAIN_DIM:
        return f"method=ed with open boundaries handles at most {MAX_PLAIN_DIM} basis states; {ham.name} on {n} sites has {dim}"
    return None


def translate_codes(codes: np.ndarray, lattice: Lattice, t: int) -> np.ndarray:
    """Codes of shift(σ, r_t) for configurations given by ``codes`` (bit i = [σ_i = +1])."""
    if t == 0:
        return codes
    if lattice.kind == "chain":  # shift(σ, r)_i = σ_{i+r}: a cyclic right rotation of the bits
        r, L = int(lattice.displacements[t][0]), lattice.L
        mask = (1 << L) - 1
        return ((codes >> r) | (codes << (L - r))) & mask
    perm = lattice.translations[t]
    out = np.zeros_like(codes)
    for i, p in enumerate(perm):
        out |= ((codes >> int(p)) & 1) << i
    return out


def _eigh_lowest(block: sp.spmatrix, want_vector: bool) -> tuple[float, np.ndarray | None]:
    dim = block.shape[0]
    if dim < DENSE_BELOW:
        w, v = scipy.linalg.eigh(block.toarray())
        return float(w[0]), v[:, 0]
    v0 = np.random.default_rng(0).standard_normal(dim).astype(block.dtype)
    w, v = sla.eigsh(block, k=1, which="SA", v0=v0, tol=0.0)
    return float(w[0]), v[:, 0]


def _fix_phase(v: np.ndarray) -> np.ndarray:
    """Deterministic global phase: the largest component real and positive."""
    i = int(np.argmax(np.abs(v)))
    return v * (abs(v[i]) / v[i])


def _plain_ed(ham: Hamiltonian, want_vector: bool) -> EDResult:
    start = time.perf_counter()
    codes = sector_codes(ham.lattice.n_sites, ham.conserves_sz)
    energy, vec = _eigh_lowest(sparse_matrix(ham, codes), want_vector)
    vec = _fix_phase(vec).real if want_vector else None
    return EDResult(
        energy=energy, sector_energies=np.array([energy]), momenta=ham.lattice.momenta(),
        ground_momentum=ham.lattice.momenta()[0], dim=len(codes), block_dims=np.array([len(codes)]),
        seconds=time.perf_counter() - start, vector=vec, codes=codes if want_vector else None,
    )


@dataclass
class _Orbits:
    """The basis split into translation orbits (Sandvik 2010, §4): ``reps`` the sorted representatives
    (smallest code of each orbit); per code, ``rep_of_code`` its representative's index and ``t_star``
    the translation with shift(code, r_t*) = rep; per representative, ``stab`` (n_reps, |T|) its
    stabiliser and ``orbit`` its orbit size n_r = |T|/|stab|; ``disp`` the displacements r_t."""

    codes: np.ndarray
    reps: np.ndarray
    rep_of_code: np.ndarray
    t_star: np.ndarray
    stab: np.ndarray
    orbit: np.ndarray
    disp: np.ndarray

    def allowed(self, k: np.ndarray) -> np.ndarray:
        """(n_reps,) bool: |r, k⟩ exists iff e^{ik·a} = 1 on the stabiliser of r."""
        return np.all(~self.stab | (np.cos(self.disp @ k)[None, :] > 1 - 1e-9), axis=1)


def _orbits(codes: np.ndarray, lat: Lattice) -> _Orbits:
    """Orbit representatives of ``codes`` under the lattice translations (see ``_Orbits``)."""
    n_t = len(lat.displacements)
    rep_code, t_star = codes.copy(), np.zeros(len(codes), dtype=np.int32)
    for t in range(1, n_t):
        img = translate_codes(codes, lat, t)
        better = img < rep_code
        rep_code[better], t_star[better] = img[better], t
    reps = codes[rep_code == codes]
    rep_of_code = np.searchsorted(reps, rep_code).astype(np.int64)
    stab = np.stack([translate_codes(reps, lat, t) == reps for t in range(n_t)], axis=1)  # (n_reps, |T|)
    return _Orbits(codes, reps, rep_of_code, t_star, stab, n_t / stab.sum(axis=1), lat.displacements.astype(float))


def _hops(ham: Hamiltonian, orb: _Orbits, batch: int) -> tuple[np.ndarray, ...]:
    """(rows r', cols r, t*, amplitude) of every ⟨τ|H|r⟩ ≠ 0 with τ ∈ orbit(r'), amplitude scaled by
    √(n_r/n_r'): the k-independent part of ⟨r', k|H|r, k⟩ (connected configurations computed once)."""
    kernel, n = connected_kernel(ham), ham.lattice.n_sites
    rows, cols, t_of, amp = [], [], [], []
    for s in range(0, len(orb.reps), batch):
        chunk = orb.reps[s : s + batch]
        diag, sigma_p, mels = kernel(decode(chunk, n))
        idx = np.arange(s, s + len(chunk))
        rows.append(idx), cols.append(idx), t_of.append(np.zeros(len(chunk), np.int32)), amp.append(diag)
        keep = mels != 0
        if keep.any():
            pos = np.searchsorted(orb.codes, encode(sigma_p[keep]))
            # column = source rep r, row = target rep r' (H[r', r])
            cols.append(np.broadcast_to(idx[:, None], mels.shape)[keep])
            rows.append(orb.rep_of_code[pos])
            t_of.append(orb.t_star[pos])
            amp.append(mels[keep])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    amp = np.concatenate(amp) * np.sqrt(orb.orbit[cols] / orb.orbit[rows])
    return rows, cols, np.concatenate(t_of), amp


def _block(orb: _Orbits, hops: tuple[np.ndarray, ...], k: np.ndarray, ok: np.ndarray) -> sp.csr_matrix:
    """⟨r', k|H|r, k⟩ = √(n_r/n_r') Σ_τ e^{−ik·a'(τ)} ⟨τ|H|r⟩ on the allowed representatives ``ok``;
    τ = shift(r', −r_t*), so e^{−ik·a'(τ)} = e^{+ik·r_t*}."""
    rows, cols, t_of, amp = hops
    dim = int(ok.sum())
    new = -np.ones(len(orb.reps), dtype=np.int64)
    new[ok] = np.arange(dim)
    use = ok[rows] & ok[cols]
    phase = np.exp(1j * (orb.disp[t_of[use]] @ k))
    real = np.allclose(phase.imag, 0.0, atol=1e-12)
    vals = amp[use] * (phase.real if real else phase)
    return sp.csr_matrix((vals, (new[rows[use]], new[cols[use]])), shape=(dim, dim))


def _solve_sectors(orb: _Orbits, hops: tuple[np.ndarray, ...], lat: Lattice, n_axis: np.ndarray,
                   sector: tuple[int, ...] | None, want_vector: bool):
    """(sector_energies, block_dims, vectors): the lowest state of each momentum block (only ``sector``
    if given); E(k) = E(−k) for a real Hamiltonian, so of each pair only one is solved."""
    momenta = lat.momenta()
    index = {tuple(m): i for i, m in enumerate(n_axis)}
    sector_energies = np.full(len(momenta), np.nan)
    block_dims = np.zeros(len(momenta), dtype=int)
    vectors: dict[int, np.ndarray] = {}
    for i, k in enumerate(momenta):
        if sector is not None and tuple(n_axis[i]) != sector:
            continue
        partner = index[tuple((-n_axis[i]) % lat.L)]
        if sector is None and partner < i:
            sector_energies[i], block_dims[i] = sector_energies[partner], block_dims[partner]
            continue
        ok = orb.allowed(k)
        block_dims[i] = int(ok.sum())
        if block_dims[i] == 0:
            continue
        sector_energies[i], vectors[i] = _eigh_lowest(_block(orb, hops, k, ok), want_vector)
    return sector_energies, block_dims, vectors


def _ground_sector(sector_energies: np.ndarray, vectors: dict[int, np.ndarray], n_axis: np.ndarray, L: int,
                   sector: tuple[int, ...] | None) -> int:
    """Index of the answered sector: ``sector`` if given, else the lowest (or its solved partner −k)."""
    index = {tuple(m): i for i, m in enumerate(n_axis)}
    if sector is not None:
        best = index[sector]
        if best not in vectors:
            raise ValueError(f"momentum sector n = {list(sector)} (k = 2πn/L) has no states in this basis")
    else:
        best = int(np.nanargmin(sector_energies))
    if best not in vectors:  # the ground sector is the partner of a solved one
        best = index[tuple((-n_axis[best]) % L)]
    return best


def _lift_vector(orb: _Orbits, v: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The block eigenvector on every code: ψ(shift(r, a)) = e^{ik·a} ψ(r)/√n_r, a = −r_t*."""
    ok = orb.allowed(k)
    ok_idx = -np.ones(len(orb.reps), dtype=np.int64)
    ok_idx[ok] = np.arange(ok.sum())
    v = _fix_phase(v)
    r = orb.rep_of_code
    amp_rep = np.where(ok[r], v[np.maximum(ok_idx[r], 0)], 0.0) / np.sqrt(orb.orbit[r])
    psi = amp_rep * np.exp(-1j * (orb.disp[orb.t_star] @ k))
    return psi.real if np.allclose(psi.imag, 0.0, atol=1e-12) else psi


def _momentum_ed(ham: Hamiltonian, want_vector: bool, batch: int = 8192,
                 sector: tuple[int, ...] | None = None) -> EDResult:
    """All momentum blocks, or with ``sector`` (n per axis, k = 2πn/L) only that block: then the
    energy and vector are that sector's lowest and the other ``sector_energies`` are NaN."""
    start = time.perf_counter()
    lat = ham.lattice
    orb = _orbits(sector_codes(lat.n_sites, ham.conserves_sz), lat)
    hops = _hops(ham, orb, batch)
    momenta = lat.momenta()
    n_axis = np.rint(momenta * lat.L / (2 * np.pi)).astype(int) % lat.L
    sector_energies, block_dims, vectors = _solve_sectors(orb, hops, lat, n_axis, sector, want_vector)
    best = _ground_sector(sector_energies, vectors, n_axis, lat.L, sector)
    result = EDResult(
        energy=float(sector_energies[best]), sector_energies=sector_energies, momenta=momenta,
        ground_momentum=momenta[best], dim=len(orb.codes), block_dims=block_dims, seconds=0.0,
    )
    if want_vector:
        result.vector, result.codes = _lift_vector(orb, vectors[best], momenta[best]), orb.codes
    result.seconds = time.perf_counter() - start
    return result


@lru_cache(maxsize=4)
def _cached_ed(ham: Hamiltonian, want_vector: bool, sector: tuple[int, ...] | None = None) -> EDResult:
    if not ham.lattice.pbc:  # no translations: the only sector is k = 0, the global ground state
        return _plain_ed(ham, want_vector)
    return _momentum_ed(ham, want_vector, sector=sector)


def exact_diagonalization(ham: Hamiltonian, want_vector: bool = True,
                          k: tuple[float, ...] | None = None) -> EDResult:
    """Lanczos ground state of ``ham``: energy, lowest energy per momentum sector, ground vector.

    With ``k`` (units of π, e.g. ``(1,)`` for k = π; validated by ``lattice.momentum_index``) only
    that momentum block is solved: ``energy`` and ``vector`` are the lowest state *of that sector*,
    with ψ(shift(σ, a)) = e^{ik·a} ψ(σ).  Raises ValueError (naming the limit) when the problem is
    too large for ED.  Results stay in an in-memory cache (the last four requests).
    """
    problem = ed_problem(ham)
    if problem:
        raise ValueError(problem)
    sector = None
    if k is not None:
        lat = ham.lattice
        k_rad = lat.momentum_index(tuple(k))
        sector = tuple(int(x) for x in np.rint(k_rad * lat.L / (2 * np.pi)).astype(int) % lat.L)
    return _cached_ed(ham, want_vector, sector)


def provenance() -> dict[str, str]:
    return {"library": f"scipy {scipy.__version__} (ARPACK eigsh, Lanczos)", "symmetry": "translations (momentum blocks)"}
