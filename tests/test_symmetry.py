"""Momentum projection: exact momentum for every k (wrapped RBM), agreement with the dense projector,
completeness over k, and the variational bound inside a momentum sector against momentum-resolved ED.

Each test's network passes run as one jitted program (run eagerly, each primitive compiled on its own)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs_core  # noqa: F401
from nqs_core.basis import basis_codes, decode, sparse_matrix
from nqs_core.hamiltonians import make_hamiltonian
from nqs_core.lattice import make_lattice
from nqs_core.models.convnext import ConvNeXt
from nqs_core.models.rbm import RBM
from nqs_core.models.symmetry import MomentumProjection, log_sum_exp, marshall_momentum, project
from nqs_core.references.ed import exact_diagonalization
from _table_state import table
from conftest import translation_matrix


def state_vectors(models, params, codes, n_sites):
    """ψ of each model (with its parameters) on the basis ``codes``, all in one compiled program."""
    log_psi = jax.jit(lambda ps, x: [m.apply(p, x) for m, p in zip(models, ps)])(params, decode(codes, n_sites))
    return [np.exp(np.asarray(x)) for x in log_psi]


@functools.partial(jax.jit, static_argnums=(0, 1))
def rbm_params(n_sites, seed=0):
    model = RBM(alpha=1)
    params = model.init(jax.random.key(seed), np.ones((1, n_sites), np.int8))
    return jax.tree.map(lambda x: 0.4 * jax.random.normal(jax.random.key(seed + 1), x.shape, x.dtype), params)


@pytest.mark.parametrize("kind,L", [("chain", 8), ("square", 4)])
def test_wrapped_rbm_has_every_allowed_momentum(kind, L):
    lat = make_lattice(kind, L)
    n = lat.n_sites
    rng = np.random.default_rng(0)
    sigma = np.stack([rng.permutation(np.array([1, -1] * (n // 2), np.int8)) for _ in range(12)])
    params = {"params": {"base": rbm_params(n)["params"]}}
    batch = np.concatenate([sigma] + [sigma[:, p] for p in lat.unit_translations()])
    ks = [tuple(k) for k in lat.momenta() / np.pi]
    models = [project(RBM(alpha=1), lat, k_over_pi) for k_over_pi in ks]
    assert all(isinstance(model, MomentumProjection) and model.holomorphic for model in models)
    every_k = jax.jit(lambda p, x: [model.apply(p, x) for model in models])(params, batch)  # one program
    for k_over_pi, log_psi in zip(ks, every_k):
        log_psi = np.asarray(log_psi).reshape(1 + lat.dim, -1)
        psi = np.exp(log_psi - np.max(log_psi[0].real))
        k = lat.momentum_index(k_over_pi)
        for a in range(lat.dim):
            np.testing.assert_allclose(psi[1 + a], np.exp(1j * k[a]) * psi[0], atol=1e-10)


def test_projection_equals_dense_projector_and_is_complete():
    """Σ_k Ψ^(k) = Ψ (completeness) and Ψ^(k) = P_k Ψ with P_k = (1/|T|) Σ_t e^{−ik·r_t} T_t built
    from explicit permutation matrices on the full 2^N basis."""
    lat = make_lattice("chain", 6)
    codes = basis_codes(6, sz_zero=False)
    params = rbm_params(6, seed=3)
    ks = [tuple(k) for k in lat.momenta() / np.pi]
    projections = [MomentumProjection(base=RBM(alpha=1), lattice=lat, k_over_pi=k_over_pi) for k_over_pi in ks]
    psi, *projected = state_vectors([RBM(alpha=1), *projections],
                                    [params] + [{"params": {"base": params["params"]}}] * len(ks), codes, 6)
    T = [translation_matrix(lat, codes, t) for t in range(len(lat.displacements))]
    total = np.zeros_like(psi)
    for k_over_pi, psi_k in zip(ks, projected):
        k = lat.momentum_index(k_over_pi)
        P = sum(np.exp(-1j * k[0] * lat.displacements[t][0]) * T[t] for t in range(len(T))) / len(T)
        np.testing.assert_allclose(psi_k, P @ psi, atol=1e-12 * np.abs(psi).max())
        np.testing.assert_allclose(P @ P, P, atol=1e-12)
        total += psi_k
    np.testing.assert_allclose(total, psi, rtol=1e-10)


def test_invalid_momentum_names_k():
    lat = make_lattice("square", 4)
    with pytest.raises(ValueError, match=r"^k must be a multiple of 2/L"):
        project(RBM(), lat, (0.25, 0.0))
    with pytest.raises(ValueError, match=r"^k needs 2 component"):
        project(RBM(), lat, (0.5,))


def test_log_sum_exp_stable_and_safe_at_exact_cancellation():
    a = np.array([1000.0 + 0.3j, 999.0 - 2.0j, -50.0 + 1.0j])
    ref = 1000.0 + np.log(np.sum(np.exp(a - 1000.0)))

    @jax.jit
    def cases(a):
        near = log_sum_exp(jnp.array([0.0 + 0.0j, 0.0 + 1j * np.pi]))  # 1 + e^{iπ}: rounding only
        zero = log_sum_exp(jnp.array([-jnp.inf + 0j, -jnp.inf + 0j]))  # an exactly vanishing sum
        grad = jax.grad(lambda x: log_sum_exp(jnp.array([x - jnp.inf, -jnp.inf + 0j])).real)(0.0)
        return log_sum_exp(a), near, zero, grad

    out, near, zero, grad = cases(a)
    assert complex(out) == pytest.approx(ref, rel=1e-14)
    near = complex(near)
    assert np.isfinite(near) and near.real < -30
    assert np.isfinite(complex(zero)) and zero.real < -700
    assert np.isfinite(grad)


@pytest.mark.parametrize("kind,L", [("chain", 4), ("chain", 6), ("chain", 10), ("square", 4)])
def test_marshall_sign_momentum(kind, L):
    """(−1)^{N↑_A} on Sᶻ = 0 configurations is a translation eigenfunction with the stated momentum."""
    lat = make_lattice(kind, L)
    sigma = decode(basis_codes(lat.n_sites, sz_zero=True)[:500], lat.n_sites)
    a_mask = lat.sublattice == 0
    sign = lambda s: (-1.0) ** np.sum((s > 0) & a_mask, axis=1)  # noqa: E731
    k = np.pi * np.asarray(marshall_momentum(lat))
    for a, perm in enumerate(lat.unit_translations()):
        np.testing.assert_array_equal(sign(sigma[:, perm]), np.cos(k[a]) * sign(sigma))


def exact_energy(psi, H):
    return float(np.real(np.vdot(psi, H @ psi)) / np.vdot(psi, psi).real)


def test_wrong_sector_energy_is_bounded_by_that_sectors_ed():
    """Heisenberg chain L = 10: ground state at k = π (N = 4n+2).  A state dominated by the exact
    ground state but with components everywhere has energy below E_0(k = 0); projected to k = 0
    (the wrong sector) its exact variational energy rises to at or above ED's lowest k = 0 energy,
    and likewise for every other sector.  A projected ConvNeXt obeys the same bound."""
    lat = make_lattice("chain", 10)
    ham = make_hamiltonian("heisenberg", lat)
    ed = exact_diagonalization(ham)
    codes = basis_codes(10, sz_zero=True)
    np.testing.assert_array_equal(ed.codes, codes)
    k_index = {round(float(k[0] / np.pi), 9): i for i, k in enumerate(ed.momenta)}
    assert np.argmin(ed.sector_energies) == k_index[1.0]
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(len(codes)) + 1j * rng.standard_normal(len(codes))
    mixture = ed.vector / np.linalg.norm(ed.vector) + 0.2 * noise / np.linalg.norm(noise)
    state = table(codes, mixture)
    H = sparse_matrix(ham, codes)
    projections = [MomentumProjection(base=state, lattice=lat, k_over_pi=(k_over_pi,)) for k_over_pi in k_index]
    net = ConvNeXt(lattice=lat, depth=1, features=4, patch=2, kernel=3, k_over_pi=(0.0,))
    net_ks = (0.0, 0.4, 1.0)
    nets = [net.with_momentum((k_over_pi,)) for k_over_pi in net_ks]

    @jax.jit  # every state's amplitudes on the basis, the networks' initialisation included: one program
    def log_amplitudes(x):
        params = net.init(jax.random.key(0), x[:2])
        net_params = [m.init(jax.random.key(1), x[:2]) if m.has_momentum_head() else params for m in nets]
        return ([state.apply({}, x)], [m.apply({}, x) for m in projections],
                [m.apply(p, x) for m, p in zip(nets, net_params)])

    [mix], sectors, networks = jax.tree.map(lambda v: np.exp(np.asarray(v)), log_amplitudes(decode(codes, 10)))
    e_mix = exact_energy(mix, H)
    assert e_mix < ed.sector_energies[k_index[0.0]] - 0.1
    for (k_over_pi, i), psi_k in zip(k_index.items(), sectors):
        e_k = exact_energy(psi_k, H)
        assert e_k >= ed.sector_energies[i] - 1e-9, (k_over_pi, e_k, ed.sector_energies[i])
        if k_over_pi == 1.0:  # the right sector: the projection filters the noise towards E_0
            assert e_k < e_mix
    for k_over_pi, psi in zip(net_ks, networks):
        assert exact_energy(psi, H) >= ed.sector_energies[k_index[k_over_pi]] - 1e-9
