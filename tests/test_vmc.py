"""The VMC step against exact results from the full basis.

Most tests' computations outside the engine run as one jitted program (run eagerly, the model passes, the
energy functions and their gradients compiled each primitive on its own).  The engine runs use the suite's
``TINY`` and its step counts 1 and 2 (the programs ``test_driver``'s runs compile too, found in the
persistent cache by whichever process comes second)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs_core  # noqa: F401
from conftest import TINY, compilations
from nqs_core.basis import decode, hamiltonian_basis, sparse_matrix
from nqs_core.models import RBM, Jastrow, MarshallSign
from nqs_core.models.symmetry import project, project_point_group
from nqs_core.optimizers import RealRavel
from nqs_core.settings import RunSettings
from nqs_core.vmc import VMC, build_problem, engine_for, estimate, flip_ratio_fn, local_energies, static_settings

CASES = {
    "heisenberg-chain8": RunSettings(hamiltonian="heisenberg", lattice="chain", L=8),
    "j1j2-chain8": RunSettings(hamiltonian="j1j2", lattice="chain", L=8, J2=0.4),
    "tfim-chain8": RunSettings(hamiltonian="tfim", lattice="chain", L=8, h=0.7),
    "j1j2-square4": RunSettings(hamiltonian="j1j2", lattice="square", L=4, J2=0.5),
}


def exact_basis(settings):
    """The Hamiltonian, its basis (M, N) and its sparse matrix on that basis."""
    lattice, ham = build_problem(settings)
    codes = hamiltonian_basis(ham)
    return ham, jnp.asarray(decode(codes, lattice.n_sites)), sparse_matrix(ham, codes)


def init_params(model, basis):
    """``model.init(jax.random.key(3), basis[:1])`` inside a jitted function (traced there, not run eagerly)."""
    return model.init(jax.random.key(3), basis[:1])


def exact_setup(settings, model):
    """``exact_basis`` and the model's parameters (initialised eagerly: the primitives of these small models
    compile once per process and serve every case, where one jitted program per case cost twice as much)."""
    ham, basis, H = exact_basis(settings)
    params = model.init(jax.random.key(3), basis[:1])
    return ham, basis, H, params


@pytest.mark.parametrize("case", list(CASES))
def test_local_energies_equal_h_psi_over_psi_on_every_basis_state(case):
    s = CASES[case]
    lattice, _ = build_problem(s)
    model = MarshallSign(RBM(alpha=1, init_std=0.3), tuple(int(v == 0) for v in lattice.sublattice))
    ham, basis, H = exact_basis(s)

    @jax.jit
    def passes(x):
        p = init_params(model, x)
        lp = model.apply(p, x)
        return lp, local_energies(model.apply, p, ham, x, lp), local_energies(model.apply, p, ham, x, lp, chunk=333)

    lp, e_loc, chunked = passes(basis)
    psi = np.exp(np.asarray(lp))
    np.testing.assert_allclose(np.asarray(e_loc), (H @ psi) / psi, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(e_loc), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("prior", ["none", "marshall"])
@pytest.mark.parametrize("case", list(CASES))
def test_rbm_fast_local_energies_equal_network_passes(case, prior):
    """The RBM's flip-ratio fast path (θ' = θ + W·Δσ), alone and through the Marshall prior, gives
    the local energies of the plain path and H ψ / ψ on every basis state."""
    s = CASES[case]
    model = RBM(alpha=1, init_std=0.1)
    if prior == "marshall":
        model = MarshallSign(model, tuple(int(v == 0) for v in build_problem(s)[0].sublattice))
    ham, basis, H, params = exact_setup(s, model)
    assert flip_ratio_fn(model) is not None and flip_ratio_fn(MarshallSign(model, (1, 0) * 8)) is not None
    assert flip_ratio_fn(MarshallSign(Jastrow(), (1, 0) * 8)) is None
    lp = model.apply(params, basis)
    psi = np.exp(np.asarray(lp))
    fast = jax.jit(lambda p, x, l: local_energies(model.apply, p, ham, x, l, ratios=flip_ratio_fn(model)))
    plain = jax.jit(lambda p, x, l: local_energies(model.apply, p, ham, x, l))
    e_fast, e_plain = np.asarray(fast(params, basis, lp)), np.asarray(plain(params, basis, lp))
    np.testing.assert_allclose(e_fast, e_plain, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e_fast, (H @ psi) / psi, rtol=1e-10, atol=1e-10)


MOMENTA = {"heisenberg-chain8": (1.0,), "j1j2-chain8": (0.5,), "tfim-chain8": (0.0,), "j1j2-square4": (1.0, 0.0)}
# (case, momentum or None, point group): momentum projections at k = π, π/2, 0 and (π, 0); C4v of the square alone;
# the chain's reflection over its translations at k = 0 (one wrapper's fast ratios through the other's)
PROJECTIONS = [*((case, k, "none") for case, k in MOMENTA.items()), ("j1j2-square4", None, "full"),
               ("heisenberg-chain8", (0.0,), "full")]


def projected(model, lattice, k, group):
    """``model`` projected on the momentum ``k`` (unless None), then on A1 of the point group ``group``."""
    model = project(model, lattice, k) if k is not None else model
    return project_point_group(model, lattice, group)


@pytest.mark.parametrize("case, k, group", PROJECTIONS, ids=[f"{c}-k{k}-{g}" for c, k, g in PROJECTIONS])
def test_projected_fast_local_energies_equal_network_passes(case, k, group):
    """Through a momentum projection (complex phases at k = π/2) or a point-group projection, the base's fast
    ratios, one per symmetry element weighted by that element's share of the projected Ψ(σ), give the local
    energies of the plain path (a projected network pass per connected configuration) and H ψ / ψ on the basis
    states the projection keeps."""
    s = CASES[case]
    lattice = build_problem(s)[0]
    model = RBM(alpha=1, init_std=0.1)
    if s.hamiltonian != "tfim":
        model = MarshallSign(model, tuple(int(v == 0) for v in lattice.sublattice))
    model = projected(model, lattice, k, group)
    ham, basis, H, params = exact_setup(s, model)
    assert flip_ratio_fn(model) is not None and flip_ratio_fn(projected(Jastrow(), lattice, k, group)) is None
    lp = model.apply(params, basis)
    psi = np.exp(np.asarray(lp))
    kept = np.abs(psi) > 1e-8 * np.abs(psi).max()  # k = (π, 0) annihilates the states of period 1 along x
    assert kept.sum() > 0.9 * kept.size
    exact = (H @ psi) / np.where(kept, psi, 1)
    rows = np.flatnonzero(kept)[:: max(1, kept.size // 1000)]  # the square: every 12th of its 12870 states
    fast = jax.jit(lambda p, x, l: local_energies(model.apply, p, ham, x, l, ratios=flip_ratio_fn(model)))
    plain = jax.jit(lambda p, x, l: local_energies(model.apply, p, ham, x, l))
    x, l = basis[rows], lp[rows]
    e_fast, e_plain = np.asarray(fast(params, x, l)), np.asarray(plain(params, x, l))
    np.testing.assert_allclose(e_fast, e_plain, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(e_fast, exact[rows], rtol=1e-10, atol=1e-10)


def test_projected_flip_ratios_of_patterns_the_translations_do_not_map_onto_each_other():
    """Flip patterns that are not images of one another under the translations (here the pairs (0, 1) and (5, 2))
    take the projection's other path, one base call per translation: ratios equal to network passes."""
    lattice = build_problem(CASES["heisenberg-chain8"])[0]
    model = project(RBM(alpha=1, init_std=0.3), lattice, (0.5,))
    sigma = jnp.asarray(np.random.default_rng(1).choice([-1, 1], size=(6, 8)).astype(np.int8))
    params = model.init(jax.random.PRNGKey(2), sigma)
    sites = np.array([[0, 1], [5, 2]])
    fast = np.asarray(model.apply(params, sigma, sites, method="flip_ratios"))
    lp = model.apply(params, sigma)
    for m, row in enumerate(sites):
        flipped = sigma.at[:, row].multiply(-1)
        np.testing.assert_allclose(fast[:, m], np.exp(np.asarray(model.apply(params, flipped) - lp)),
                                   rtol=1e-10, atol=1e-12)


def exact_energy_fn(model, ham, basis, H, params):
    rr = RealRavel.of(params)
    Hd = jnp.asarray(H.toarray())

    def energy(theta):
        psi = jnp.exp(model.apply(rr.unravel(theta), basis))
        return jnp.real(jnp.vdot(psi, Hd @ psi) / jnp.vdot(psi, psi))

    return rr, energy


@pytest.mark.parametrize("optimizer, solver", [("sgd", "dense"), ("sr", "dense"), ("sr", "cg"), ("minsr", "dense")])
@pytest.mark.parametrize("case, model_name", [("heisenberg-chain8", "rbm"), ("tfim-chain8", "jastrow")])
def test_exact_expectation_gradient_equals_gradient_of_exact_energy(optimizer, solver, case, model_name):
    s = CASES[case]
    model = RBM(alpha=1, init_std=0.3) if model_name == "rbm" else Jastrow(init_std=0.3)
    ham, basis, H, params = exact_setup(s, model)
    rr, energy = exact_energy_fn(model, ham, basis, H, params)
    theta = rr.ravel(params)
    lp = jax.jit(model.apply)(params, basis)
    p = np.abs(np.exp(np.asarray(lp))) ** 2
    weights = jnp.asarray(p / p.sum())
    # each side one compiled program (run eagerly, ~170 small ones: 7 s a case)
    e_loc, g, d = jax.jit(lambda prm, l, w: estimate(model, prm, ham, basis, l, w, optimizer, solver, 1e-3))(
        params, lp, weights)
    exact_e, exact_g = jax.jit(jax.value_and_grad(energy))(theta)
    np.testing.assert_allclose(float(jnp.real(weights @ e_loc)), float(exact_e), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g), np.asarray(exact_g), atol=1e-8, rtol=0)
    assert np.abs(exact_g).max() > 1e-3  # the comparison is not trivially between zeros
    if optimizer == "sgd":
        np.testing.assert_array_equal(d, g)



# the suite's small run (6-site Heisenberg ring, RBM, SR); its steps fused 1 or 2 per call, as test_driver's runs
SMALL = RunSettings(**TINY, steps=30, lr=0.05)


def test_step_returns_per_step_statistics_and_lowers_energy():
    vmc = VMC(SMALL)
    state = vmc.init()
    keys = {"energy", "error", "variance", "acceptance", "r_hat", "tau", "grad_norm", "v_score", "finite"}
    calls = []
    for _ in range(15):  # 30 steps, 2 fused per call
        state, stats = vmc.step(state, 2)
        assert keys <= set(stats)
        assert all(np.shape(stats[k]) == (2,) for k in keys)
        calls.append(stats)
    stats = {k: np.concatenate([np.asarray(c[k]) for c in calls]) for k in keys}
    assert int(state.step) == 30 and bool(np.all(stats["finite"]))
    e = stats["energy"]
    exact = -2.8027756377319946  # 6-site Heisenberg ring, H = Σ S·S (ED)
    assert e[-1] < e[0] - 0.5 and e[-1] > exact - 5 * float(stats["error"][-1]) - 1e-9
    assert np.all((stats["acceptance"] > 0) & (stats["acceptance"] <= 1))
    assert vmc.samples(state, 3).shape == (3, 6)
    with compilations() as compiled:
        ev = vmc.evaluate(state, 256)  # by the 2-step program compiled above, not learning
    assert set(compiled) <= {"jit(chain_statistics)"}, compiled
    assert ev["n_samples"] == 256 and abs(ev["energy"] - e[-1]) < 0.5
    separate = VMC(SMALL).evaluate(state, 256)  # a VMC that never stepped: a program of its own
    assert set(separate) == set(ev) and separate["n_samples"] == 256
    assert abs(ev["energy"] - separate["energy"]) < 4 * math.hypot(ev["error"], separate["error"]), (ev, separate)


def test_a_step_that_does_not_learn_only_moves_the_chains():
    """``hyper["learn"]`` False (the driver's final evaluation): the parameters, the optimizer state and the step
    count stay, the chains move on, and the step's statistics are those of its local energies, returned per
    sample as (n, chains, samples per chain)."""
    vmc = VMC(SMALL)
    state, _ = vmc.step(vmc.init(), 2)  # a state with an optimizer history
    after, stats = vmc.engine.multi_step(state, {**vmc.hyper, "learn": jnp.asarray(False)}, 2)
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), (state.params, state.opt_state, state.step),
                                  (after.params, after.opt_state, after.step))
    assert all(jax.tree_util.tree_leaves(same))
    assert not np.array_equal(after.sampler.sigma, state.sampler.sigma)
    e_loc = np.asarray(stats["local_energies"])
    assert e_loc.shape == (2, SMALL.chains, SMALL.samples // SMALL.chains)
    np.testing.assert_allclose(np.asarray(stats["energy"]), e_loc.mean(axis=(1, 2)), rtol=1e-12)
    assert np.all(np.asarray(stats["grad_norm"]) == 0)


def test_fused_steps_equal_single_steps():
    vmc = VMC(SMALL)
    a, stats_a = vmc.step(vmc.init(), 2)
    b = vmc.init()
    energies = []
    for _ in range(2):
        b, st = vmc.step(b, 1)
        energies.append(float(st["energy"][0]))
    np.testing.assert_allclose(np.asarray(stats_a["energy"]), energies, rtol=1e-10)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-10)


def test_non_finite_step_keeps_last_finite_state():
    vmc = VMC(SMALL.replace(optimizer="sgd"))
    state, stats = vmc.step(vmc.init(), 2)
    assert bool(np.all(stats["finite"]))
    # an update of size 1e308·g overflows to inf (the settings cap lr at 10; the engine takes any value)
    hyper = dict(vmc.hyper, lr=jnp.asarray(1e308))
    bad = state
    halfway, first = vmc.engine.multi_step(bad, hyper, 2)  # 4 steps, 2 fused per call
    after, second = vmc.engine.multi_step(halfway, hyper, 2)
    finite = np.concatenate([np.asarray(first["finite"]), np.asarray(second["finite"])])
    assert not finite.all()
    k = int(np.argmin(finite))  # the first non-finite step
    assert not finite[k:].any()  # later steps start from the same kept state and fail the same way
    assert int(after.step) == int(bad.step) + k  # nothing after the last finite step was applied
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(after.params))


def test_engines_are_shared_between_runs_with_equal_static_settings():
    a = VMC(SMALL)
    b = VMC(SMALL.replace(seed=5, lr=0.01, steps=77, diag_shift=0.1))
    assert a.engine is b.engine
    assert static_settings(SMALL) == static_settings(SMALL.replace(seed=9))
    assert engine_for.cache_info().hits >= 1
    sa, sb = a.init(), b.init()
    assert not np.array_equal(np.asarray(sa.sampler.sigma), np.asarray(sb.sampler.sigma))


@pytest.mark.parametrize("name, couplings", [("tfim", [dict(h=0.5), dict(J=-0.7, h=1.5), dict(h=0.0)]),
                                             ("j1j2", [dict(J2=0.0), dict(J1=0.8, J2=0.9)])])
def test_runs_with_other_couplings_share_the_compiled_step_and_measure_their_own_energy(name, couplings):
    """The couplings are run-time values: one Engine and one compiled step for all of them; the engine's
    local energies (its structure + this run's couplings) are H ψ/ψ of the run's own dense H on the full
    basis, and the step's energy (exact sampling, |ψ|²) lies within its error bar of ⟨ψ|H|ψ⟩/⟨ψ|ψ⟩."""
    base = RunSettings(hamiltonian=name, lattice="chain", L=6, sampler="exact", samples=512, chains=4, seed=2)
    runs = [VMC(base.replace(**c)) for c in couplings]
    engine = runs[0].engine
    assert all(v.engine is engine for v in runs)

    @jax.jit
    def e_loc_fn(p, x, g):
        lp = engine.model.apply(p, x)
        return lp, local_energies(engine.model.apply, p, engine.hamiltonian, x, lp, couplings=g)

    compiled = engine.multi_step._cache_size()
    for vmc in runs:
        state = vmc.init()
        _, stats = vmc.step(state, 1)
        _, basis, H = exact_basis(vmc.settings)
        lp, e_loc = e_loc_fn(state.params, basis, vmc.hyper["couplings"])
        psi = np.exp(np.asarray(lp))
        np.testing.assert_allclose(np.asarray(e_loc), (H @ psi) / psi, rtol=1e-10, atol=1e-10)
        exact = np.vdot(psi, H @ psi).real / np.vdot(psi, psi).real
        assert abs(float(stats["energy"][0]) - exact) < 4 * float(stats["error"][0]) + 1e-9, vmc.settings
    assert e_loc_fn._cache_size() == 1 and engine.multi_step._cache_size() <= compiled + 1


# the base of the variants: the small run under the Marshall prior
VARIANTS = SMALL.replace(sign="marshall")


@pytest.mark.parametrize("changes", [dict(optimizer="adam", lr=0.01), dict(optimizer="minsr", samples=64),
                                     dict(optimizer="sr", sr_solver="cg"), dict(sampler="exact"),
                                     dict(dtype="float32", model="jastrow", sign="marshall", momentum=0.5,
                                          schedule="cosine", optimizer="sgd"),
                                     dict(dtype="float32", sign="none"),  # RBM flip ratios and SR moments in complex64
                                     dict(dtype="mixed", model="jastrow"),  # float32 passes, float64 parameters
                                     dict(hamiltonian="tfim", sign="none")])
def test_variants_run_and_stay_finite(changes):
    vmc = VMC(VARIANTS.replace(**changes))
    state, stats = vmc.step(vmc.init(), 2)
    assert bool(np.all(stats["finite"])) and int(state.step) == 2
    assert stats["energy"].dtype == np.float64


@pytest.mark.parametrize("case", list(CASES))
def test_compacted_local_energies_equal_the_full_sum_on_random_states(case):
    """Only the nonzero connected terms are evaluated (compacted; whole, and chunked in 7s): the result
    equals the full padded sum Σ_m mel_m ψ(σ'_m)/ψ(σ) over every connected configuration, for random states."""
    from nqs_core.models.convnext import ConvNeXt

    s = CASES[case]
    lattice, ham = build_problem(s)
    model = ConvNeXt(lattice=lattice, depth=1, features=4, kernel=2, patch=2)
    sigma = jnp.asarray(np.random.default_rng(5).choice(np.array([-1, 1], np.int8), size=(24, lattice.n_sites)))

    @jax.jit
    def full_and_compacted(x):
        params = model.init(jax.random.key(2), x[:1])
        params = jax.tree.map(lambda v: v + 0.3 * jax.random.normal(jax.random.key(4), v.shape, v.dtype), params)
        lp = model.apply(params, x)
        diag, sigma_p, mels = ham.connected(x)
        lp_p = model.apply(params, sigma_p.reshape(-1, lattice.n_sites)).reshape(mels.shape)
        full = diag + jnp.sum(mels * jnp.exp(lp_p - lp[:, None]), axis=1)
        return full, [local_energies(model.apply, params, ham, x, lp, chunk=chunk) for chunk in (None, 7)]

    full, compacted = full_and_compacted(sigma)
    for got in compacted:
        np.testing.assert_allclose(np.asarray(got), np.asarray(full), rtol=1e-11, atol=1e-11)


def test_a_preconditioner_composes_with_any_optax_chain():
    """SR + Adam: the dense SR direction fed to Adam's transformation is one Engine, not a new branch."""
    import dataclasses

    from nqs_core.preconditioners import DenseSR, preconditioner_for

    vmc = VMC(VARIANTS.replace(optimizer="adam", lr=0.01))  # the adam variant's engine and initial state
    assert preconditioner_for("adam", "dense", vmc.model, vmc.engine.ravel).name == "gradient"
    engine = dataclasses.replace(vmc.engine, preconditioner=DenseSR())
    state = vmc.init()
    state, stats = engine.multi_step(state, vmc.hyper, 2)
    assert bool(np.all(stats["finite"])) and int(state.step) == 2
    assert int(state.opt_state.inner_state[0].count) == 2  # Adam's own state advanced


def test_a_bounded_step_is_the_same_step_shortened_to_max_step():
    """The step's reported length ℓ = η√(dᵀSd) (S from its 512 exactly drawn samples) agrees with the length
    of the step it takes in the full basis's metric to sampling accuracy; with ``max_step`` below ℓ the same
    samples give the same direction, scaled by max_step/ℓ (the TFIM at h = 3: energy scale 3, so the bound
    holds after the division by the scale)."""
    from nqs_core.optimizers import jacobian

    base = RunSettings(hamiltonian="tfim", lattice="chain", L=6, h=3.0, sampler="exact", samples=512, chains=4,
                       seed=2, lr=0.05)
    steps, lengths = {}, {}
    for bound in (None, 1e-4):
        vmc = VMC(base.replace(max_step=bound))
        state = vmc.init()
        new, stats = vmc.step(state, 1)
        ravel = RealRavel.of(state.params)
        steps[bound] = np.asarray(ravel.ravel(new.params) - ravel.ravel(state.params))
        lengths[bound] = float(stats["step_length"][0])
    assert lengths[1e-4] == lengths[None] > 10 * 1e-4  # the length before the bound, from the same samples
    np.testing.assert_allclose(steps[1e-4], steps[None] * 1e-4 / lengths[None], rtol=1e-9, atol=1e-15)
    _, basis, _ = exact_basis(vmc.settings)
    lp, o = jax.jit(lambda p, x: (vmc.model.apply(p, x), jacobian(vmc.model.apply, p, x)))(state.params, basis)
    psi2 = np.exp(2 * np.real(np.asarray(lp)))
    p = psi2 / psi2.sum()
    o = np.asarray(o)
    do = o - p @ o
    S = np.real(np.einsum("s,si,sj->ij", p, do.conj(), do))
    np.testing.assert_allclose(np.sqrt(steps[None] @ S @ steps[None]), lengths[None], rtol=0.05)
