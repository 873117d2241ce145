"""ConvNeXt NQS: equivariance of the encoder, exact momentum of the output, settings, precision.

The networks run jitted, each test's network passes in one compiled program: run eagerly, a ConvNeXt
forward compiles its ~400 primitives one by one (and the Flax initialisers their random draws) — seconds
per geometry; the parameters come from ``jax.eval_shape`` and NumPy, so initialising compiles nothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs_core  # noqa: F401  (enables x64)
from nqs_core.lattice import make_lattice
from nqs_core.models import convnext
from nqs_core.models.convnext import ConvNeXt, log_cosh
from nqs_core.models.symmetry import MomentumProjection, project
from nqs_core.settings import RunSettings


def random_configs(n_sites: int, batch: int, seed: int = 0, sz_zero: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if not sz_zero:
        return rng.choice(np.array([-1, 1], np.int8), size=(batch, n_sites))
    base = np.array([1, -1] * (n_sites // 2), dtype=np.int8)
    return np.stack([rng.permutation(base) for _ in range(batch)])


def init(model, n_sites, seed=0):
    """Random parameters with ``model``'s structure, shapes and dtypes, none at its initial value (LayerNorm
    scales/biases are 1/0 at init) so no symmetry is accidental: about the initial scale (kernels
    N(0, 1/fan-in), visible phases N(0, 0.5²), scales 1, the rest 0) plus 0.3·N(0, 1) on every entry.  The structure comes from
    ``jax.eval_shape`` (traced, not run: nothing compiles), the values from NumPy."""
    shapes = jax.eval_shape(model.init, jax.random.key(seed), random_configs(n_sites, 2, seed))
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = getattr(path[-1], "key", "")
        base = np.ones(s.shape) if name == "scale" else np.zeros(s.shape)
        if name == "kernel":
            base = rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))
        if name == "visible_bias":  # [amplitude a_x, phase b_x], the phase as widely spread as convnext's init
            base = rng.standard_normal(s.shape) * np.array([0.1, convnext.PHASE_STD])
        return jnp.asarray(base + 0.3 * rng.standard_normal(s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def log_psis(models, params, sigma) -> list[np.ndarray]:
    """``[m.apply(p, sigma) for m, p in zip(models, params)]``, as one compiled program."""
    return [np.asarray(x) for x in jax.jit(lambda ps, s: [m.apply(p, s) for m, p in zip(models, ps)])(params, sigma)]


def translated(lattice, sigma) -> np.ndarray:
    """σ followed by σ shifted by one site along each axis (the batch ``assert_momentum`` reads)."""
    return np.concatenate([sigma] + [sigma[:, perm] for perm in lattice.unit_translations()])


def assert_momentum(log_psi, lattice, k_over_pi, rtol):
    """ψ(shift(σ, e_a)) = e^{ik_a} ψ(σ) for each axis, compared on the scale of the largest |ψ|;
    ``log_psi``: log ψ of ``translated(lattice, σ)``."""
    k = lattice.momentum_index(k_over_pi)
    log_psi = np.asarray(log_psi).reshape(1 + lattice.dim, -1)
    psi = np.exp(log_psi - np.max(log_psi[0].real))
    for a in range(lattice.dim):
        err = np.max(np.abs(psi[1 + a] - np.exp(1j * k[a]) * psi[0]))
        assert err < rtol, (k_over_pi, a, err)
    return psi[0]


# ----- encoder equivariance -------------------------------------------------------------------
@pytest.mark.parametrize("kind,L,patch,kernel", [("chain", 12, 2, 3), ("chain", 12, 3, 4), ("square", 6, 2, 3), ("square", 4, 1, 3)])
def test_encoder_commutes_with_patch_translations(kind, L, patch, kernel):
    lat = make_lattice(kind, L)
    model = ConvNeXt(lattice=lat, patch=patch, kernel=kernel, depth=2, features=6)
    params = init(model, lat.n_sites)
    sigma = random_configs(lat.n_sites, 8, seed=3, sz_zero=False)
    # σ, σ shifted by one patch along each axis, σ shifted by one site: encoded in one pass
    patch_shifts = []
    for a in range(lat.dim):
        r = np.zeros(lat.dim, dtype=int)
        r[a] = patch
        patch_shifts.append(lat.site(lat.coords + r))
    batch = np.concatenate([sigma] + [sigma[:, perm] for perm in patch_shifts] + [sigma[:, lat.unit_translations()[0]]])
    encoded = np.asarray(jax.jit(lambda p, s: model.apply(p, s, method=ConvNeXt.encode))(params, batch))
    h, h_shifts, h_one = encoded[:8], encoded[8:-8].reshape((lat.dim, 8) + encoded.shape[1:]), encoded[-8:]
    assert h.shape == (8,) + (L // patch,) * lat.dim + (6,)
    # shift(σ, s e_x) moves patch p+1 to p: the feature map rolls by −1 along the x grid axis
    for a in range(lat.dim):
        grid_axis = 1 if lat.dim == 1 else (2 if a == 0 else 1)  # grid axes are (p_y, p_x)
        np.testing.assert_allclose(h_shifts[a], np.roll(h, -1, axis=grid_axis), atol=1e-12)
    # and a shift by a single site (not a patch translation) is not a symmetry of the encoder
    if patch > 1:
        assert not np.allclose(h_one, np.roll(h, -1, axis=1), atol=1e-3)


# ----- exact momentum for every allowed k ----------------------------------------------------
@pytest.mark.parametrize("kind,L,patch,kernel,every", [("chain", 8, 2, 3, True), ("square", 4, 2, 2, True),
                                                      ("chain", 6, 3, 2, False), ("chain", 8, 1, 3, False)])
def test_every_allowed_momentum_is_exact(kind, L, patch, kernel, every):
    """Every allowed k on the chain of 8 and the 4×4 square; a few k for other patch sizes."""
    lat = make_lattice(kind, L)
    sigma = random_configs(lat.n_sites, 16, seed=1)
    momenta = lat.momenta() / np.pi
    ks = [tuple(k) for k in (momenta if every else momenta[[1, len(momenta) // 2]])]
    models = [ConvNeXt(lattice=lat, patch=patch, kernel=kernel, depth=1, features=4, k_over_pi=k) for k in ks]
    params = [init(model, lat.n_sites, seed=2) for model in models]
    for k, log_psi in zip(ks, log_psis(models, params, translated(lat, sigma))):
        psi = assert_momentum(log_psi, lat, k, rtol=1e-10)
        assert np.max(np.abs(psi)) == pytest.approx(1.0)  # not the zero function


def test_square_6x6_momentum_with_inter_patch_phases():
    """6×6 with 2×2 patches: k = (2π/3, π/3) needs both the patch phases and the intra-patch sum."""
    lat = make_lattice("square", 6)
    sigma = random_configs(36, 8, seed=4)
    ks = [(2 / 3, 1 / 3), (1.0, 0.0)]
    models = [ConvNeXt(lattice=lat, patch=2, kernel=3, depth=2, features=4, k_over_pi=k) for k in ks]
    params = [init(model, 36, seed=5) for model in models]
    for k, log_psi in zip(ks, log_psis(models, params, translated(lat, sigma))):
        assert_momentum(log_psi, lat, k, rtol=1e-10)


def test_float32_precision_and_momentum():
    lat = make_lattice("square", 4)
    model = convnext.from_settings(RunSettings(model="convnext", lattice="square", L=4, dtype="float32", kernel=2, k=(1.0, 0.0)), lat)
    params = init(model, 16)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    sigma = random_configs(16, 16, seed=6)
    [out] = log_psis([model], [params], translated(lat, sigma))
    assert out.dtype == jnp.complex64 and out.shape == (3 * 16,)
    assert_momentum(out, lat, (1.0, 0.0), rtol=2e-5)


def test_mixed_precision_forward_keeps_float64_parameters_and_agrees_with_float64():
    """dtype="mixed": float64 parameters (what the Jacobian, the gradient and the update see); the forward
    passes of sampling and local energies run the same network in float32 and agree with float64 to
    float32 rounding, local energies included; the dense SR product is formed in float32."""
    from nqs_core.hamiltonians import make_hamiltonian
    from nqs_core.local_energy import local_energies
    from nqs_core.models import make_forward, make_model
    from nqs_core.optimizers import RealRavel
    from nqs_core.preconditioners import preconditioner_for

    s = RunSettings(hamiltonian="j1j2", model="convnext", lattice="square", L=4, kernel=2, k=(0.0, 0.0), dtype="mixed")
    lat = make_lattice("square", 4)
    model = make_model(s, lat)
    params = init(model, 16)
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(params))
    sigma = random_configs(16, 64, seed=4)
    forward = make_forward(s, lat, model)
    ham = make_hamiltonian("j1j2", lat, J2=0.5)

    @jax.jit
    def passes(p, x):
        exact, fast = model.apply(p, x), forward(p, x)
        return exact, fast, local_energies(model.apply, p, ham, x, exact), local_energies(forward, p, ham, x, fast)

    exact, fast, e64, e32 = passes(params, sigma)
    assert exact.dtype == jnp.complex128 and fast.dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(fast), np.asarray(exact), rtol=0, atol=2e-5 * float(jnp.max(jnp.abs(exact))))
    assert e32.dtype == jnp.complex128
    np.testing.assert_allclose(np.asarray(e32), np.asarray(e64), rtol=0, atol=1e-4 * float(jnp.max(jnp.abs(e64))))
    ravel = RealRavel.of(params)
    assert preconditioner_for("sr", "dense", model, ravel, "mixed").product_dtype == jnp.float32
    assert preconditioner_for("sr", "dense", model, ravel).product_dtype is None


@pytest.mark.parametrize("model, precision", [("convnext", "mixed"), ("rbm", "float64"), ("jastrow", "float64")])
def test_the_default_precision_is_the_models_own(model, precision):
    """dtype="auto" (the default) resolves per model (settings.AUTO_DTYPE): the engine of the default ConvNeXt
    runs float32 forward passes and a float32 SR product on float64 parameters; the RBM and the Jastrow
    stay float64 throughout; an explicit dtype wins."""
    from nqs_core.vmc import VMC

    s = RunSettings(hamiltonian="j1j2", model=model, kernel=2, k=(0.0, 0.0), samples=32, chains=4)
    assert s.dtype == "auto" and s.precision == precision and s.replace(dtype="float64").precision == "float64"
    vmc = VMC(s)
    state = vmc.init()
    assert {jnp.dtype(x.dtype) for x in jax.tree.leaves(state.params)} <= {jnp.dtype(jnp.float64),
                                                                          jnp.dtype(jnp.complex128)}
    sigma = jnp.asarray(random_configs(16, 4, seed=1))
    fast = jnp.float32 if precision == "mixed" else None
    assert vmc.engine.forward(state.params, sigma).dtype == (jnp.complex64 if fast else jnp.complex128)
    assert getattr(vmc.engine.preconditioner, "product_dtype", None) == fast
    assert vmc.engine is VMC(s.replace(dtype=precision)).engine  # one compiled engine for "auto" and its value


def test_projection_is_idempotent_and_orthogonal():
    """The ConvNeXt at k is a momentum eigenstate: the generic projector onto k leaves it unchanged
    and the projector onto any other k' annihilates it."""
    lat = make_lattice("chain", 8)
    sigma = random_configs(8, 12, seed=7)
    model = ConvNeXt(lattice=lat, depth=1, features=4, k_over_pi=(0.5,))
    params = init(model, 8)
    ks = [tuple(k) for k in lat.momenta() / np.pi]
    wrapped = [MomentumProjection(base=model, lattice=lat, k_over_pi=k) for k in ks]
    log_psi, *projected = log_psis([model, *wrapped], [params] + [{"params": {"base": params["params"]}}] * len(ks),
                                   sigma)
    psi = np.exp(log_psi)
    for k, log_psi_k in zip(ks, projected):
        expected = psi if np.isclose(k[0], 0.5) else np.zeros_like(psi)
        np.testing.assert_allclose(np.exp(log_psi_k), expected, atol=1e-12 * np.max(np.abs(psi)))


# ----- building from settings ----------------------------------------------------------------
def test_from_settings_defaults_and_project_dispatch():
    s = RunSettings(model="convnext", lattice="chain", L=16)
    lat = make_lattice("chain", 16)
    model = convnext.from_settings(s, lat)
    assert (model.depth, model.features, model.patch, model.kernel) == (2, 8, 2, 3)
    assert model.param_dtype == jnp.float64 and model.k == (0.0,)
    at_pi = project(model, lat, (1.0,))
    assert isinstance(at_pi, ConvNeXt) and at_pi.k == (1.0,)
    assert ConvNeXt.from_settings(s.replace(k=(0.25,)), lat).k == (0.25,)


@pytest.mark.parametrize("change,setting", [({"patch": 3}, "patch"), ({"kernel": 9}, "kernel"), ({"k": (0.3,)}, "k")])
def test_invalid_geometry_names_the_setting(change, setting):
    lat = make_lattice("chain", 16)
    s = RunSettings(model="convnext", lattice="chain", L=16).replace(**change)
    with pytest.raises(ValueError, match=rf"^{setting} must"):
        convnext.from_settings(s, lat)


def test_open_boundaries_run_unprojected_and_reject_momentum():
    lat = make_lattice("chain", 8, "open")
    model = ConvNeXt(lattice=lat, depth=1, features=4)
    params = init(model, 8)
    [out] = log_psis([model], [params], random_configs(8, 4))
    assert out.shape == (4,) and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="k must be 0 with open boundaries"):
        ConvNeXt(lattice=lat, k_over_pi=(1.0,)).init(jax.random.key(0), random_configs(8, 1))


def test_log_cosh_matches_definition_and_is_stable():
    z = np.array([0.3 + 0.2j, -1.5 + 2.0j, 40.0 - 1.0j, -700.0 + 0.5j])
    out = np.asarray(jax.jit(log_cosh)(z))
    ref = np.log(np.cosh(z[:3]))
    np.testing.assert_allclose(np.exp(out[:3]), np.exp(ref), rtol=1e-12)
    big = complex(out[3])
    assert np.isfinite(big) and big.real == pytest.approx(700.0 - np.log(2.0))


def test_marshall_prior_composition_has_requested_momentum():
    """make_model: ConvNeXt → Marshall prior → momentum k.  On a chain of L = 4n+2 the prior carries
    momentum π, so the network is built at k − π and the full state has momentum k."""
    from nqs_core.models import make_model

    lat = make_lattice("chain", 6)
    sigma = random_configs(6, 12, seed=8)
    ks = [(0.0,), (1.0,), (2 / 3,)]
    models = [make_model(RunSettings(model="convnext", lattice="chain", L=6, sign="marshall", k=k, kernel=3, depth=1,
                                     features=4), lat) for k in ks]
    params = [init(model, 6) for model in models]
    for k, log_psi in zip(ks, log_psis(models, params, translated(lat, sigma))):
        assert_momentum(log_psi, lat, k, rtol=1e-10)


@pytest.mark.parametrize("kind,L,kernel", [("chain", 8, 3), ("square", 4, 2)])
def test_visible_bias_expresses_the_marshall_sign(kind, L, kernel):
    """With b_x = π/2 on the A sites of a patch (and a zero readout) the network is exactly the
    Marshall-signed uniform state: agreement 1 on every Sᶻ = 0 configuration; a random network is not."""
    from nqs_core.basis import basis_codes, decode
    from nqs_core.observables import marshall_agreement

    lat = make_lattice(kind, L)
    model = ConvNeXt(lattice=lat, depth=1, features=4, kernel=kernel)
    sigma = decode(basis_codes(lat.n_sites, sz_zero=True), lat.n_sites)
    agreement_and_log_psi = jax.jit(lambda p: (marshall_agreement(model.apply, p, sigma, lat), model.apply(p, sigma)))
    params = init(model, lat.n_sites, seed=2)
    assert float(agreement_and_log_psi(params)[0]) < 0.9
    p = params["params"]
    p["readout"] = jax.tree.map(jnp.zeros_like, p["readout"])
    s = model.patch
    u = np.arange(s**lat.dim)
    on_a = (u % 2 == 0) if lat.dim == 1 else ((u // s + u % s) % 2 == 0)  # patch origins lie on A
    p["visible_bias"] = jnp.asarray(np.stack([np.zeros(len(u)), np.where(on_a, np.pi / 2, 0.0)], axis=1))
    agreement, log_psi = agreement_and_log_psi(params)
    assert float(agreement) == 1.0
    log_psi = np.asarray(log_psi)
    np.testing.assert_allclose(log_psi.real, log_psi.real[0], atol=1e-12)
