"""Marshall sign prior: ψ(σ) = (−1)^{N↑_A(σ)} ψ_base(σ), i.e. log ψ = log ψ_base + iπ N↑_A.

N↑_A counts up spins on sublattice A (``lattice.sublattice == 0``), DESIGN.md §2.  The prior
multiplies the network output; the Hamiltonian is not rotated.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class MarshallSign(nn.Module):
    """Wrap ``base`` with the Marshall sign of the sublattice mask ``sublattice_a`` (tuple of 0/1)."""

    base: nn.Module
    sublattice_a: tuple[int, ...]

    @property
    def holomorphic(self) -> bool:
        return bool(getattr(self.base, "holomorphic", False))

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        log_psi = self.base(sigma)
        mask = jnp.asarray(np.asarray(self.sublattice_a, dtype=np.int32))
        n_up_a = jnp.sum(jnp.where(sigma > 0, mask, 0), axis=-1)
        return log_psi + 1j * jnp.pi * n_up_a.astype(log_psi.real.dtype)
