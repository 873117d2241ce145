"""Models against their closed-form definitions.

Each test's initialisation and network passes run as one jitted program (run eagerly, they compiled each
primitive on its own: ~750 compilations for this file)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs_core  # noqa: F401  (enables x64)
from nqs_core.lattice import make_lattice
from nqs_core.models import RBM, Jastrow, MarshallSign, make_model
from nqs_core.models.rbm import log_cosh
from nqs_core.settings import RunSettings


def random_sigma(n, b=32, seed=0):
    return np.where(np.random.default_rng(seed).random((b, n)) < 0.5, 1, -1).astype(np.int8)


def init_and_apply(model, seed, sigma):
    """``model.init(jax.random.key(seed), sigma)`` and ``model.apply`` of those parameters on ``sigma``, jitted."""
    return jax.jit(lambda x: (p := model.init(jax.random.key(seed), x), model.apply(p, x)))(sigma)


def test_log_cosh_matches_direct_formula_and_is_stable():
    rng = np.random.default_rng(1)
    z = rng.normal(size=200) * 3 + 1j * rng.normal(size=200) * 3
    big = np.array([800.0 + 0.3j, -800.0 + 0.3j])  # cosh overflows; log cosh = |x| − log 2 + i·(±0.3)
    out = np.asarray(jax.jit(log_cosh)(np.concatenate([z, big])))
    np.testing.assert_allclose(np.exp(out[:200]), np.cosh(z), rtol=1e-12)
    np.testing.assert_allclose(out[200:], [800 - np.log(2) + 0.3j, 800 - np.log(2) - 0.3j], rtol=1e-12)


def test_rbm_is_carleo_troyer_formula():
    model = RBM(alpha=2, init_std=0.3)
    sigma = random_sigma(6)
    params, got = init_and_apply(model, 0, sigma)
    p = params["params"]
    W, b, a = (np.asarray(p[k]) for k in ("kernel", "hidden_bias", "visible_bias"))
    assert W.shape == (6, 12) and W.dtype == np.complex128
    expected = sigma @ a + np.sum(np.log(np.cosh(sigma @ W + b)), axis=1)
    got = np.asarray(got)
    # log is defined up to 2πi: compare ψ itself
    np.testing.assert_allclose(np.exp(got), np.exp(expected), rtol=1e-10)


def test_jastrow_is_half_quadratic_form():
    model = Jastrow(init_std=0.3)
    sigma = random_sigma(7)
    params, got = init_and_apply(model, 1, sigma)
    w, a = np.asarray(params["params"]["pair"]), np.asarray(params["params"]["visible_bias"])
    assert w.shape == (21,)
    W = np.zeros((7, 7), complex)
    W[np.triu_indices(7, 1)] = w
    W = W + W.T
    expected = 0.5 * np.einsum("bi,ij,bj->b", sigma, W, sigma) + sigma @ a
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)


def test_marshall_prior_multiplies_by_sublattice_sign():
    lat = make_lattice("square", 4)
    base = RBM(init_std=0.2)
    model = MarshallSign(base, tuple(int(v == 0) for v in lat.sublattice))
    sigma = random_sigma(16)
    params, with_sign = init_and_apply(model, 2, sigma)
    with_sign = np.exp(np.asarray(with_sign))
    without = np.exp(np.asarray(jax.jit(base.apply)({"params": params["params"]["base"]}, sigma)))
    n_up_a = np.sum((sigma > 0) & (lat.sublattice == 0)[None], axis=1)
    np.testing.assert_allclose(with_sign, (-1.0) ** n_up_a * without, rtol=1e-12)


@pytest.mark.parametrize("dtype, expected", [("float32", np.complex64), ("float64", np.complex128)])
def test_make_model_precision_and_composition(dtype, expected):
    s = RunSettings(hamiltonian="heisenberg", lattice="chain", L=8, model="rbm", sign="marshall", dtype=dtype)
    lat = make_lattice("chain", 8)
    model = make_model(s, lat)
    assert isinstance(model, MarshallSign) and isinstance(model.base, RBM)
    params, out = init_and_apply(model, 0, random_sigma(8, 2))
    assert all(x.dtype == expected for x in jax.tree_util.tree_leaves(params))
    assert out.dtype == expected
    jas = make_model(s.replace(model="jastrow", sign="none"), lat)
    assert isinstance(jas, Jastrow)


def test_make_model_rejects_unknown_model():
    s = RunSettings(lattice="chain", L=8)
    with pytest.raises(ValueError, match="model must be one of"):
        make_model(s.replace(model="mlp"), make_lattice("chain", 8))


def test_sum_log_cosh_equals_sum_of_log_cosh_and_is_holomorphic():
    from nqs_core.models.rbm import sum_log_cosh

    rng = np.random.default_rng(4)
    z = rng.normal(size=(50, 12)) * 2 + 1j * rng.normal(size=(50, 12)) * 3
    big = np.array([[700.0 + 0.2j, -650.0 + 0.1j]])

    @jax.jit
    def all_of_them(z, big, z32):
        g = jax.grad(lambda w: sum_log_cosh(w[None])[0], holomorphic=True)(z[0])
        return sum_log_cosh(z), g, sum_log_cosh(big), sum_log_cosh(z32)

    got, g, big, out32 = all_of_them(z, big, np.asarray(z[:3], np.complex64))
    got = np.asarray(got)
    np.testing.assert_allclose(np.exp(got), np.prod(np.cosh(z), axis=1), rtol=1e-10)
    np.testing.assert_allclose(got.real, np.sum(np.log(np.abs(np.cosh(z))), axis=1), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g), np.tanh(z[0]), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(big), [1350 - 2 * np.log(2) + 0.1j], rtol=1e-12)
    assert out32.dtype == jnp.complex64


def test_make_model_dispatches_to_convnext_and_momentum_projection():
    from nqs_core.models.convnext import ConvNeXt
    from nqs_core.models.symmetry import MomentumProjection

    lat = make_lattice("chain", 8)
    s = RunSettings(hamiltonian="heisenberg", lattice="chain", L=8, model="convnext", depth=1, features=4, patch=2,
                    kernel=3)
    conv = make_model(s, lat)
    assert isinstance(conv, ConvNeXt)
    sigma = random_sigma(8, 4)
    proj = make_model(s.replace(model="rbm", k=(1.0,)), lat)
    assert isinstance(proj, MomentumProjection) and isinstance(proj.base, RBM)
    shifted = sigma[:, lat.translations[1]]

    @jax.jit
    def passes(x, x_shifted):
        conv_out = make_model(s, lat).apply(conv.init(jax.random.key(0), x), x)
        params = proj.init(jax.random.key(0), x)
        return conv_out, proj.apply(params, x_shifted), proj.apply(params, x)

    conv_out, lp_shifted, lp = passes(sigma, shifted)
    assert conv_out.shape == (4,)
    # Ψ^(k)(shift(σ, 1)) = e^{ik} Ψ^(k)(σ) with k = π
    ratio = np.exp(np.asarray(lp_shifted) - np.asarray(lp))
    np.testing.assert_allclose(ratio, -1.0, atol=1e-10)


def _plain_flip_ratios(model, params, sigma, sites):
    """ψ(σ^(m))/ψ(σ) from network passes over the flipped configurations (traced: call it inside ``jax.jit``)."""
    n = sigma.shape[1]
    flips = np.ones((len(sites), n), np.int8)
    flips[np.arange(len(sites))[:, None], sites] = -1
    sp = (sigma[:, None, :] * flips[None]).reshape(-1, n)
    lp_p = model.apply(params, sp).reshape(sigma.shape[0], len(sites))
    return jnp.exp(lp_p.astype(jnp.complex128) - model.apply(params, sigma)[:, None])


@pytest.mark.parametrize("sites", [np.stack([np.arange(10), (np.arange(10) + 1) % 10], 1),  # exchange bonds
                                   np.arange(10)[:, None],  # single flips (TFIM)
                                   np.array([[0, 3, 7], [2, 5, 6], [9, 1, 4]])])
@pytest.mark.parametrize("init_std", [0.01, 0.3])
def test_rbm_flip_ratios_fast_path_equals_network_passes(sites, init_std):
    model = RBM(alpha=2, init_std=init_std)
    sigma = random_sigma(10, 256, seed=4)
    params = jax.jit(model.init)(jax.random.key(5), sigma)

    @jax.jit  # the parameters an argument: both init_std share this program
    def ratios(p, s):
        return (model.apply(p, s, sites, method=RBM.flip_ratios_fast), model.apply(p, s, sites, method=RBM.flip_ratios),
                _plain_flip_ratios(model, p, s, sites))

    (ratio, ok), full, expected = ratios(params, sigma)
    assert bool(ok)  # the fast product is used at these weights
    expected = np.asarray(expected)
    assert np.max(np.abs(expected - 1)) > 0.02  # the ratios are not all ≈ 1
    np.testing.assert_allclose(np.asarray(ratio), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(full), np.asarray(ratio))


def test_rbm_flip_ratios_fall_back_to_network_passes_for_large_weights():
    model = RBM(alpha=1, init_std=2.0)  # |Re θ| ~ 10: cancellation in cosh D + tanh θ sinh D
    sigma = random_sigma(12, 64, seed=6)
    sites = np.stack([np.arange(12), (np.arange(12) + 1) % 12], 1)

    @jax.jit
    def ratios(s):
        p = model.init(jax.random.key(7), s)
        return (model.apply(p, s, sites, method=RBM.flip_ratios_fast)[1], model.apply(p, s, sites, method=RBM.flip_ratios),
                _plain_flip_ratios(model, p, s, sites))

    ok, got, expected = ratios(sigma)
    assert not bool(ok)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-9)
