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
    a2 = u * (2 * c + u)  # |w|² − 1 for w = 1 + e^{−2s}
    re = jnp.sum(x + 0.5 * jnp.log1p(a2), axis=-1) - z.shape[-1] * LOG2
    inv = jax.lax.rsqrt(1 + a2)
    p = jnp.prod(jax.lax.complex((1 + u * c) * inv, -u * sn * inv), axis=-1)
    total = jax.lax.complex(re, jnp.sum(y, axis=-1) + jnp.angle(p))
    q = jax.lax.complex(u * c, -u * sn)  # e^{−2s}
    tanh_s = (1 - q) / (1 + q)
    return total, jnp.where(flip, -tanh_s, tanh_s)


@jax.custom_jvp
def sum_log_cosh(z: jax.Array) -> jax.Array:
    """Σ_j log cosh z_j over the last axis, in real arithmetic (2–4× faster than summing
    ``log_cosh`` on CPU, where XLA's complex log is not vectorised).

    With s = ±z (Re s = x ≥ 0, Im s = y), cosh z = ½ e^s w, w = 1 + e^{−2s} = 1 + u e^{−2iy},
    u = e^{−2x}:  Re Σ = Σ (x + ½ log1p(u(2cos 2y + u))) − M log 2 and
    Im Σ = Σ y + arg Π_j (w_j/|w_j|)  (one angle per row; equal to Σ arg w_j modulo 2π, which
    leaves ψ and every derivative of log ψ unchanged).  Holomorphic in z, with the derivative
    tanh z = (1 − e^{−2s})/(1 + e^{−2s}) (sign of s) supplied as a custom JVP from the same
    exponentials.
    """
    return _sum_log_cosh_parts(z)[0]


@sum_log_cosh.defjvp
def _sum_log_cosh_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    total, tanh_z = _sum_log_cosh_parts(z)
    return total, jnp.sum(tanh_z * dz, axis=-1)
