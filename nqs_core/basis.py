"""Enumerated bases (the Sᶻ = 0 sector or the full 2^N space) and sparse Hamiltonian matrices.

A configuration σ ∈ {+1, −1}^N is encoded as the integer Σ_i [σ_i = +1] 2^i; basis states are
kept sorted by code so that a connected configuration is found by binary search.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from typing import Callable

import jax
import numpy as np
import scipy.sparse as sp

from nqs_core.hamiltonians import Hamiltonian


def encode(sigma: np.ndarray) -> np.ndarray:
    """Integer code of configurations (..., N) with entries ±1 (bit i set when σ_i = +1)."""
    bits = (np.asarray(sigma) > 0).astype(np.int64)
    return bits @ (1 << np.arange(bits.shape[-1], dtype=np.int64))


def decode(codes: np.ndarray, n_sites: int) -> np.ndarray:
    """Configurations (len(codes), N) as int8 ±1 from integer codes."""
    bits = (np.asarray(codes, dtype=np.int64)[:, None] >> np.arange(n_sites)) & 1
    return (2 * bits - 1).astype(np.int8)


def basis_codes(n_sites: int, sz_zero: bool) -> np.ndarray:
    """Sorted codes of the Sᶻ = 0 sector (N/2 up spins) or of the full space."""
    if not sz_zero:
        return np.arange(2**n_sites, dtype=np.int64)
    if n_sites % 2:
        raise ValueError(f"the Sᶻ = 0 sector needs an even number of sites; got {n_sites}")
    codes = [sum(1 << i for i in c) for c in combinations(range(n_sites), n_sites // 2)]
    return np.sort(np.array(codes, dtype=np.int64))


def hamiltonian_basis(ham: Hamiltonian) -> np.ndarray:
    """The basis a Hamiltonian's ground state is searched in: Sᶻ = 0 if it conserves Sᶻ."""
    return basis_codes(ham.lattice.n_sites, ham.conserves_sz)


@lru_cache(maxsize=32)
def _structure_kernel(structure: Hamiltonian):
    """``jax.jit(structure.connected)``: one per structure (Hamiltonians are frozen and hashable)."""
    return jax.jit(structure.connected)


def connected_kernel(ham: Hamiltonian) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``ham.connected`` on a batch of configurations, as NumPy arrays, compiled once per structure and
    batch size: the couplings are run-time arguments (``Hamiltonian.structure``, as the VMC engine shares
    its steps; a model's padded connections carry matrix element 0) and a batch is padded to a power of two,
    so bases of every size and a sweep over J2 or h reuse a few programs instead of compiling one each."""
    kernel, couplings = _structure_kernel(ham.structure()), ham.runtime_couplings()

    def connected(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        size = max(64, 1 << (len(sigma) - 1).bit_length())
        padded = np.concatenate([sigma, np.repeat(sigma[:1], size - len(sigma), axis=0)])
        return tuple(np.asarray(a)[: len(sigma)] for a in kernel(padded, couplings))

    return connected


def sparse_matrix(ham: Hamiltonian, codes: np.ndarray | None = None, batch: int = 1 << 14) -> sp.csr_matrix:
    """The Hamiltonian as a sparse matrix on ``codes`` (default: ``hamiltonian_basis``).

    Built from the same ``connected`` kernel the VMC uses, so the tests that compare this matrix
    with independent Kronecker products also check the kernel.
    """
    codes = hamiltonian_basis(ham) if codes is None else np.asarray(codes)
    n = ham.lattice.n_sites
    kernel = connected_kernel(ham)
    rows, cols, vals = [], [], []
    for start in range(0, len(codes), batch):
        chunk = codes[start : start + batch]
        diag, sigma_p, mels = kernel(decode(chunk, n))
        idx = np.arange(start, start + len(chunk))
        rows.append(idx), cols.append(idx), vals.append(diag)
        keep = mels != 0
        if keep.any():
            target = encode(sigma_p[keep])
            pos = np.searchsorted(codes, target)
            if np.any(pos >= len(codes)) or np.any(codes[np.minimum(pos, len(codes) - 1)] != target):
                raise ValueError("a connected configuration lies outside the basis")
            rows.append(np.broadcast_to(idx[:, None], mels.shape)[keep])
            cols.append(pos)
            vals.append(mels[keep])
    dim = len(codes)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(dim, dim)
    )
