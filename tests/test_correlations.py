"""Correlations and magnetisations (nqs_core.correlations) against physics.

Exact: the estimators evaluated with |ψ|² weights on the whole basis equal ⟨ψ|O|ψ⟩/⟨ψ|ψ⟩ with O applied
to the full 2^N state vector by bit operations (σᶻ_i = ±1 by bit i, σˣ_i flips bit i, S_i·S_j swaps bits), for
the ED ground state (scipy Lanczos, nqs_core.references.ed) and for a random complex RBM.  Physics
identities: J Σ_⟨ij⟩⟨S_i·S_j⟩ = E₀ and Σ_ij⟨S_i·S_j⟩ = 0 (singlet); −J Σ⟨σᶻσᶻ⟩ − h Σ⟨σˣ⟩ = E₀.
Statistical: the same estimators on independent samples from |ψ₀|² agree with the exact values
within 5 standard errors (batch means).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs_core.basis import basis_codes, decode
from nqs_core.correlations import (
    all_pairs,
    by_displacement,
    magnetisation,
    sigma_x,
    spin_correlation_pairs,
    spin_correlations,
    state_log_psi,
    zz_correlations,
)
from nqs_core.hamiltonians import make_hamiltonian
from nqs_core.lattice import make_lattice
from nqs_core.models import make_model
from nqs_core.references.ed import exact_diagonalization
from nqs_core.settings import RunSettings

N = 8


# ----- operators on full 2^N state vectors (index = code, bit i = [σ_i = +1]) -----------------------
def bit(i: int) -> np.ndarray:
    return (np.arange(2**N) >> i) & 1


def op_z(i: int):
    return lambda v: (2.0 * bit(i) - 1.0) * v


def op_x(i: int):
    return lambda v: v[np.arange(2**N) ^ (1 << i)]


def op_zz(i: int, j: int):
    return lambda v: op_z(i)(op_z(j)(v))


def op_ss(i: int, j: int):
    """S_i·S_j = ¼σᶻσᶻ + ½(S⁺S⁻ + S⁻S⁺): the flip part swaps unequal bits i, j."""
    differ = bit(i) != bit(j)
    return lambda v: 0.25 * op_zz(i, j)(v) + 0.5 * np.where(differ, v[np.arange(2**N) ^ (1 << i) ^ (1 << j)], 0.0)


def expect(op, psi_full: np.ndarray) -> float:
    """⟨ψ|O|ψ⟩/⟨ψ|ψ⟩ with O applied to the whole state vector."""
    return float(np.real(np.vdot(psi_full, op(psi_full))) / np.vdot(psi_full, psi_full).real)


def on_full_space(codes: np.ndarray, psi: np.ndarray) -> np.ndarray:
    full = np.zeros(2**N, dtype=complex)
    full[codes] = psi
    return full


def chain(name: str, **couplings):
    lat = make_lattice("chain", N)
    return lat, make_hamiltonian(name, lat, **couplings)


# ----- exact expectation values ------------------------------------------------------------------
def test_tfim_estimators_equal_dense_expectations_of_the_ed_ground_state():
    lat, ham = chain("tfim", J=1.0, h=0.8)
    res = exact_diagonalization(ham, want_vector=True)
    codes, psi0 = res.codes, res.vector
    w = np.abs(psi0) ** 2
    configs = decode(codes, N)
    full = on_full_space(codes, psi0)
    fn = state_log_psi(codes, psi0)
    sx, zz, m = (np.asarray(x) for x in jax.jit(lambda c, w: (sigma_x(fn, None, c, weights=w), zz_correlations(c, w),
                                                              magnetisation(c, w)))(configs, w))
    for i in range(N):
        assert sx[i] == pytest.approx(expect(op_x(i), full), abs=1e-10)
        for j in range(N):
            assert zz[i, j] == pytest.approx(expect(op_zz(i, j), full), abs=1e-10)
    m_abs = np.abs(sum(2.0 * bit(i) - 1.0 for i in range(N))) / N
    assert float(m) == pytest.approx(expect(lambda v: m_abs * v, full), abs=1e-10)
    # the energy from the two estimators is the ED energy; ⟨σˣ⟩ is uniform by translation symmetry
    b = lat.bonds
    energy = -1.0 * zz[b[:, 0], b[:, 1]].sum() - 0.8 * sx.sum()
    assert energy == pytest.approx(res.energy, abs=1e-9)
    assert np.ptp(sx) < 1e-10 and 0.0 < sx[0] < 1.0


def test_heisenberg_correlations_equal_dense_expectations_and_sum_rules():
    lat, ham = chain("heisenberg", J=1.0)
    res = exact_diagonalization(ham, want_vector=True)
    codes, psi0 = res.codes, res.vector
    configs = decode(codes, N)
    fn = state_log_psi(codes, psi0)
    c = np.asarray(jax.jit(lambda c, w: spin_correlations(fn, None, c, weights=w))(configs, np.abs(psi0) ** 2))
    full = on_full_space(codes, psi0)
    for i, j in all_pairs(N):
        assert c[i, j] == pytest.approx(expect(op_ss(i, j), full), abs=1e-10)
    assert np.allclose(c, c.T) and np.allclose(np.diag(c), 0.75)
    b = lat.bonds
    assert c[b[:, 0], b[:, 1]].sum() == pytest.approx(res.energy, abs=1e-9)  # H = J Σ S·S
    assert c.sum() == pytest.approx(0.0, abs=1e-9)  # ⟨S_tot²⟩ = 0 in the singlet ground state
    cr = by_displacement(c, lat)  # antiferromagnet: alternating signs with distance
    assert cr[0] == pytest.approx(0.75) and np.all(np.sign(cr[1:]) == [(-1) ** r for r in range(1, N)])


def random_rbm(settings: RunSettings, scale: float = 8.0):
    """A random complex RBM with large enough parameters that ψ is far from uniform (complex ratios)."""
    lat = make_lattice(settings.lattice, settings.L, settings.bc)
    model = make_model(settings, lat)
    init = jax.jit(lambda k: jax.tree_util.tree_map(lambda p: p * scale, model.init(k, jnp.ones((1, lat.n_sites), jnp.int8))))
    params = init(jax.random.PRNGKey(3))
    return model, params


@pytest.mark.parametrize("hamiltonian", ["tfim", "heisenberg"])
def test_network_estimators_equal_dense_expectations(hamiltonian):
    model, params = random_rbm(RunSettings(hamiltonian=hamiltonian, lattice="chain", L=N))
    codes = basis_codes(N, sz_zero=hamiltonian == "heisenberg")
    configs = decode(codes, N)
    lp = np.asarray(jax.jit(model.apply)(params, configs))
    psi = np.exp(lp - lp.real.max())
    full = on_full_space(codes, psi)
    assert np.std(np.abs(psi)) > 0.1 * np.mean(np.abs(psi)) and np.std(np.angle(psi)) > 0.1
    w = np.abs(psi) ** 2
    if hamiltonian == "tfim":
        sx = np.asarray(jax.jit(lambda p, c, l, w: sigma_x(model.apply, p, c, log_psi=l, weights=w))(params, configs, lp, w))
        assert sx == pytest.approx([expect(op_x(i), full) for i in range(N)], abs=1e-10)
    else:
        pairs = np.array([[0, 1], [0, 3], [2, 7], [4, 5]])
        got = np.asarray(jax.jit(lambda p, c, l, w: spin_correlation_pairs(model.apply, p, c, pairs, log_psi=l, weights=w))(
            params, configs, lp, w))
        assert got == pytest.approx([expect(op_ss(i, j), full) for i, j in pairs], abs=1e-10)


# ----- the sample estimators --------------------------------------------------------------------------
def batch_mean(estimates: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over independent batches."""
    x = np.asarray(estimates)
    return x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(len(x))


def draw(codes: np.ndarray, psi: np.ndarray, n: int, seed: int) -> np.ndarray:
    p = np.abs(psi) ** 2
    return decode(np.random.default_rng(seed).choice(codes, size=n, p=p / p.sum()), N)


def test_sample_estimators_agree_with_exact_values_within_errors():
    _, tfim = chain("tfim", J=1.0, h=1.0)
    res = exact_diagonalization(tfim, want_vector=True)
    fn, w, configs = state_log_psi(res.codes, res.vector), np.abs(res.vector) ** 2, decode(res.codes, N)

    def tfim_estimates(s, w=None):
        return jnp.stack([magnetisation(s, w), sigma_x(fn, None, s, weights=w).mean(), zz_correlations(s, w)[0, N // 2]])

    exact = np.asarray(jax.jit(tfim_estimates)(configs, w))
    batches = jax.jit(jax.vmap(tfim_estimates))(np.stack([draw(res.codes, res.vector, 200, b) for b in range(20)]))
    mean, err = batch_mean(list(np.asarray(batches)))
    assert np.all(err > 0) and np.all(np.abs(mean - exact) < 5 * err), (mean, exact, err)

    _, heis = chain("heisenberg")
    res = exact_diagonalization(heis, want_vector=True)
    fn, w = state_log_psi(res.codes, res.vector), np.abs(res.vector) ** 2
    pairs = np.array([[0, 1], [0, 2], [0, 4]])
    exact = np.asarray(jax.jit(lambda c, w: spin_correlation_pairs(fn, None, c, pairs, weights=w))(decode(res.codes, N), w))
    batches = jax.jit(jax.vmap(lambda s: spin_correlation_pairs(fn, None, s, pairs)))(
        np.stack([draw(res.codes, res.vector, 200, b) for b in range(20)]))
    mean, err = batch_mean(list(np.asarray(batches)))
    assert np.all(err > 0) and np.all(np.abs(mean - exact) < 5 * err), (mean, exact, err)


def test_by_displacement_on_the_square_and_with_open_boundaries():
    sq = make_lattice("square", 3)
    c = np.arange(81, dtype=float).reshape(9, 9)
    m = by_displacement(c, sq)
    # r = (1, 0): pairs (i, i + x̂); r = (0, 2): (i, i + 2ŷ), averaged over i
    assert m[0, 1] == pytest.approx(np.mean([c[i, sq.translations[1][i]] for i in range(9)]))
    assert m.shape == (3, 3) and m[0, 0] == pytest.approx(np.mean(np.diag(c)))
    opened = make_lattice("chain", 5, "open")
    assert np.array_equal(by_displacement(np.eye(5) + np.arange(25).reshape(5, 5), opened), [10, 11, 13, 13, 14])
