"""Pieces of the live views checked against physics: S(q), Marshall signs, Ising Metropolis, images."""

import itertools

import numpy as np
import pytest
from conftest import TINY

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
    from nqs_core.observables import k_over_pi

    assert k_over_pi(-1.0 - 2e-18j) == k_over_pi(-1.0 + 2e-17j) == 1.0
    assert k_over_pi(1.0 - 1e-17j) == pytest.approx(0.0, abs=1e-12)
    assert k_over_pi(1j) == pytest.approx(0.5)


# ----- the Metropolis movie and the slide exports (issue 12) ---------------------------------------------
# the suite's small run (a Heisenberg chain: Sᶻ-conserving exchange moves) as the lab's controls, so that its
# programs come from the compilation cache (sign given: the lab's default preset has Marshall's prior)
MOVIE_RUN = dict(preset="custom", **TINY, sign="none", steps=6)


def assert_accepted_moves(frames: list[tuple[int, int, np.ndarray]], sizes: set[int]) -> int:
    """Consecutive frames (movie, frame index, configuration as streamed) of one movie differ by exactly
    one accepted move: a number of changed spins in ``sizes`` (0 or 1 for local flips, 0 or 2 for
    exchanges, where the two spins were opposite and swap); returns the number of moves seen."""
    moves = 0
    for (m0, p0, a), (m1, p1, b) in zip(frames, frames[1:]):
        if m1 != m0:
            continue  # a new movie is a new stream
        assert p1 == p0 + 1, "a streamed frame was skipped"
        diff = np.flatnonzero(a != b)
        assert len(diff) in sizes, (p1, diff)
        if len(diff) == 2:
            assert a[diff[0]] == -a[diff[1]] and np.array_equal(a[diff], b[diff[::-1]])  # an exchange
        moves += len(diff) > 0
    return moves


@pytest.fixture(scope="module")
def finished_lab():
    """A lab session (no server) after a short Heisenberg chain run (Sᶻ-conserving exchange moves)."""
    from conftest import run_lab_to_end

    from app.lab import Lab

    lab = Lab()
    lab.settings.param.update(**MOVIE_RUN)
    lab._on_run()
    run_lab_to_end(lab, 300)
    assert lab.runner.phase == "done" and lab.summary is not None
    yield lab
    lab.shutdown()


@pytest.mark.slow
def test_the_lab_streams_a_metropolis_movie_move_by_move(finished_lab):
    from conftest import tick_until

    lab, movie = finished_lab, finished_lab.spins.movie
    seen: list[tuple[int, int, np.ndarray]] = []
    movies: dict[int, tuple] = {}  # movie number: (trajectory, its frame order)

    def record() -> None:
        if movie.traj is not None and (not seen or seen[-1][:2] != (movie.movies, movie.pos)):
            seen.append((movie.movies, movie.pos, movie.shown()))
            movies[movie.movies] = (movie.traj, movie.order)

    def pairs_within_movies() -> int:  # a new movie may start between two records on a loaded machine
        return sum(a[0] == b[0] for a, b in zip(seen, seen[1:]))

    tick_until(lab, lambda: pairs_within_movies() >= 10, 120, "10 consecutive frames of one movie", each=record)
    assert movies[seen[0][0]][0].configs.shape == (121, 6)  # 120 Metropolis sub-steps of one chain
    # accepted moves only: every frame is one exchange of two opposite spins (Sᶻ-conserving sampler)
    assert assert_accepted_moves(seen, {2}) >= 10
    for m, p, shown in seen:  # the streamed configurations are the sampler's, in order
        traj, order = movies[m]
        assert np.array_equal(shown, traj.configs[order[p]])
    from nqs_core.checkpoint import load_checkpoint

    final = load_checkpoint(lab.checkpoint).step  # the run ended: its final state's movie plays
    tick_until(lab, lambda: movie.movie.step == final, 60, "the movie of the final checkpoint")
    assert f"chain 0 from the checkpoint after step {movie.movie.step}" in movie.caption.object


def test_the_movie_strip_of_a_chain_holds_every_sub_step(tmp_path):
    """A TFIM chain (local flips), every proposal shown: the strip's newest column is the sampler's
    configuration of that sub-step, rejected ones included (no change)."""
    from app.chain_movie import Movie
    from app.views.movie import MovieView
    from nqs_core.checkpoint import load_checkpoint
    from nqs_core.driver import run
    from nqs_core.exports.movie import chain_trajectory
    from nqs_core.settings import RunSettings

    settings = RunSettings(**{**TINY, "hamiltonian": "tfim"}, steps=3, eval_samples=0)  # as test_exports' run
    run(settings, checkpoint=tmp_path / "run.npz")
    traj = chain_trajectory(settings, load_checkpoint(tmp_path / "run.npz"), 80)
    view = MovieView()
    view.accepted_only.value = False
    view.play(Movie(traj, 2))
    seen = [(1, 0, view.shown())]
    for _ in range(80):
        view.advance()
        seen.append((1, view.pos, view.shown()))
    assert np.array_equal(np.array([s for _, _, s in seen]), traj.configs)
    flips = [len(np.flatnonzero(a != b)) for (_, _, a), (_, _, b) in zip(seen, seen[1:])]
    assert set(flips) <= {0, 1} and 0 < sum(flips) < 80  # flips and rejections
    assert assert_accepted_moves(seen, {0, 1}) == sum(flips)
    assert len(view.source.data["x"]) == 60 * 6  # the strip scrolls: 60 columns of 6 sites


def _await(coroutine):
    """Run an export button's async callback to its end on an event loop of its own thread (the
    browser tests' Playwright keeps this thread's loop running for the whole session)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_exports_without_a_run_say_why():
    from app.export_panel import ExportPanel, ExportUnavailable
    from app.lab import Lab

    lab = Lab()
    lab.slides.refresh(lab.snapshot())
    assert all(b.disabled for b in lab.slides.buttons.values())
    assert "Nothing to export yet" in lab.slides.note.object
    with pytest.raises(ExportUnavailable):
        _await(lab.slides.buttons["report.html"].callback())
    assert "Nothing to export yet: run (or load) a run first." in lab.slides.note.object
    assert isinstance(lab.slides, ExportPanel)


@pytest.mark.slow
def test_exports_of_a_finished_run_from_the_lab(finished_lab):
    import io
    import xml.etree.ElementTree as ET

    from PIL import Image

    lab = finished_lab
    lab.slides.refresh(lab.snapshot())
    assert not any(b.disabled for b in lab.slides.buttons.values()), lab.slides.note.object

    def fetch(name: str) -> bytes:
        return _await(lab.slides.buttons[name].callback()).read()

    with Image.open(io.BytesIO(fetch("energy.png"))) as img:
        assert img.size == (1920, 1080)
    root = ET.fromstring(fetch("relative_error.svg"))
    assert root.tag.endswith("svg")
    report = fetch("report.html").decode()
    s = lab.summary
    assert f"{s['final_energy']:.6f} ± {s['final_error']:.6f}" in report and "heisenberg" in report
    with Image.open(io.BytesIO(fetch("metropolis.gif"))) as gif:
        assert gif.n_frames == 120 and gif.size == (1920, 1080)
    assert "metropolis.gif" in lab.slides.note.object and "sent to the browser" in lab.slides.note.object


def test_stamped_exports_still_open_and_differ(tmp_path):
    """Each download's stamp changes the bytes (so the browser downloads it again), not the content."""
    import io
    import xml.etree.ElementTree as ET

    import imageio.v3 as iio
    from PIL import Image

    from app.file_stamp import stamp
    from nqs_core.exports.movie import Trajectory, write_gif, write_mp4
    from nqs_core.lattice import make_lattice

    configs = np.array([[1, -1] * 2, [-1, -1, 1, 1], [-1, 1, 1, -1]], dtype=np.int8)
    traj = Trajectory(configs, make_lattice("square", 2, "open"))
    gif = write_gif(traj, tmp_path / "m.gif", (64, 48)).read_bytes()
    mp4 = write_mp4(traj, tmp_path / "m.mp4", (64, 48)).read_bytes()
    buf = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 10, 10)).save(buf, format="PNG")
    files = {"gif": gif, "mp4": mp4, "png": buf.getvalue(), "svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>',
             "html": b"<!DOCTYPE html><html><body>E = -1</body></html>"}
    for fmt, data in files.items():
        one, two = stamp(data, fmt, "NQS Lab export 1"), stamp(data, fmt, "NQS Lab export 2")
        assert len({data, one, two}) == 3, fmt
        if fmt in ("gif", "png"):
            with Image.open(io.BytesIO(two)) as img, Image.open(io.BytesIO(data)) as ref:
                img.load()
                assert img.n_frames == getattr(ref, "n_frames", 1) and np.array_equal(np.asarray(img), np.asarray(ref))
        elif fmt == "mp4":
            (tmp_path / "s.mp4").write_bytes(two)
            assert len(list(iio.imiter(tmp_path / "s.mp4"))) == 2
        elif fmt == "svg":
            assert ET.fromstring(two).tag.endswith("svg")
        else:
            assert two.decode().startswith(data.decode())


def test_the_accepted_moves_checkbox_replays_the_movie():
    from app.chain_movie import Movie
    from app.snapshot import RunSnapshot
    from app.views.movie import MovieView
    from nqs_core.exports.movie import Trajectory
    from nqs_core.lattice import make_lattice

    c0 = np.array([1, -1] * 8, dtype=np.int8)
    c1 = c0.copy()
    c1[[2, 3]] = c1[[3, 2]]
    view = MovieView()
    view.play(Movie(Trajectory(np.stack([c0, c0, c1]), make_lattice("square", 4, "periodic")), 3))
    assert view.order == [0, 2] and view.movies == 1
    view.accepted_only.value = False
    view.poll(RunSnapshot(None, [], None, None, None, "done", False))  # the next tick replays it
    assert view.order == [0, 1, 2] and view.movies == 2 and view.pos == 0
    assert np.array_equal(view.shown(), c0)


def test_hidden_pictures_wait_until_they_are_shown():
    """The movie plays, the batch and the live correlation map draw only while seen; shown again,
    they draw the latest (the final correlation map is not replaced by samples)."""
    from app.chain_movie import Movie
    from app.snapshot import RunSnapshot
    from app.views.correlations import CorrelationMap
    from app.views.spins import BATCH, MOVIE, SpinsView
    from nqs_core.exports.movie import Trajectory
    from nqs_core.lattice import make_lattice

    snap = RunSnapshot(None, [], None, None, None, "done", False)
    chain = make_lattice("chain", 6, "periodic")
    view = SpinsView()
    view.reset("chain", 6)
    c0 = np.array([1, -1] * 3, dtype=np.int8)
    view.movie.accepted_only.value = False
    view.movie.play(Movie(Trajectory(np.stack([c0, -c0, c0, -c0]), chain), 1))
    for _ in range(10):
        view.poll(snap, shown=False)  # another tab: the movie stands still
    assert view.movie.pos == 0
    for _ in range(4):
        view.poll(snap, shown=True)
    assert view.movie.pos == 2
    frames = [np.tile(c0, (4, 1)) for _ in range(3)]
    view.update(frames)  # the batch is hidden (movie mode): frames are only kept
    assert len(view.frames) == 3 and view.source.data["image"][0].shape == (1, 1)
    view.mode.value = BATCH
    view.poll(snap, shown=False)
    assert view.source.data["image"][0].shape == (1, 1)
    view.poll(snap, shown=True)  # shown: the strip of every frame kept
    assert view.source.data["image"][0].shape == (6, 3)
    view.update(frames[:1])
    assert view.source.data["image"][0].shape == (6, 4)
    view.mode.value = MOVIE

    cmap = CorrelationMap()
    cmap.reset(chain, ising=True)
    cmap.set_shown(False)
    cmap.update(np.tile(c0, (4, 1)))
    assert cmap.source.data["c"] == []
    cmap.set_shown(True)
    assert np.allclose(cmap.source.data["c"], [1, -1, 1, -1, 1, -1])
    cmap.show_final(np.zeros(6))
    cmap.update(np.tile(c0, (4, 1)))
    assert cmap.source.data["c"] == [0.0] * 6 and "final state" in cmap.note.object


def test_export_buttons_are_decided_again_only_when_their_inputs_change(monkeypatch):
    import app.export_panel as export_panel
    from app.snapshot import RunSnapshot
    from nqs_core.settings import RunSettings

    calls: list[str] = []
    real = export_panel.unavailable
    monkeypatch.setattr(export_panel, "unavailable", lambda snap, name: calls.append(name) or real(snap, name))
    panel = export_panel.ExportPanel(lambda: None)
    settings = RunSettings()
    panel.refresh(RunSnapshot(settings, [object()], None, None, None, "running", True))
    n = len(calls)
    assert n == len(export_panel.EXPORTS) and all(b.disabled for b in panel.buttons.values())
    panel.refresh(RunSnapshot(settings, [object(), object()], None, None, None, "running", True))  # one more step
    assert len(calls) == n
    panel.refresh(RunSnapshot(settings, [object()], None, None, None, "paused", True))
    assert len(calls) == 2 * n and not panel.buttons["report.html"].disabled
    assert panel.buttons["relative_error.png"].disabled
    panel.refresh(RunSnapshot(settings, [object()], {"energy": -1.0}, None, None, "paused", True))
    assert len(calls) == 3 * n and not panel.buttons["relative_error.png"].disabled
    panel.refresh(RunSnapshot(RunSettings(), [object()], {"energy": -1.0}, None, None, "paused", True))  # a new run
    assert len(calls) == 4 * n


def test_what_can_be_exported_follows_the_run(tmp_path):
    """Running: nothing (pause first); paused or finished: everything the run allows; the movie needs
    this session's checkpoint and a Metropolis sampler, the relative error a reference."""
    import dataclasses

    from app.export_panel import EXPORTS, unavailable
    from app.snapshot import RunSnapshot
    from nqs_core.settings import RunSettings

    ckpt = tmp_path / "checkpoint.npz"
    ckpt.write_bytes(b"PK")
    base = RunSnapshot(RunSettings(), [object()], {"energy": -11.2}, None, ckpt, "running", True)

    def why(snap: RunSnapshot) -> dict[str, str]:
        return {name: unavailable(snap, name) for name in EXPORTS if unavailable(snap, name)}

    assert set(why(base)) == set(EXPORTS) and "Pause the run" in why(base)["report.html"]
    for phase, alive in (("paused", True), ("done", False), ("stopped", False)):
        assert why(dataclasses.replace(base, phase=phase, alive=alive)) == {}, phase
    loaded = RunSnapshot(RunSettings(), [object()], None, None, None, "idle", False)
    assert set(why(loaded)) == {"metropolis.gif", "metropolis.mp4", "relative_error.png", "relative_error.svg"}
    exact = RunSnapshot(RunSettings(sampler="exact"), [object()], {"energy": -11.2}, None, ckpt, "done", False)
    assert "no Markov chain" in why(exact)["metropolis.mp4"] and "report.html" not in why(exact)
