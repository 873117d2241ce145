"""Complex restricted Boltzmann machine (Carleo & Troyer, Science 355, 602 (2017)).

log ψ(σ) = Σ_i a_i σ_i + Σ_j log cosh(θ_j),   θ_j = b_j + Σ_i W_ij σ_i,   j = 1..αN,
with complex a, b, W: a holomorphic function of its parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG2 = 0.6931471805599453


def log_cosh(z: jax.Array) -> jax.Array:
    """log cosh z for complex z, stable for large |Re z|: with s = ±z (Re s ≥ 0),
    log cosh z = s − log 2 + log(1 + e^{−2s})."""
    s = jnp.where(z.real < 0, -z, z)
    return s - LOG2 + jnp.log1p(jnp.exp(-2 * s))


class RBM(nn.Module):
    """Complex RBM with hidden-unit density ``alpha`` and a visible bias."""

    alpha: int = 1
    param_dtype: Any = jnp.complex128
    use_visible_bias: bool = True
    init_std: float = 0.01

    holomorphic = True  # log ψ is holomorphic in the complex parameters

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        x = sigma.astype(self.param_dtype)
        n = x.shape[-1]
        init = nn.initializers.normal(self.init_std)
        W = self.param("kernel", init, (n, self.alpha * n), self.param_dtype)
        b = self.param("hidden_bias", init, (self.alpha * n,), self.param_dtype)
        out = jnp.sum(log_cosh(x @ W + b), axis=-1)
        if self.use_visible_bias:
            a = self.param("visible_bias", init, (n,), self.param_dtype)
            out = out + x @ a
        return out
