"""Monte Carlo statistics of local energies from parallel Markov chains, all jittable.

For samples x of shape (C chains, T per chain):
* mean and variance over all C·T samples;
* integrated autocorrelation time τ (NetKet convention: τ = Σ_{t≥1} ρ(t), 0 for independent
  samples), from the chain-averaged FFT autocorrelation with Sokal's automatic window
  (smallest W with W ≥ 5(1/2 + τ(W)));
* error of the mean √(Var·(1 + 2τ)/(C·T));
* split-R̂ (Gelman et al., Bayesian Data Analysis, 3rd ed., §11.4): each chain cut in two halves;
* V-score V = N·Var(E)/(E − E_∞)² with E_∞ = 0 (Wu et al., Science 2024).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SOKAL_C = 5.0


def autocorrelation(x: jax.Array) -> jax.Array:
    """Normalised autocorrelation ρ(t), t = 0..T−1, averaged over chains; x has shape (C, T)."""
    c, t = x.shape
    d = x - jnp.mean(x)
    f = jnp.fft.rfft(d, n=2 * t, axis=1)
    acov = jnp.fft.irfft(f * jnp.conj(f), n=2 * t, axis=1)[:, :t]
    acov = jnp.mean(acov, axis=0) / t
    return jnp.where(acov[0] > 0, acov / jnp.where(acov[0] > 0, acov[0], 1.0), jnp.zeros_like(acov).at[0].set(1.0))


def integrated_time(x: jax.Array) -> jax.Array:
    """τ = Σ_{t=1}^{W} ρ(t) with Sokal's window; 0 for independent samples (clipped at 0)."""
    rho = autocorrelation(x)
    tau_int = jnp.cumsum(rho) - 0.5  # Sokal's τ_int(W) = 1/2 + Σ_{t=1}^{W} ρ(t), W = 0..T−1
    w = jnp.arange(rho.shape[0])
    ok = w >= SOKAL_C * tau_int
    idx = jnp.where(jnp.any(ok), jnp.argmax(ok), rho.shape[0] - 1)
    return jnp.maximum(tau_int[idx] - 0.5, 0.0)


def split_r_hat(x: jax.Array) -> jax.Array:
    """Split-R̂ over chains (1 for well-mixed chains); needs ≥ 4 samples per chain, else returns 1."""
    c, t = x.shape
    if t < 4:
        return jnp.asarray(1.0, dtype=x.dtype)
    h = t // 2
    halves = jnp.concatenate([x[:, :h], x[:, h : 2 * h]], axis=0)  # (2C, h)
    means = jnp.mean(halves, axis=1)
    within = jnp.mean(jnp.var(halves, axis=1, ddof=1))
    between = jnp.var(means, ddof=1)  # B/n
    var_plus = (h - 1) / h * within + between
    return jnp.where(within > 0, jnp.sqrt(var_plus / jnp.where(within > 0, within, 1.0)), 1.0)


def chain_statistics(x: jax.Array, n_sites: int, independent: bool = False) -> dict[str, jax.Array]:
    """Statistics of real samples x (C, T): mean, error, variance, tau, r_hat, v_score.

    ``independent=True`` (exact sampling) sets τ = 0 and R̂ = 1.
    """
    x = x.astype(jnp.float64)
    n = x.size
    mean = jnp.mean(x)
    var = jnp.var(x)
    if independent:
        tau = jnp.asarray(0.0)
        r_hat = jnp.asarray(1.0)
    else:
        tau = integrated_time(x)
        r_hat = split_r_hat(x)
    error = jnp.sqrt(var * (1.0 + 2.0 * tau) / n)
    v_score = n_sites * var / jnp.where(mean != 0, mean**2, jnp.inf)
    return {"energy": mean, "error": error, "variance": var, "tau": tau, "r_hat": r_hat, "v_score": v_score}


def weighted_statistics(x: jax.Array, weights: jax.Array, n_sites: int) -> dict[str, jax.Array]:
    """Exact expectations with normalised weights (full-basis enumeration): no sampling error."""
    x = x.astype(jnp.float64)
    mean = jnp.sum(weights * x)
    var = jnp.sum(weights * (x - mean) ** 2)
    return {"energy": mean, "error": jnp.asarray(0.0), "variance": var, "tau": jnp.asarray(0.0),
            "r_hat": jnp.asarray(1.0), "v_score": n_sites * var / jnp.where(mean != 0, mean**2, jnp.inf)}
