"""Marshall sign prior: ψ(σ) = (−1)^{N↑_A(σ)} ψ_base(σ), i.e. log ψ = log ψ_base + iπ N↑_A.

N↑_A counts up spins on sublattice A (``lattice.sublattice == 0``), DESIGN.md §2.  The prior
multiplies the network output; the Hamiltonian is not rotated.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.models.fast_path import has_fast_path


def up_spins_on_a(sigma: jax.Array, sublattice_a) -> jax.Array:
    """N↑_A(σ) (...,) int: up spins on sublattice A (``sublattice_a``: 0/1 or bool mask per site, 1 on A).
    The Marshall sign is (−1)^{N↑_A(σ)}, its phase π N↑_A(σ)."""
    mask = jnp.asarray(np.asarray(sublattice_a, dtype=np.int32))
    return jnp.sum(jnp.where(jnp.asarray(sigma) > 0, mask, 0), axis=-1)


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
        n_up_a = up_spins_on_a(sigma, self.sublattice_a)
        return log_psi + 1j * jnp.pi * n_up_a.astype(log_psi.real.dtype)

    # ----- fast paths of the base network, passed through ------------------------------
    @property
    def has_flip_ratios(self) -> bool:
        return has_fast_path(self.base, "flip_ratios")

    @property
    def has_holomorphic_moments(self) -> bool:
        return has_fast_path(self.base, "holomorphic_moments")

    def flip_ratios(self, sigma: jax.Array, sites: np.ndarray) -> jax.Array:
        """ψ(σ^(m))/ψ(σ) = (−1)^{|sites[m] ∩ A|} ψ_base(σ^(m))/ψ_base(σ): flipping a spin on A changes
        N↑_A by ±1, so the prior contributes one sign per flipped A site (constant per row m)."""
        on_a = np.asarray(self.sublattice_a, dtype=np.int64)[np.asarray(sites)].sum(axis=1)
        return self.base.flip_ratios(sigma, sites) * jnp.asarray(1.0 - 2.0 * (on_a % 2))

    def holomorphic_moments(self, sigma: jax.Array, weights: jax.Array, v: jax.Array):
        """The base's moments of O: the prior has no parameters, so O = ∂ log ψ_base/∂w."""
        return self.base.holomorphic_moments(sigma, weights, v)
