"""Pieces of the live views checked against physics: S(q), Marshall signs, Ising Metropolis, images."""

import itertools

import numpy as np
import pytest

from app.ising import T_CRITICAL, IsingLattice
from app.views.energy import EnergyView, reference_label
from app.views.momentum import structure_factor_over_pi
from app.views.sign import relative_phases
from app.views.spins import strip_image, tile_image
from nqs_core.lattice import make_lattice


def test_structure_factor_of_the_neel_state_peaks_at_pi_pi():
    lat = make_lattice("square", 4)
    neel = np.where(lat.sublattice == 0, 1, -1)[None, :]
    q, s = structure_factor_over_pi(neel, lat)
    peak = q[np.argmax(s)]
    assert np.allclose(peak, [1.0, 1.0]) and s.max() == pytest.approx(16 / 4)  # N/4 at Q = (π, π)
    assert np.sum(s) == pytest.approx(16 / 4)  # Σ_q S(q) = Σ_i (σ_i/2)² = N/4


def test_relative_phases_remove_the_global_phase():
    # the largest amplitude (index 1) defines the zero of phase; the others differ from it by π
    log_psi = np.array([0.0 + 0.3j, 1.0 + (0.3 + np.pi) * 1j, -2.0 + 0.3j])
    assert np.allclose(np.abs(relative_phases(log_psi)), [1.0, 0.0, 1.0])


def test_tile_image_keeps_the_lattice_layout():
    samples = np.arange(4 * 16).reshape(4, 16) % 2 * 2 - 1
    img = tile_image(samples, 4)
    assert img.shape == (9, 9)
    # first sample at the top-left tile, row y = site // L
    top_left = img[5:9, 0:4]
    assert np.array_equal(top_left, samples[0].reshape(4, 4))
    assert np.isnan(img[4, :]).all() and np.isnan(img[:, 4]).all()


def test_strip_image_is_one_chain_over_time():
    frames = [np.full((4, 6), (-1) ** t) for t in range(130)]
    img = strip_image(frames, columns=96)
    assert img.shape == (6, 96)
    assert img[0, -1] == (-1) ** 129 and img[0, 0] == (-1) ** (130 - 96)


def exact_ising_energy(L: int, T: float) -> float:
    """⟨e⟩ per site of the periodic L×L Ising model by enumerating all 2^(L²) states."""
    n = L * L
    states = np.array(list(itertools.product([-1, 1], repeat=n)), dtype=np.int8).reshape(-1, L, L)
    s = states.astype(np.int32)
    e = -(s * (np.roll(s, 1, 1) + np.roll(s, 1, 2))).sum(axis=(1, 2)) / n
    w = np.exp(-(e - e.min()) * n / T)
    return float((w * e).sum() / w.sum())


@pytest.mark.parametrize("T", [1.5, 2.5, 4.0])
def test_ising_metropolis_matches_exact_enumeration_on_4x4(T):
    model = IsingLattice(4, T, seed=3)
    model.sweep(500)
    energies = []
    for _ in range(20_000):
        model.sweep(1)
        energies.append(model.energy_per_site())
    energies = np.asarray(energies)
    blocks = energies.reshape(100, -1).mean(axis=1)
    err = blocks.std(ddof=1) / np.sqrt(len(blocks))
    assert abs(energies.mean() - exact_ising_energy(4, T)) < 4 * err + 1e-3


def test_ising_orders_below_and_disorders_above_tc():
    cold = IsingLattice(32, 1.5, seed=0, hot=False)
    cold.sweep(200)
    onsager = (1 - np.sinh(2 / 1.5) ** -4) ** 0.125
    assert abs(abs(cold.magnetization()) - onsager) < 0.03
    hot = IsingLattice(32, 5.0, seed=0)
    hot.sweep(200)
    assert abs(hot.magnetization()) < 0.15
    assert T_CRITICAL == pytest.approx(2.269185, abs=1e-6)
    with pytest.raises(ValueError):
        IsingLattice(5)


def test_energy_view_backfills_relative_error_and_bounds_streams():
    from nqs_core.driver import StepRecord

    view = EnergyView()
    view.reset(total_steps=10)
    recs = [StepRecord(step=i, energy=-10.0 + 1.0 / (i + 1), error=0.1, variance=1.0, acceptance=0.5, r_hat=1.0,
                       tau=1.0, grad_norm=1.0, v_score=0.1, seconds=0.01) for i in range(6)]
    view.update(recs)
    assert view.n_points == 6 and len(view.rel_source.data["rel"]) == 0
    view.set_reference({"energy": -10.0, "method": "ed", "provenance": {"library": "scipy"}, "source": "cache"})
    assert view.rel_source.data["rel"] == pytest.approx([1.0 / (i + 1) / 10.0 for i in range(6)])
    assert "ED" in view.ref_label.object and "scipy" in view.ref_label.object and "-10.000000" in view.ref_label.object
    assert view.ref_source.data["energy"] == [-10.0, -10.0]
    from app.views import common

    many = [StepRecord(step=i, energy=-1.0, error=0.1, variance=1.0, acceptance=0.5, r_hat=1.0, tau=1.0,
                       grad_norm=1.0, v_score=0.1, seconds=0.01) for i in range(common.ROLLOVER + 50)]
    view.update(many)
    assert view.n_points == common.ROLLOVER
    assert "DMRG" in reference_label({"energy": -1.0, "method": "dmrg", "provenance": {"chi_max": 128}})


def _record(i, **observables):
    from nqs_core.driver import StepRecord

    return StepRecord(step=i, energy=-1.0, error=0.1, variance=1.0, acceptance=0.5, r_hat=1.0, tau=1.0,
                      grad_norm=1.0, v_score=0.1, seconds=0.01, **observables)


def test_sign_view_draws_the_exact_comparisons_only_where_measured():
    from app.views.sign import SignView

    view = SignView()
    view.reset()
    records = [_record(i, marshall_agreement=0.5 + 0.04 * i, sign_agreement=0.9 if i % 5 == 0 else None,
                       fidelity=0.7 + 0.01 * i if i % 5 == 0 else None) for i in range(12)]
    view.update(records[:7])
    view.update(records[7:])
    assert view.source.data["marshall"] == pytest.approx([0.5 + 0.04 * i for i in range(12)])
    assert view.exact_source.data["step"] == [0, 5, 10] and view.exact_source.data["exact"] == [0.9] * 3
    assert view.fidelity_source.data["fidelity"] == pytest.approx([0.7, 0.75, 0.8])


def test_momentum_view_moves_the_latest_eigenvalue_and_marks_the_sector():
    from app.views.momentum import MomentumView

    lat = make_lattice("chain", 6)
    view = MomentumView()
    view.reset(lat, (1.0,))
    chosen = [(x, c) for x, c in zip(view.bz_source.data["kx"], view.bz_source.data["color"]) if c != "#999999"]
    assert [x for x, _ in chosen] == [pytest.approx(1.0)]  # k = π highlighted on the zone
    assert view.expected_source.data == {"re": [pytest.approx(-1.0)], "im": [pytest.approx(0.0, abs=1e-12)]}
    for i, phase in enumerate((0.2, 0.6, 0.95)):
        z = 0.9 * np.exp(1j * np.pi * phase)
        view.update([_record(i, translation_eigenvalue=(z.real, z.imag))], [])
        assert view.latest_source.data["re"] == [pytest.approx(z.real)]
    assert len(view.circle_source.data["re"]) == 3 and "k_x/π = +0.950" in view.circle_note.object


def test_reference_labels_hide_module_paths_and_give_e_per_site():
    label = reference_label({"energy": -10.5, "energy_per_site": -0.375, "method": "exact",
                             "provenance": {"formula": "Majumdar-Ghosh dimer state",
                                            "library": "nqs_core.references.closed_forms"}})
    assert "nqs_core" not in label and "Majumdar-Ghosh" in label and "E₀/N = -0.375000" in label


def test_brillouin_zone_shows_where_ed_puts_the_ground_state():
    """k = π projection alone forces ⟨T⟩ = −1; the ED energy per sector shows that k = π holds the
    global ground state (or says that the chosen sector does not)."""
    from app.views.momentum import MomentumView

    lat = make_lattice("chain", 6)
    sectors = [{"k_over_pi": [2 * n / 6], "energy": -2.0 - (n == 3)} for n in range(6)]
    for k, verdict in (((1.0,), "the chosen sector holds it"), ((0.0,), "NOT the chosen sector")):
        view = MomentumView()
        view.reset(lat, k)
        view.show_sector_energies({"sector_energies": sectors, "ground_momentum_over_pi": [1.0]})
        assert "ground state at k/π = 1" in view.sectors_note.object and verdict in view.sectors_note.object
        assert min(view.bz_source.data["energy"]) == -3.0


def test_momentum_label_at_k_pi_does_not_flip_with_the_sign_of_rounding():
    """⟨T⟩ = −1 ± 1e-17 i (the 18-site chain at k = π) reads k/π = +1 mid-run and at the end."""
    from app.views.momentum import k_over_pi

    assert k_over_pi(-1.0 - 2e-18j) == k_over_pi(-1.0 + 2e-17j) == 1.0
    assert k_over_pi(1.0 - 1e-17j) == pytest.approx(0.0, abs=1e-12)
    assert k_over_pi(1j) == pytest.approx(0.5)
