"""Jastrow state: log ψ(σ) = Σ_{i<j} σ_i W_ij σ_j + Σ_i a_i σ_i, complex W (one entry per pair) and a.

Equivalently ½ σᵀWσ with W symmetric and zero diagonal; only the N(N−1)/2 independent pair
couplings are parameters, so the quantum geometric tensor has no trivially null directions.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class Jastrow(nn.Module):
    """Two-body complex Jastrow factor with an optional one-body field."""

    param_dtype: Any = jnp.complex128
    use_visible_bias: bool = True
    init_std: float = 0.01

    holomorphic = True

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        x = sigma.astype(self.param_dtype)
        n = x.shape[-1]
        i, j = np.triu_indices(n, k=1)
        init = nn.initializers.normal(self.init_std)
        w = self.param("pair", init, (len(i),), self.param_dtype)
        out = (x[..., i] * x[..., j]) @ w
        if self.use_visible_bias:
            a = self.param("visible_bias", init, (n,), self.param_dtype)
            out = out + x @ a
        return out
