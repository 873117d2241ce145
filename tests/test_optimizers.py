"""Gradients and preconditioners: real-parameter layout, Jacobians, SR = MinSR, CG = dense.

Each test's JAX computations run as one jitted program (run eagerly, the Jacobians, solvers and
initialisers compiled each primitive on its own: ~1600 compilations for this file)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nqs_core  # noqa: F401
from nqs_core.models import RBM
from nqs_core.optimizers import (
    GRAM_BLOCK,
    RealRavel,
    gradient_from_jacobian,
    gram,
    gradient_vjp,
    jacobian,
    jacobian_holomorphic,
    learning_rate,
    minsr,
    sr_cg,
    sr_dense,
    sr_dense_holomorphic,
    sr_from_moments,
    trust_region_scale,
)


class RealTanhNet(nn.Module):
    """A non-holomorphic network with real and complex leaves: log ψ = Σ tanh(Wσ) + i c·σ."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        h = jnp.tanh(nn.Dense(5, param_dtype=jnp.float64)(x))
        c = self.param("phase", nn.initializers.normal(0.3), (x.shape[-1],), jnp.complex128)
        return jnp.sum(h, axis=-1) + 1j * (x @ c.real) + jnp.abs(x @ c) * 0.1


def batch(n=6, b=40, seed=0):
    return jnp.asarray(np.where(np.random.default_rng(seed).random((b, n)) < 0.5, 1, -1).astype(np.int8))


def problem(model, n=6, b=40, seed=0):
    sigma = batch(n, b, seed)
    params = jax.jit(model.init)(jax.random.key(seed), sigma)
    rng = np.random.default_rng(seed + 1)
    e_loc = jnp.asarray(rng.normal(size=b) + 1j * rng.normal(size=b) * 0.1)
    w = rng.random(b)
    return params, sigma, e_loc, jnp.asarray(w / w.sum())


def test_real_ravel_roundtrip_and_layout():
    @jax.jit
    def initial(sigma):
        return RealTanhNet().init(jax.random.key(0), sigma), RBM(init_std=0.1).init(jax.random.key(0), sigma)

    @jax.jit  # on the parameters as given: inside one program with their initialisation, XLA may compute them
    def layouts(params, rbm):  # again for the copy, rounded differently (seen at -O0: 5 of 96 entries 1 ulp apart)
        rr = RealRavel.of(params)
        theta = rr.ravel(params)
        return theta, rr.unravel(theta), RealRavel.of(rbm).ravel(rbm), rr.from_parts(rr.parts(params))

    params, rbm = initial(batch())
    theta, back, rbm_theta, from_parts = layouts(params, rbm)
    rr = RealRavel.of(params)
    assert theta.dtype == jnp.float64 and theta.shape == (rr.size,) and rr.size == 6 * 5 + 5 + 2 * 6
    for a, b, c in zip(*map(jax.tree_util.tree_leaves, (params, back, from_parts))):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    w = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(rbm)])
    np.testing.assert_array_equal(rbm_theta, np.concatenate([w.real, w.imag]))


@pytest.mark.parametrize("model", [RBM(alpha=2, init_std=0.2), RealTanhNet()], ids=["rbm", "nonholomorphic"])
def test_jacobian_equals_finite_differences(model):
    params, sigma, _, _ = problem(model)
    rr = RealRavel.of(params)
    holomorphic = isinstance(model, RBM)

    @jax.jit
    def jacobians(params, sigma):
        theta = rr.ravel(params)
        o = jacobian(model.apply, params, sigma, holomorphic=False)
        f = lambda th: model.apply(rr.unravel(th), sigma)
        fd = jax.jacfwd(lambda th: jnp.stack([f(th).real, f(th).imag]))(theta)
        if not holomorphic:
            return o, fd, None, None
        return o, fd, jacobian(model.apply, params, sigma, holomorphic=True), jacobian_holomorphic(model.apply, params, sigma)

    o, fd, o_holomorphic, oc = jacobians(params, sigma)
    np.testing.assert_allclose(o, fd[0] + 1j * fd[1], atol=1e-12)
    if holomorphic:
        np.testing.assert_allclose(o_holomorphic, o, atol=1e-12)
        np.testing.assert_allclose(oc, o[:, : oc.shape[1]], atol=1e-12)


@pytest.mark.parametrize("model", [RBM(alpha=1, init_std=0.2), RealTanhNet()], ids=["rbm", "nonholomorphic"])
def test_gradient_vjp_equals_jacobian_formula(model):
    params, sigma, e_loc, w = problem(model)

    @jax.jit
    def gradients(params, sigma, e_loc, w):
        o = jacobian(model.apply, params, sigma)
        return o, gradient_from_jacobian(o, e_loc, w), gradient_vjp(model.apply, params, sigma, e_loc, w)

    o, g, g_vjp = gradients(params, sigma, e_loc, w)
    np.testing.assert_allclose(g_vjp, g, atol=1e-12)
    # explicit: g_k = 2 Re Σ_s w_s (O_sk − ⟨O_k⟩)* (E_s − ⟨E⟩)
    do = np.asarray(o) - np.asarray(w) @ np.asarray(o)
    de = np.asarray(e_loc) - np.asarray(w) @ np.asarray(e_loc)
    np.testing.assert_allclose(g, 2 * np.real(np.einsum("s,sk,s->k", np.asarray(w), do.conj(), de)), atol=1e-12)


@pytest.mark.parametrize("shift", [1e-7, 1e-2])
def test_sr_and_minsr_agree_when_samples_outnumber_parameters(shift):
    model = RBM(alpha=1, init_std=0.3)
    params, sigma, e_loc, w = problem(model, n=4, b=200)  # 48 real parameters, 200 samples

    @jax.jit  # the shift an argument: one program for both
    def directions(params, sigma, e_loc, w, shift):
        o = jacobian(model.apply, params, sigma, holomorphic=True)
        return o, sr_dense(o, e_loc, w, shift), minsr(o, e_loc, w, shift), gradient_from_jacobian(o, e_loc, w)

    o, d_sr, d_min, g = directions(params, sigma, e_loc, w, shift)
    assert o.shape == (200, 48)
    np.testing.assert_allclose(d_min, d_sr, rtol=1e-6, atol=1e-9 * np.abs(d_sr).max())
    # and SR solves (S + λ) d = g with S = Re⟨ΔO†ΔO⟩ (NetKet's scale)
    do = np.asarray(o) - np.asarray(w) @ np.asarray(o)
    S = np.real(np.einsum("s,si,sj->ij", np.asarray(w), do.conj(), do))
    g = np.asarray(g)
    np.testing.assert_allclose((S + shift * np.eye(48)) @ np.asarray(d_sr), g, atol=1e-9)


@pytest.mark.parametrize("rows, cols", [(50, GRAM_BLOCK - 1), (300, 2 * GRAM_BLOCK + 37), (64, 4 * GRAM_BLOCK)])
def test_gram_in_blocks_equals_the_full_product(rows, cols):
    """b bᵀ from the blocks on and above the diagonal: the full product, symmetric, for one block and several."""
    b = np.random.default_rng(cols).standard_normal((cols, rows))
    s = np.asarray(gram(jnp.asarray(b)))  # eagerly: jitted, XLA's b bᵀ (one block) is not bitwise symmetric
    np.testing.assert_allclose(s, b @ b.T, rtol=1e-12, atol=1e-12 * np.abs(b @ b.T).max())
    np.testing.assert_array_equal(s, s.T)


def test_sr_with_more_parameters_than_one_gram_block_solves_the_shifted_system():
    """(S + λ)d = g with S and g from the Jacobian by NumPy, where S is formed in several blocks (P > GRAM_BLOCK)."""
    rng = np.random.default_rng(3)
    o = jnp.asarray(rng.standard_normal((200, 2 * GRAM_BLOCK + 5)) + 1j * rng.standard_normal((200, 2 * GRAM_BLOCK + 5)))
    e_loc = jnp.asarray(rng.standard_normal(200) + 1j * rng.standard_normal(200))
    w = jnp.full((200,), 1 / 200)
    d, g, d_min = map(np.asarray, jax.jit(lambda o, e, w: (sr_dense(o, e, w, 0.01), gradient_from_jacobian(o, e, w),
                                                          minsr(o, e, w, 0.01)))(o, e_loc, w))
    do = np.asarray(o) - np.asarray(o).mean(axis=0)
    S = np.real(do.conj().T @ do) / 200
    np.testing.assert_allclose((S + 0.01 * np.eye(S.shape[0])) @ d, g, atol=1e-9 * np.abs(g).max())
    np.testing.assert_allclose(d_min, d, rtol=1e-6, atol=1e-9 * np.abs(d).max())


def test_a_float32_product_that_is_not_positive_definite_is_redone_in_float64():
    """Mixed precision's S = b bᵀ in float32, when one sample's O is 3000× the others' and S has directions
    below the shift (a rank-8 O): the float32 rounding of the outlier's entries leaves S + λ with negative
    eigenvalues, so its Cholesky gives NaN; the solve then forms S in float64 and returns its direction."""
    rng = np.random.default_rng(5)
    o = (rng.standard_normal((256, 8)) @ rng.standard_normal((8, 48))) * (1 + 0.5j)
    o[7] *= 3e3
    ob = (o - o.mean(axis=0)) / 16  # √p ΔO, p = 1/256
    s32 = np.asarray(gram(jnp.asarray(np.concatenate([ob.real.T, ob.imag.T], axis=1), jnp.float32)), np.float64)
    o, e_loc, w = jnp.asarray(o), jnp.asarray(rng.standard_normal(256) + 0j), jnp.full((256,), 1 / 256)
    assert np.linalg.eigvalsh(s32 + 1e-3 * np.eye(len(s32))).min() < 0  # the case this test is about
    mixed, full = jax.jit(lambda o, e, w: (sr_dense(o, e, w, 1e-3, jnp.float32), sr_dense(o, e, w, 1e-3)))(o, e_loc, w)
    np.testing.assert_array_equal(np.asarray(mixed), np.asarray(full))
    assert np.isfinite(np.asarray(full)).all()


def test_holomorphic_dense_sr_equals_real_formulation():
    model = RBM(alpha=2, init_std=0.3)
    params, sigma, e_loc, w = problem(model, b=100)

    @jax.jit
    def both(params, sigma, e_loc, w):
        o = jacobian(model.apply, params, sigma)
        oc = jacobian_holomorphic(model.apply, params, sigma)
        return sr_dense_holomorphic(oc, e_loc, w, 0.01), sr_dense(o, e_loc, w, 0.01)

    holomorphic, real = both(params, sigma, e_loc, w)
    np.testing.assert_allclose(holomorphic, real, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("alpha, visible", [(2, True), (1, False)])
def test_rbm_moments_equal_jacobian_products_and_give_the_same_sr(alpha, visible):
    """RBM.holomorphic_moments (from σ̂ ⊗ t̂ pairs, no Jacobian) = ⟨O*Oᵀ⟩, ⟨O⟩, ⟨O* v⟩ of the Jacobian, and
    the SR direction from them equals the dense holomorphic SR."""
    model = RBM(alpha=alpha, init_std=0.3, use_visible_bias=visible)
    params, sigma, e_loc, w = problem(model, b=100)

    @jax.jit
    def moments_and_sr(params, sigma, e_loc, w):
        oc = jacobian_holomorphic(model.apply, params, sigma)
        de = e_loc - w @ e_loc
        d = sr_from_moments(*model.apply(params, sigma, w, de, method="holomorphic_moments"), 0.01)
        return oc, model.apply(params, sigma, w, e_loc, method="holomorphic_moments"), d, sr_dense_holomorphic(oc, e_loc, w, 0.01)

    oc, (second, mean, force), d, d_dense = moments_and_sr(params, sigma, e_loc, w)
    oc, wn = np.asarray(oc), np.asarray(w)
    np.testing.assert_allclose(np.asarray(second), (oc.conj().T * wn) @ oc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(mean), wn @ oc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(force), oc.conj().T @ (wn * np.asarray(e_loc)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(d, d_dense, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model", [RBM(alpha=1, init_std=0.3), RealTanhNet()], ids=["rbm", "nonholomorphic"])
def test_cg_agrees_with_dense_sr(model):
    params, sigma, e_loc, w = problem(model, b=100)
    dense, cg = jax.jit(lambda p, s, e, w: (sr_dense(jacobian(model.apply, p, s), e, w, 0.01),
                                            sr_cg(model.apply, p, s, e, w, 0.01, tol=1e-12, maxiter=1000)))(
        params, sigma, e_loc, w)
    np.testing.assert_allclose(cg, dense, rtol=1e-6, atol=1e-8 * np.abs(dense).max())


def test_learning_rate_schedules():
    sched = optax.cosine_decay_schedule(0.05, 100)
    times = (0, 1, 37, 99, 100, 150)
    constant, cosine, expected = jax.jit(lambda: (learning_rate("constant", 0.05, 17, 100),
                                                  [learning_rate("cosine", 0.05, t, 100) for t in times],
                                                  [sched(t) for t in times]))()
    np.testing.assert_allclose(constant, 0.05)
    for got, want in zip(cosine, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="schedule must be one of"):
        learning_rate("linear", 0.05, 0, 10)


@pytest.mark.parametrize("solver", ["sr", "minsr"])
def test_trust_region_measures_the_step_in_the_metric_and_shortens_it_to_the_bound(solver):
    """ℓ = η√(dᵀSd) from (g, d) alone equals the length in the explicit S; a bound below ℓ scales the
    step to exactly the bound, one above it (or none) leaves it alone."""
    model = RealTanhNet()
    params, sigma, e_loc, w = problem(model, b=30)  # 47 parameters, 30 samples: MinSR's regime
    shift, eta = 1e-3, 0.05

    @jax.jit
    def direction(params, sigma, e_loc, w):
        o = jacobian(model.apply, params, sigma)
        return o, gradient_from_jacobian(o, e_loc, w), (sr_dense if solver == "sr" else minsr)(o, e_loc, w, shift)

    o, g, d = direction(params, sigma, e_loc, w)
    do = np.asarray(o) - np.asarray(w) @ np.asarray(o)
    S = np.real(np.einsum("s,si,sj->ij", np.asarray(w), do.conj(), do))
    length = eta * np.sqrt(np.asarray(d) @ S @ np.asarray(d))
    bounds = (jnp.inf, 0.3 * length, 2.0 * length)
    scales = jax.jit(lambda bounds: [trust_region_scale(d, g, shift, eta, b) for b in bounds])(bounds)
    factor, measured = scales[0]
    np.testing.assert_allclose(measured, length, rtol=1e-7)
    assert factor == 1.0
    for bound, (factor, _) in zip(bounds[1:], scales[1:]):
        step = eta * float(factor) * np.asarray(d)
        np.testing.assert_allclose(np.sqrt(step @ S @ step), min(bound, length), rtol=1e-7)
