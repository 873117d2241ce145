"""Observables on exact states (ED ground states as table wavefunctions) and on networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs_core  # noqa: F401
from nqs_core import observables as obs
from nqs_core.basis import basis_codes, decode
from nqs_core.hamiltonians import make_hamiltonian
from nqs_core.lattice import make_lattice
from nqs_core.models.convnext import ConvNeXt
from nqs_core.references.ed import exact_diagonalization
from _table_state import table


def ground_state(kind, L, name="heisenberg", **couplings):
    lat = make_lattice(kind, L)
    ham = make_hamiltonian(name, lat, **couplings)
    ed = exact_diagonalization(ham)
    return lat, ham, ed


def draw(probabilities, n, seed=0):
    p = np.asarray(probabilities) / np.sum(probabilities)
    return np.random.default_rng(seed).choice(len(p), size=n, p=p)


@pytest.mark.parametrize("kind,L,k_over_pi", [("chain", 8, (0.0,)), ("chain", 10, (1.0,)), ("square", 4, (0.0, 0.0))])
def test_exact_ground_state_translation_eigenvalue_and_marshall(kind, L, k_over_pi):
    """The ED ground state is a translation eigenstate of the known sector (DESIGN.md §2) and obeys
    the Marshall rule exactly: agreement 1 on samples drawn from |ψ₀|², fidelity and sign agreement 1."""
    lat, ham, ed = ground_state(kind, L)
    state = table(ed.codes, ed.vector)
    idx = draw(np.abs(ed.vector) ** 2, 2000)
    samples = decode(ed.codes[idx], lat.n_sites)
    eig = np.asarray(obs.translation_eigenvalues(state.apply, {}, samples, lat))
    np.testing.assert_allclose(eig, np.exp(1j * np.pi * np.asarray(k_over_pi)), atol=1e-12)
    assert obs.nearest_allowed_momentum(eig, lat) == k_over_pi
    assert float(obs.marshall_agreement(state.apply, {}, samples, lat)) == 1.0
    assert obs.fidelity(state.apply, {}, ed.vector, lat) == pytest.approx(1.0, abs=1e-12)
    assert obs.sign_agreement(state.apply, {}, ed.vector, lat) == pytest.approx(1.0, abs=1e-12)
    # a global phase does not matter; flipping the sign of half the weight does
    rotated = table(ed.codes, np.exp(0.7j) * ed.vector)
    assert float(obs.marshall_agreement(rotated.apply, {}, samples, lat)) == 1.0
    assert obs.sign_agreement(rotated.apply, {}, ed.vector, lat) == pytest.approx(1.0, abs=1e-12)
    flip = np.where(np.arange(len(ed.codes)) % 2 == 0, 1.0, -1.0)
    flipped = table(ed.codes, flip * ed.vector)
    w = np.abs(ed.vector) ** 2 / np.sum(np.abs(ed.vector) ** 2)
    expected = max(w[flip > 0].sum(), w[flip < 0].sum())
    assert obs.sign_agreement(flipped.apply, {}, ed.vector, lat) == pytest.approx(expected, abs=1e-12)
    frac = float(obs.marshall_agreement(flipped.apply, {}, samples, lat))
    kept = np.mean(flip[idx] > 0)
    assert frac == pytest.approx(max(kept, 1 - kept), abs=1e-12)


def test_frustration_breaks_marshall_rule():
    """J1-J2 square 4×4 at J2 = 0.8 (columnar regime): the ED ground state violates Marshall's rule on
    part of the weight; the sampled agreement matches the exact weighted one."""
    lat, ham, ed = ground_state("square", 4, "j1j2", J2=0.8)
    state = table(ed.codes, ed.vector)
    samples = decode(ed.codes[draw(np.abs(ed.vector) ** 2, 4000, seed=2)], 16)
    agreement = float(obs.marshall_agreement(state.apply, {}, samples, lat))
    assert 0.3 < agreement < 0.95
    # the exact weighted Marshall agreement, computed directly, matches within sampling error
    marshall = (-1.0) ** np.sum((decode(ed.codes, 16) > 0) & (lat.sublattice == 0), axis=1)
    w = np.abs(ed.vector) ** 2
    exact = max(w[marshall * ed.vector > 0].sum(), w[marshall * ed.vector < 0].sum()) / w.sum()
    assert agreement == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 4000) + 1e-3)


@pytest.mark.parametrize("kind,L", [("chain", 10), ("square", 4)])
def test_structure_factor_sum_rules_and_energy(kind, L):
    """Exact weights |ψ₀|²: Σ_q S(q) = N/4, S(0) = 0 in Sᶻ = 0, S(q) = S(−q) ≥ 0, and by SU(2)
    symmetry Σ_q S(q) Σ_a cos q_a = Σ_⟨ij⟩ ⟨Sᶻ_iSᶻ_j⟩·… = E₀/(3J) (nearest-neighbour correlator)."""
    lat, ham, ed = ground_state(kind, L)
    sigma = decode(ed.codes, lat.n_sites)
    q, s = obs.structure_factor(sigma, lat, weights=np.abs(ed.vector) ** 2)
    s = np.asarray(s)
    assert s.sum() == pytest.approx(lat.n_sites / 4, rel=1e-12)
    assert s[0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(s > -1e-12)
    assert np.sum(s * np.cos(q).sum(axis=1)) == pytest.approx(ed.energy / 3, rel=1e-10)
    # antiferromagnetic peak at q = π (chain) / (π, π) (square)
    assert np.allclose(q[np.argmax(s)], np.pi)
    # from samples of |ψ₀|² the same numbers within statistics
    samples = sigma[draw(np.abs(ed.vector) ** 2, 4000, seed=3)]
    _, s_mc = obs.structure_factor(samples, lat)
    assert float(np.sum(s_mc)) == pytest.approx(lat.n_sites / 4, rel=1e-12)
    assert float(np.max(np.abs(np.asarray(s_mc) - s))) < 0.15 * s.max()


def test_structure_factor_of_neel_state():
    lat = make_lattice("square", 4)
    neel = np.where(lat.sublattice == 0, 1, -1)[None].astype(np.int8)
    q, s = obs.structure_factor(neel, lat)
    s = np.asarray(s)
    peak = np.all(np.isclose(q, np.pi), axis=1)
    assert s[peak][0] == pytest.approx(16 / 4)  # |Σ ±1 e^{iπ(x+y)}|²/(4N) = N/4
    np.testing.assert_allclose(s[~peak], 0.0, atol=1e-12)


def test_network_observables_are_jittable_and_consistent():
    """A random ConvNeXt at k = π on the chain: the sampled translation eigenvalue equals e^{iπ}
    exactly (every ratio does), under jit; fidelity ≤ 1 and matches a direct overlap."""
    lat, ham, ed = ground_state("chain", 8)
    model = ConvNeXt(lattice=lat, depth=1, features=4, kernel=3, k_over_pi=(1.0,))
    codes = basis_codes(8, sz_zero=True)
    params = jax.jit(model.init)(jax.random.key(0), decode(codes[:2], 8))  # one program, not one per operation
    apply = jax.jit(model.apply)
    samples = decode(codes[::3], 8)
    eig = jax.jit(lambda p, s: obs.translation_eigenvalues(model.apply, p, s, lat))(params, samples)
    np.testing.assert_allclose(np.asarray(eig), [-1.0 + 0j], atol=1e-10)
    frac = jax.jit(lambda p, s: obs.marshall_agreement(model.apply, p, s, lat))(params, samples)
    assert 0.5 <= float(frac) <= 1.0
    f = obs.fidelity(apply, params, ed.vector, lat)
    psi = np.exp(np.asarray(apply(params, decode(codes, 8))))
    direct = abs(np.vdot(ed.vector, psi)) ** 2 / (np.vdot(psi, psi).real * np.vdot(ed.vector, ed.vector).real)
    assert f == pytest.approx(direct, rel=1e-10)
    assert f < 1e-20  # the ground state has k = 0: no overlap with any k = π state


def test_best_half_plane_is_exact_maximum():
    rng = np.random.default_rng(5)
    theta = rng.uniform(0, 2 * np.pi, 40)
    w = rng.uniform(0, 1, 40)
    phis = np.linspace(0, 2 * np.pi, 20001)
    brute = max(w[np.cos(theta - phi) > 0].sum() for phi in phis) / w.sum()
    assert float(obs.best_half_plane(jnp.asarray(theta), jnp.asarray(w))) == pytest.approx(brute, abs=1e-12)
    assert float(obs.best_half_plane(jnp.asarray([0.0, np.pi, np.pi, 2 * np.pi - 1e-15]))) == 0.5


def test_numpy_half_plane_matches_the_jitted_one():
    rng = np.random.default_rng(7)
    for n in (1, 2, 17, 300):
        theta, w = rng.uniform(-7, 7, n), rng.uniform(0, 1, n)
        jitted = jax.jit(obs.best_half_plane)(jnp.asarray(theta), jnp.asarray(w))  # one program per size
        assert float(obs.best_half_plane(theta, w)) == pytest.approx(float(jitted), abs=1e-12)
