"""Monte Carlo statistics against processes with known answers."""

import jax
import jax.numpy as jnp
import numpy as np

import nqs_core  # noqa: F401
from nqs_core.stats import chain_statistics, integrated_time, split_r_hat, weighted_statistics


def ar1(rho, chains, length, seed, offsets=None):
    """AR(1) chains x_t = ρ x_{t−1} + √(1−ρ²) ξ_t in equilibrium: unit variance, τ = ρ/(1−ρ)."""
    rng = np.random.default_rng(seed)
    x = np.empty((chains, length))
    x[:, 0] = rng.normal(size=chains)
    noise = rng.normal(size=(chains, length)) * np.sqrt(1 - rho**2)
    for t in range(1, length):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x + (0 if offsets is None else offsets[:, None])


def test_independent_samples_have_zero_tau_and_plain_error():
    x = np.random.default_rng(0).normal(2.0, 0.5, size=(16, 512))
    s = jax.jit(chain_statistics, static_argnums=(1, 2))(jnp.asarray(x), 4)
    assert float(s["tau"]) < 0.1
    np.testing.assert_allclose(float(s["energy"]), x.mean())
    np.testing.assert_allclose(float(s["variance"]), x.var())
    np.testing.assert_allclose(float(s["error"]), x.std() / np.sqrt(x.size) * np.sqrt(1 + 2 * float(s["tau"])))
    np.testing.assert_allclose(float(s["v_score"]), 4 * x.var() / x.mean() ** 2)
    assert abs(float(s["r_hat"]) - 1) < 0.02


def test_autocorrelation_time_of_ar1_process():
    for rho in (0.5, 0.8):
        tau = float(integrated_time(jnp.asarray(ar1(rho, 32, 2000, seed=1))))
        np.testing.assert_allclose(tau, rho / (1 - rho), rtol=0.15)


def test_corrected_error_matches_spread_of_means_over_replicas():
    rho = 0.7
    reps = [ar1(rho, 8, 256, seed=s) for s in range(200)]
    errors = [float(chain_statistics(jnp.asarray(x), 1)["error"]) for x in reps[:20]]
    spread = np.std([x.mean() for x in reps])
    naive = 1 / np.sqrt(8 * 256)
    assert spread > 2 * naive  # correlation matters here
    np.testing.assert_allclose(np.mean(errors), spread, rtol=0.2)


def test_split_r_hat_flags_chains_stuck_at_different_values():
    good = jnp.asarray(ar1(0.5, 16, 128, seed=2))
    bad = jnp.asarray(ar1(0.5, 16, 128, seed=2, offsets=np.repeat([0.0, 3.0], 8)))
    assert float(split_r_hat(good)) < 1.05
    assert float(split_r_hat(bad)) > 1.5
    trending = jnp.asarray(np.random.default_rng(3).normal(size=(16, 128)) + np.linspace(0, 4, 128))
    assert float(split_r_hat(trending)) > 1.2  # the split catches drift within chains


def test_weighted_statistics_are_exact_expectations():
    x = jnp.asarray([1.0, -2.0, 3.0])
    w = jnp.asarray([0.5, 0.25, 0.25])
    s = weighted_statistics(x, w, 2)
    np.testing.assert_allclose(float(s["energy"]), 0.75)
    np.testing.assert_allclose(float(s["variance"]), 0.5 * 0.25**2 + 0.25 * 2.75**2 + 0.25 * 2.25**2)
    assert float(s["error"]) == 0.0
