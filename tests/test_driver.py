"""The run loop with the real engine on a tiny chain: events, pause/resume/stop from another thread
within 0.5 s, divergence handling with a finite checkpoint, timing and the summary."""

from __future__ import annotations

import math
import queue
import threading
import time

import jax
import numpy as np
import pytest

from nqs_core.checkpoint import load_checkpoint
from nqs_core.driver import RunControl, RunEvent, StepRecord, run
from nqs_core.settings import RunSettings

TINY = RunSettings(hamiltonian="heisenberg", lattice="chain", L=6, samples=64, chains=4, optimizer="sr",
                   lr=0.05, eval_samples=256, seed=1)
LATENCY = 0.5


def test_events_summary_and_reference():
    events: list[RunEvent] = []
    result = run(TINY.replace(steps=12, steps_per_call=3), callback=events.append, n_show=2)
    phases = [e.phase for e in events if e.kind == "phase"]
    assert phases[0] == "compiling" and phases[1] == "running" and phases[-1] == "done"
    steps = [e for e in events if e.kind == "steps"]
    assert len(steps) == 4 and all(len(e.records) == 3 for e in steps)  # 3 steps per call
    assert [r.step for e in steps for r in e.records] == list(range(12))
    for e in steps:
        assert e.samples.shape == (2, 6) and set(np.unique(e.samples)) <= {-1, 1}
        assert np.all(e.samples.sum(axis=1) == 0)  # Heisenberg chains stay in Sᶻ = 0
        for r in e.records:
            assert isinstance(r, StepRecord) and math.isfinite(r.energy) and r.seconds > 0
            assert 0 <= r.acceptance <= 1 and r.error >= 0 and r.variance >= 0
    refs = [e.reference for e in events if e.kind == "reference"]
    assert len(refs) == 1 and refs[0]["method"] == "exact" and "Bethe" in refs[0]["provenance"]["formula"]
    s = result.summary
    assert s["reference_energy"] == refs[0]["energy"] and s["reference_method"] == "exact"
    assert "Bethe" in s["reference_detail"]
    assert s["relative_error"] == abs(s["final_energy"] - s["reference_energy"]) / abs(s["reference_energy"])
    assert s["final_source"] == "evaluation with 256 samples" and s["steps"] == 12 and s["devices"] == 1
    assert s["parameters"] == 6 + 6 + 36  # complex RBM α=1: visible bias, hidden bias, weights
    assert s["compile_seconds"] > 0 and s["iterations_per_second"] > 0 and s["wall_seconds"] >= s["compile_seconds"]
    assert "S_i·S_j" in s["convention"]
    assert s["v_score"] == TINY.n_sites * s["final_variance"] / s["final_energy"] ** 2


def _threaded_run(settings: RunSettings, **kwargs):
    events: queue.Queue = queue.Queue()
    control = RunControl()
    out: dict = {}

    def work() -> None:
        out["result"] = run(settings, callback=lambda e: events.put((time.perf_counter(), e)), control=control,
                            reference=False, **kwargs)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return events, control, thread, out


def _wait_for(events: queue.Queue, predicate, timeout: float) -> tuple[float, RunEvent, list[RunEvent]]:
    seen = []
    deadline = time.perf_counter() + timeout
    while True:
        t, e = events.get(timeout=max(0.01, deadline - time.perf_counter()))
        seen.append(e)
        if predicate(e):
            return t, e, seen


def test_pause_resume_stop_take_effect_within_half_a_second(tmp_path):
    ck = tmp_path / "live.npz"
    events, control, thread, out = _threaded_run(TINY.replace(steps=100_000, eval_samples=0), checkpoint=ck)
    _wait_for(events, lambda e: e.kind == "steps", timeout=120)  # compiled and running

    t0 = time.perf_counter()
    control.pause()
    t, _, seen = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "paused", timeout=5)
    assert t - t0 < LATENCY, f"pause took {t - t0:.3f} s"
    last_step = max([r.step for e in seen if e.kind == "steps" for r in e.records], default=-1)
    time.sleep(0.6)
    assert events.empty(), "steps were reported while paused"
    assert load_checkpoint(ck).step >= last_step + 1  # a pause writes the checkpoint

    control.resume()
    _, e, _ = _wait_for(events, lambda e: e.kind == "steps", timeout=5)
    assert e.records[0].step > last_step

    t0 = time.perf_counter()
    control.stop()
    t, _, _ = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "stopped", timeout=5)
    assert t - t0 < LATENCY, f"stop took {t - t0:.3f} s"
    thread.join(timeout=10)
    assert not thread.is_alive()
    result = out["result"]
    assert result.phase == "stopped" and result.summary["phase"] == "stopped"
    assert load_checkpoint(ck).step == len(result.history) == int(result.state.step)


def test_stop_while_paused():
    events, control, thread, out = _threaded_run(TINY.replace(steps=100_000, eval_samples=0))
    _wait_for(events, lambda e: e.kind == "steps", timeout=120)
    control.pause()
    _wait_for(events, lambda e: e.kind == "phase" and e.phase == "paused", timeout=5)
    t0 = time.perf_counter()
    control.stop()
    t, _, _ = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "stopped", timeout=5)
    assert t - t0 < LATENCY
    thread.join(timeout=10)
    assert out["result"].phase == "stopped"


def test_diverging_learning_rate_stops_cleanly_with_a_finite_checkpoint(tmp_path):
    """SGD at the largest allowed lr with heavy momentum blows up (log ψ ratios overflow) for most seeds;
    the first seed that diverges must stop with phase "diverged", a clear message and a finite state."""
    ck = tmp_path / "diverged.npz"
    for seed in range(8):
        events: list[RunEvent] = []
        settings = TINY.replace(optimizer="sgd", lr=10.0, momentum=0.99, steps=100, eval_samples=0,
                                steps_per_call=2, seed=seed)
        result = run(settings, callback=events.append, checkpoint=ck, reference=False)
        if result.phase == "diverged":
            break
    assert result.phase == "diverged", "no seed diverged at lr=10, momentum=0.99"
    assert events[-1].kind == "phase" and events[-1].phase == "diverged"
    assert "NaN/inf at step" in result.message and "smaller learning rate" in result.message
    assert "diverged" not in [e.phase for e in events[:-1]]
    assert len(result.history) < 100
    assert all(math.isfinite(r.energy) for r in result.history)
    reported = [r.step for e in events if e.kind == "steps" for r in e.records]
    assert reported == list(range(len(result.history)))  # every kept step was reported, none after
    for leaf in jax.tree_util.tree_leaves(result.state.params):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert int(result.state.step) == len(result.history)
    saved = load_checkpoint(ck)
    assert saved.extra["phase"] == "diverged" and saved.step == len(result.history)
    assert all(np.all(np.isfinite(a)) for a in saved.leaves if a.dtype.kind in "fc")
    assert result.summary["phase"] == "diverged" and result.summary["final_source"].startswith("last step")


# ----- momentum sector and the exact observer (issue 4) -------------------------------------------
def sector_ground_state(ham, k_over_pi):
    """Lowest state of H in momentum sector k computed directly: dense H on the Sᶻ = 0 basis, the
    projector P_k = (1/|T|) Σ_t e^{−ik·r_t} T_t with (T_t ψ)(σ) = ψ(shift(σ, r_t)), H restricted to
    range(P_k).  Returns (energy, ψ₀ on ``basis_codes`` ordering)."""
    from nqs_core.basis import basis_codes, decode, encode, sparse_matrix

    lat = ham.lattice
    codes = basis_codes(lat.n_sites, ham.conserves_sz)
    sigma = decode(codes, lat.n_sites)
    k = lat.momentum_index(tuple(k_over_pi))
    P = np.zeros((len(codes), len(codes)), complex)
    for r, perm in zip(lat.displacements, lat.translations):
        j = np.searchsorted(codes, encode(sigma[:, perm]))
        P[np.arange(len(codes)), j] += np.exp(-1j * k @ r) / len(lat.translations)
    w, v = np.linalg.eigh((P + P.conj().T) / 2)
    Q = v[:, w > 0.5]
    H = sparse_matrix(ham, codes).toarray()
    e, u = np.linalg.eigh(Q.conj().T @ H @ Q)
    return float(e[0]), Q @ u[:, 0]


def test_exact_observer_and_sector_summary_match_a_direct_computation():
    """ConvNeXt projected to k = π on the Heisenberg chain of 8 (ground state at k = 0): the reference
    is the k = π sector's lowest energy, the fidelity / sign agreement filled into the records and the
    summary equal a direct computation against the dense sector ground state, and the measured
    translation eigenvalue is e^{iπ} = −1 exactly."""
    from nqs_core import observables as obs
    from nqs_core.vmc import VMC

    settings = RunSettings(hamiltonian="heisenberg", lattice="chain", L=8, model="convnext", depth=1, features=4,
                           patch=2, kernel=3, k=(1.0,), samples=128, chains=4, lr=0.02, steps=9,
                           steps_per_call=3, eval_samples=256, seed=2)
    events: list[RunEvent] = []
    result = run(settings, callback=events.append)
    vmc = VMC(settings)
    e_k, psi_k = sector_ground_state(vmc.hamiltonian, (1.0,))
    e_0, _ = sector_ground_state(vmc.hamiltonian, (0.0,))
    assert e_k > e_0 + 0.1  # a genuinely excited sector
    s = result.summary
    assert s["reference_method"] == "ed (k=π)" and s["reference_energy"] == pytest.approx(e_k, abs=1e-9)
    assert s["momentum"] == [1.0] and s["measured_momentum"] == [1.0]
    np.testing.assert_allclose(s["translation_eigenvalue"], [-1.0, 0.0], atol=1e-10)
    assert 0.5 <= s["marshall_agreement"] <= 1.0
    f = obs.fidelity(vmc.model.apply, result.state.params, psi_k, vmc.lattice)
    sa = obs.sign_agreement(vmc.model.apply, result.state.params, psi_k, vmc.lattice)
    assert s["fidelity"] == pytest.approx(f, abs=1e-10) and s["sign_agreement"] == pytest.approx(sa, abs=1e-10)
    assert 0.0 <= s["fidelity"] <= 1.0 and 0.0 <= s["sign_agreement"] <= 1.0
    assert s["exact_state"].startswith("ed (k=π), 70 basis states")
    # the measurement lands in the StepRecord of a call's last step, and always on the last step
    measured = [r.step for r in result.history if r.fidelity is not None]
    assert measured and measured[-1] == 8 and all(step % 3 == 2 for step in measured)
    assert result.history[-1].fidelity == s["fidelity"]
    reported = {r.step: r for e in events if e.kind == "steps" for r in e.records}
    assert reported[8].sign_agreement == s["sign_agreement"]


def test_exact_observer_reach_and_ed_sector_vector():
    """ED is used up to 200k basis states; the ED vector of a requested sector (J1-J2 chain of 10 at
    k = π and at the complex k = 0.4π) equals the directly computed one up to a phase."""
    from nqs_core.run_reference import ExactObserver
    from nqs_core.references.ed import exact_diagonalization
    from nqs_core.vmc import build_problem

    assert ExactObserver.reachable(RunSettings(lattice="chain", L=16))
    assert not ExactObserver.reachable(RunSettings(lattice="chain", L=24))  # 2.7e6 Sᶻ = 0 states
    settings = RunSettings(hamiltonian="j1j2", lattice="chain", L=10, J2=0.5)
    _, ham = build_problem(settings)
    for k in [(1.0,), (0.4,)]:
        res = exact_diagonalization(ham, want_vector=True, k=k)
        e, psi = sector_ground_state(ham, k)
        assert res.energy == pytest.approx(e, abs=1e-9)
        assert abs(np.vdot(psi, res.vector)) ** 2 == pytest.approx(np.vdot(res.vector, res.vector).real, abs=1e-8)
