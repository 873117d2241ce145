"""Samplers draw from |ψ|²/Z: chi-square tests against the exact distribution of a random
complex RBM, and the same tests reject a sampler whose acceptance rule is broken."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import nqs_core  # noqa: F401
from nqs_core.basis import basis_codes, decode, encode
from nqs_core.hamiltonians import make_hamiltonian
from nqs_core.lattice import make_lattice
from nqs_core.models import RBM
from nqs_core.sampler import ExactSampler, MetropolisSampler, log_acceptance, make_sampler, random_configurations
from nqs_core.settings import RunSettings

N = 8


def wrong_acceptance(delta_log_psi):
    """Accepts with |ψ'/ψ| instead of |ψ'/ψ|²: samples |ψ|, not |ψ|²."""
    return jnp.real(delta_log_psi)


def rbm_and_params(seed=0):
    model = RBM(alpha=1, init_std=0.15)  # |ψ|² spread over ~40 of the 70 Sᶻ = 0 states
    return model, model.init(jax.random.key(seed), jnp.ones((1, N), jnp.int8))


def make(kind, acceptance=log_acceptance):
    bonds = tuple(map(tuple, make_lattice("chain", N).bonds.tolist()))
    if kind == "local":
        return MetropolisSampler(N, 256, 40, 2 * N, 20, "local", None, False, acceptance)
    if kind == "exchange-neighbours":
        return MetropolisSampler(N, 256, 40, 2 * N, 20, "exchange", bonds, True, acceptance)
    if kind == "exchange-any":
        return MetropolisSampler(N, 256, 40, 2 * N, 20, "exchange", None, True, acceptance)
    if kind == "differing-neighbours":
        return MetropolisSampler(N, 256, 40, 2 * N, 20, "exchange", bonds, True, acceptance, differing=True)
    if kind == "differing-any":
        return MetropolisSampler(N, 256, 40, 2 * N, 20, "exchange", None, True, acceptance, differing=True)
    return ExactSampler(N, 256, 40, True, acceptance)


def differing_bonds(sigma):
    """n(σ): the nearest-neighbour bonds of the chain whose two spins differ."""
    return np.sum(sigma != np.roll(sigma, -1, axis=1), axis=1)


def chi_square_p_value(sampler, seed=0, weight=lambda sigma: 1.0):
    """p-value of Pearson's χ² of the sampled configurations against |ψ|²·weight(σ)/Z (bins with
    expected count < 5 pooled)."""
    model, params = rbm_and_params()
    log_psi = lambda s: model.apply(params, s)
    state = sampler.init(jax.random.key(seed))
    _, sigma, lp, _ = jax.jit(sampler.sample, static_argnums=0)(log_psi, state)
    sigma = np.asarray(sigma).reshape(-1, N)
    # the carried log ψ is the log ψ of the recorded configurations
    np.testing.assert_allclose(np.asarray(lp).reshape(-1), np.asarray(log_psi(sigma)), rtol=1e-10, atol=1e-10)
    codes = basis_codes(N, sampler.sz_zero)
    basis = decode(codes, N)
    p = np.abs(np.exp(np.asarray(log_psi(basis)))) ** 2 * weight(basis)
    p /= p.sum()
    counts = np.bincount(np.searchsorted(codes, encode(sigma)), minlength=len(codes))
    assert counts.sum() == len(sigma)
    expected = p * len(sigma)
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    chi2 = np.sum((obs - exp) ** 2 / exp)
    return stats.chi2.sf(chi2, len(obs) - 1)


KINDS = ["local", "exchange-neighbours", "exchange-any", "differing-neighbours", "differing-any", "exact"]


@pytest.mark.parametrize("kind", KINDS)
def test_sampler_draws_from_psi_squared(kind):
    assert chi_square_p_value(make(kind)) > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_chi_square_rejects_broken_acceptance(kind):
    assert chi_square_p_value(make(kind, wrong_acceptance)) < 1e-8


def test_differing_pairs_need_their_hastings_ratio():
    """Without the ratio n(σ)/n(σ') the bond proposal q = 1/n(σ) would sample |ψ|²·n(σ): the χ² tells
    the two apart on these samples (so the test above would catch a missing or inverted ratio)."""
    sampler = make("differing-neighbours")
    assert chi_square_p_value(sampler, weight=differing_bonds) < 1e-8
    assert chi_square_p_value(sampler, weight=lambda sigma: 1.0 / differing_bonds(sigma)) < 1e-8


def test_differing_pairs_always_move():
    """Every sub-step proposes a real exchange: on the flat state (ψ = 1) each one is accepted."""
    for kind in ("differing-neighbours", "differing-any"):
        sampler = make(kind)
        state, sigma, _, acc = sampler.sample(lambda x: jnp.zeros(x.shape[0]), sampler.init(jax.random.key(2)))
        assert np.all(np.asarray(sigma).sum(axis=-1) == 0)
        if kind == "differing-any":
            assert float(acc) == 1.0
        else:  # on the flat state the Hastings ratio n(σ)/n(σ') alone rejects some moves
            assert 0.5 < float(acc) < 1.0


def test_exchange_moves_conserve_sz_and_start_in_sector():
    s = random_configurations(jax.random.key(3), 64, 10, sz_zero=True)
    assert np.all(np.asarray(s).sum(axis=1) == 0)
    sampler = make("exchange-any")
    model, params = rbm_and_params()
    state, sigma, _, acc = sampler.sample(lambda x: model.apply(params, x), sampler.init(jax.random.key(1)))
    assert np.all(np.asarray(sigma).sum(axis=-1) == 0)
    assert 0.05 < float(acc) < 1.0
    assert state.sigma.shape == (256, N) and state.sigma.dtype == jnp.int8


def test_make_sampler_follows_settings():
    lat = make_lattice("chain", 10)
    heis = make_hamiltonian("heisenberg", lat)
    s = RunSettings(hamiltonian="heisenberg", lattice="chain", L=10, samples=320, chains=16)
    m = make_sampler(s, heis)
    assert m.move == "exchange" and m.sweep == 10 and m.thermalization == 2 and m.samples_per_chain == 20
    assert m.bonds == tuple(map(tuple, lat.bonds.tolist()))
    assert make_sampler(s.replace(exchange="any", sweep=3, thermalization=0), heis).bonds is None
    tf = make_sampler(s.replace(hamiltonian="tfim"), make_hamiltonian("tfim", lat))
    assert tf.move == "local" and not tf.sz_zero
    assert isinstance(make_sampler(s.replace(sampler="exact"), heis), ExactSampler)
