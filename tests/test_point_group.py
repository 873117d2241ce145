"""Point-group projection (setting ``point_group``): the group's permutations map bonds onto bonds, the
projected log ψ is invariant under every element and keeps its momentum, the exact ground states the
projection targets are in A1, and the default (``none``) leaves the model exactly as it was."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs_core  # noqa: F401
from nqs_core.basis import decode, encode, hamiltonian_basis, sparse_matrix
from nqs_core.hamiltonians import make_hamiltonian
from nqs_core.lattice import make_lattice
from nqs_core.models import MarshallSign, make_model
from nqs_core.models.convnext import ConvNeXt
from nqs_core.models.rbm import RBM
from nqs_core.models.symmetry import MomentumProjection, PointGroupProjection, project_point_group
from nqs_core.references.ed import exact_diagonalization
from nqs_core.settings import RunSettings
from nqs_core.vmc import VMC
from tests.test_convnext import random_configs

ORDERS = {("square", "rotations"): 4, ("square", "full"): 8, ("chain", "full"): 2}


def bond_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(min(int(i), int(j)), max(int(i), int(j))) for i, j in pairs}


def init(model, n: int, seed: int = 0, scale: float | None = None):
    """``model``'s parameters from ``seed``, or (``scale``) every entry drawn from N(0, scale²), as one compiled
    program (run eagerly, every operation of the initialisers compiled on its own: 683 compilations in this file)."""
    @jax.jit
    def draw(key, spread_key):
        params = model.init(key, jnp.ones((1, n), jnp.int8))
        if scale is None:
            return params
        keys = iter(jax.random.split(spread_key, len(jax.tree.leaves(params))))
        return jax.tree.map(lambda x: scale * jax.random.normal(next(keys), x.shape, x.dtype), params)

    return draw(jax.random.key(seed), jax.random.key(seed + 1))


# ----- the group ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,L,group", [("square", 4, "full"), ("square", 4, "rotations"), ("square", 6, "full"),
                                          ("square", 5, "full"), ("chain", 8, "full"), ("chain", 6, "full")])
def test_every_element_maps_bonds_onto_bonds_and_the_elements_form_the_group(kind, L, group):
    lat = make_lattice(kind, L)
    perms = lat.point_group(group)
    assert perms.shape == (ORDERS[kind, group], lat.n_sites)
    assert len({tuple(p) for p in perms}) == len(perms)  # distinct elements
    for p in perms:
        assert sorted(p) == list(range(lat.n_sites))
        assert bond_set(p[lat.bonds]) == bond_set(lat.bonds)
        assert bond_set(p[lat.next_bonds]) == bond_set(lat.next_bonds)
        assert p[0] == 0  # about site 0
        assert np.array_equal(lat.sublattice[p], lat.sublattice) or L % 2  # keeps Marshall's sublattices
    members = {tuple(p) for p in perms}
    for a in perms:  # closed under composition: σ[a][b] = σ[a[b]]
        for b in perms:
            assert tuple(a[b]) in members


def test_square_rotation_turns_rows_into_columns():
    """R: (x, y) → (−y, x) about site 0, (Rσ)_i = σ_{R x_i}: the bond (0, 1) along x goes to (0, L) along y."""
    lat = make_lattice("square", 4)
    r90 = lat.point_group("rotations")[1]
    assert r90[1] == lat.site(np.array([0, 1]))  # x_1 = (1, 0) → (0, 1) = site 4
    assert r90[4] == lat.site(np.array([-1, 0]))  # (0, 1) → (−1, 0) = site 3
    assert np.array_equal(r90[r90[r90[r90]]], np.arange(16))  # R⁴ = 1
    assert not np.array_equal(r90[r90], np.arange(16))  # R² ≠ 1


@pytest.mark.parametrize("changes,message", [
    (dict(lattice="chain", L=8, point_group="rotations"), "needs a square lattice"),
    (dict(bc="open", point_group="full"), "needs periodic boundaries"),
    (dict(point_group="full", k=(1.0, 0.0)), "maps momentum k to gk"),
    (dict(point_group="rotations", k=(0.5, 0.5)), "maps momentum k to gk"),
    (dict(lattice="chain", L=12, point_group="full", k=(1 / 3,)), "maps momentum k to gk"),
])
def test_settings_refuse_a_group_that_does_not_apply(changes, message):
    problems = RunSettings(**changes).problems()
    assert [p.setting for p in problems] == ["point_group"] and message in str(problems[0])
    with pytest.raises(ValueError, match=message.split()[0]):
        s = RunSettings(**changes)
        project_point_group(RBM(), make_lattice(s.lattice, s.L, s.bc), s.point_group, s.k)


@pytest.mark.parametrize("changes", [
    dict(point_group="full", k=(0.0, 0.0)), dict(point_group="full", k=(1.0, 1.0)), dict(point_group="rotations"),
    dict(lattice="chain", L=10, point_group="full", k=(1.0,)), dict(hamiltonian="tfim", point_group="full"),
    dict(hamiltonian="j1j2", model="convnext", kernel=2, point_group="full", k=(0.0, 0.0), sign="marshall"),
])
def test_settings_accept_a_group_that_keeps_the_sector(changes):
    assert RunSettings(**changes).problems() == []


# ----- the projected wavefunction -------------------------------------------------------------------------
MODELS = {
    "convnext-k0": dict(hamiltonian="j1j2", model="convnext", kernel=2, k=(0.0, 0.0)),
    "convnext-kpipi-marshall": dict(hamiltonian="j1j2", model="convnext", kernel=2, k=(1.0, 1.0), sign="marshall"),
    "rbm-kpipi": dict(model="rbm", k=(1.0, 1.0)),
    "rbm-no-k": dict(model="rbm"),
    "rbm-chain10-kpi": dict(model="rbm", lattice="chain", L=10, k=(1.0,)),
}


@pytest.mark.parametrize("name,group", [(name, group) for name in MODELS for group in ("rotations", "full")
                                        if MODELS[name].get("lattice") != "chain" or group == "full"])
def test_projected_log_psi_is_invariant_under_every_element_and_keeps_its_momentum(name, group):
    s = RunSettings(**MODELS[name], point_group=group)
    lat = make_lattice(s.lattice, s.L, s.bc)
    model = make_model(s, lat)
    assert isinstance(model, PointGroupProjection)
    params = init(model, lat.n_sites, scale=0.3)
    sigma = random_configs(lat.n_sites, 16)
    f = jax.jit(model.apply)
    log_psi = np.asarray(f(params, sigma))
    psi = np.exp(log_psi - log_psi.real.max())
    for p in lat.point_group(group):
        np.testing.assert_allclose(np.exp(np.asarray(f(params, sigma[:, p])) - log_psi.real.max()), psi, atol=1e-10)
    k = lat.momentum_index(s.k) if s.k is not None else None
    for a, t in enumerate(lat.unit_translations()):
        if k is not None:
            shifted = np.exp(np.asarray(f(params, sigma[:, t])) - log_psi.real.max())
            np.testing.assert_allclose(shifted, np.exp(1j * k[a]) * psi, atol=1e-10)
    if group == "rotations":  # C4 alone leaves the mirror free: the check above would see a missing element
        mirror = lat.point_group("full")[4]
        assert np.max(np.abs(np.exp(np.asarray(f(params, sigma[:, mirror])) - log_psi.real.max()) - psi)) > 1e-3


@pytest.mark.parametrize("kind,L,group", [("square", 4, "full"), ("chain", 8, "full")])
def test_projection_is_the_group_average_of_amplitudes(kind, L, group):
    """Ψ_P(σ) = (1/|G|) Σ_g Ψ(gσ) in amplitudes (not in log-amplitudes), with the base's own parameters."""
    lat = make_lattice(kind, L)
    base = RBM(alpha=1)
    model = project_point_group(base, lat, group)
    params = init(base, lat.n_sites, seed=2, scale=0.4)
    sigma = random_configs(lat.n_sites, 8, seed=1)
    base_apply = jax.jit(base.apply)
    expected = np.mean([np.exp(np.asarray(base_apply(params, sigma[:, p]))) for p in lat.point_group(group)], axis=0)
    np.testing.assert_allclose(np.exp(np.asarray(jax.jit(model.apply)(params, sigma))), expected, rtol=1e-12)


# ----- the exact ground states are in A1 ------------------------------------------------------------------
def point_group_characters(lat, vector: np.ndarray, codes: np.ndarray, group: str = "full") -> np.ndarray:
    """⟨ψ|gψ⟩/⟨ψ|ψ⟩ for every g of the group, ψ on the sorted basis ``codes``: all 1 exactly in A1."""
    conf = decode(codes, lat.n_sites)
    out = []
    for p in lat.point_group(group):
        moved = encode(conf[:, p])
        idx = np.searchsorted(codes, moved)
        assert np.array_equal(codes[idx], moved)  # the group keeps the basis (Sᶻ sector)
        out.append(np.vdot(vector, vector[idx]) / np.vdot(vector, vector))
    return np.array(out)


@pytest.mark.parametrize("name,kind,L,couplings", [
    ("j1j2", "square", 4, dict(J2=0.5)), ("heisenberg", "square", 4, {}), ("heisenberg", "chain", 10, {}),
])
def test_exact_ground_state_is_in_a1(name, kind, L, couplings):
    """The ground states of J1-J2 4×4 at J2 = 0.5 and of Heisenberg 4×4 (both k = (0,0)), and of the
    Heisenberg chain of 10 sites (k = π), are invariant under the point group: a projection onto A1 can reach them."""
    lat = make_lattice(kind, L)
    result = exact_diagonalization(make_hamiltonian(name, lat, **couplings))
    chars = point_group_characters(lat, result.vector, result.codes)
    np.testing.assert_allclose(chars, 1.0, atol=1e-8)


def test_characters_see_a_state_outside_a1():
    """The lowest J1-J2 4×4 state at k = (π, 0): a rotation maps it to k = (0, π), orthogonal to it."""
    lat = make_lattice("square", 4)
    result = exact_diagonalization(make_hamiltonian("j1j2", lat, J2=0.5), k=(1.0, 0.0))
    chars = point_group_characters(lat, result.vector, result.codes)
    assert abs(chars[1]) < 1e-8 and abs(chars[0] - 1) < 1e-12


# ----- off by default, and the same parameters ------------------------------------------------------------
def old_make_model(s: RunSettings, lat):
    """make_model as it was before the point group: base, Marshall prior, momentum (by hand)."""
    if s.model == "convnext":
        model = ConvNeXt.from_settings(s, lat)
    else:
        model = RBM(alpha=s.alpha)
    if s.sign == "marshall":
        model = MarshallSign(model, tuple(int(v == 0) for v in lat.sublattice))
    if s.k is not None and s.model != "convnext":
        model = MomentumProjection(base=model, lattice=lat, k_over_pi=tuple(s.k))
    return model


@pytest.mark.parametrize("name", list(MODELS))
def test_default_leaves_the_model_bitwise_unchanged(name):
    """point_group=none builds what make_model built before (base → prior → momentum, no wrapper); with a group,
    the wrapper holds exactly that model and starts from the same parameters (one tree, same values per key)."""
    s = RunSettings(**MODELS[name])
    assert s.point_group == "none"
    lat = make_lattice(s.lattice, s.L, s.bc)
    model = make_model(s, lat)
    assert model == old_make_model(s, lat) and not isinstance(model, PointGroupProjection)
    assert project_point_group(model, lat, "none") is model
    params = init(model, lat.n_sites, seed=5)
    sigma = random_configs(lat.n_sites, 8)
    np.testing.assert_array_equal(np.asarray(jax.jit(model.apply)(params, sigma)),
                                  np.asarray(jax.jit(old_make_model(s, lat).apply)(params, sigma)))
    projected = make_model(s.replace(point_group="full"), lat)
    assert isinstance(projected, PointGroupProjection) and projected.wrapped == model
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params, init(projected, lat.n_sites, seed=5))
    assert jax.tree.structure(same) == jax.tree.structure(params) and all(jax.tree.leaves(same))


def exact_energy(model, params, ham) -> float:
    """⟨ψ|H|ψ⟩/⟨ψ|ψ⟩ of ``model`` with ``params``, summed over the basis of ``ham``'s sector."""
    codes = hamiltonian_basis(ham)
    psi = np.exp(np.asarray(jax.jit(model.apply)(params, decode(codes, ham.lattice.n_sites))))
    return float(np.real(np.vdot(psi, sparse_matrix(ham, codes) @ psi) / np.vdot(psi, psi)))


@pytest.mark.slow
def test_vmc_energy_is_that_of_the_projected_state():
    """SR steps of a reflection-projected RBM on the Heisenberg chain of 8 with the exact sampler: the first
    step's energy is ⟨ψ_P|H|ψ_P⟩/⟨ψ_P|ψ_P⟩ of the projected initial state summed over the basis (not that of
    the unprojected network), and every step stays above the ground energy."""
    s = RunSettings(model="rbm", lattice="chain", L=8, sampler="exact", point_group="full", steps=3, seed=1,
                    samples=4096)
    vmc = VMC(s)
    assert isinstance(vmc.model, PointGroupProjection)
    state = vmc.init()  # a nearly flat start: spread its parameters so that the projection matters
    state = dataclasses.replace(state, params=init(vmc.model, vmc.lattice.n_sites, seed=4, scale=1.0))
    ham = make_hamiltonian("heisenberg", vmc.lattice)
    _, stats = vmc.step(state, 3)
    e, err = np.asarray(stats["energy"]), np.asarray(stats["error"])
    assert abs(e[0] - exact_energy(vmc.model, state.params, ham)) < 4 * err[0]
    assert abs(e[0] - exact_energy(vmc.model.wrapped, state.params, ham)) > 8 * err[0]  # the projection changed it
    assert np.all(e > exact_diagonalization(ham).energy - 4 * err)


def test_a_run_resumed_with_a_larger_group_goes_on_in_its_projection(tmp_path):
    """``point_group`` may change on resume (driver.RESUMABLE_CHANGES): a chain-8 RBM state saved unprojected
    goes on projected onto the reflections, and its first resumed step measures ⟨ψ_P|H|ψ_P⟩/⟨ψ_P|ψ_P⟩ of the saved
    parameters (exact sampler), not the unprojected state's energy.  A change of the network is still refused,
    naming the setting."""
    from nqs_core.checkpoint import save_checkpoint
    from nqs_core.driver import run
    from nqs_core.settings import SettingsError

    saved = RunSettings(model="rbm", lattice="chain", L=8, sampler="exact", steps=1, seed=1, samples=4096,
                        eval_samples=0)
    vmc = VMC(saved)
    params = init(vmc.model, vmc.lattice.n_sites, seed=4, scale=1.0)
    state = dataclasses.replace(vmc.init(), params=params)
    save_checkpoint(tmp_path / "none.npz", state, saved.to_dict(), [])
    ham = make_hamiltonian("heisenberg", vmc.lattice)
    resumed = dataclasses.replace(saved, point_group="full")
    result = run(resumed, resume=tmp_path / "none.npz", reference=False, exact=False)
    projected = VMC(resumed).model
    assert isinstance(projected, PointGroupProjection) and result.phase == "done"
    (first,) = result.history
    assert abs(first.energy - exact_energy(projected, params, ham)) < 4 * first.error
    assert abs(first.energy - exact_energy(vmc.model, params, ham)) > 8 * first.error
    with pytest.raises(SettingsError, match="alpha"):
        run(dataclasses.replace(saved, alpha=2), resume=tmp_path / "none.npz", reference=False, exact=False)
