"""The run loop with the real engine on a tiny chain: events, pause/resume/stop from another thread
before the next call, divergence handling with a finite checkpoint, stopping rules, timing, the typed
summary, and the races of concurrent runs (shared compiled steps, the exact observer's thread)."""

from __future__ import annotations

import math
import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import conftest
import pytest

from nqs_core.checkpoint import load_checkpoint
from nqs_core import driver
from nqs_core.driver import RunControl, RunEvent, RunSummary, StepRecord, run
from nqs_core.settings import RunSettings
from nqs_core.vmc import VMC

# the summary keys `nqs run --json` printed before the summary became a typed object (issue 13)
SUMMARY_KEYS = (
    "final_energy", "final_error", "final_variance", "final_energy_per_site", "final_source", "reference_energy",
    "reference_method", "reference_detail", "reference_note", "relative_error", "v_score", "iterations_per_second",
    "compile_seconds", "step_compile_seconds", "evaluation_seconds", "wall_seconds", "steps", "parameters",
    "real_parameters", "devices", "device_kind", "precision", "convention", "system", "n_sites", "phase", "message", "checkpoint",
    "momentum", "translation_eigenvalue", "translation_eigenvalues", "measured_momentum", "marshall_agreement",
    "fidelity", "sign_agreement", "exact_state", "exact_note", "exact_seconds", "exact_energy", "exact_relative_error")

# the suite's TINY (tests/conftest.py) evaluated with 256 samples, as test_cli_run's runs: the tests here fuse 1 or 2
# steps per call (each count of fused steps is a program of its own)
TINY = RunSettings(**conftest.TINY, optimizer="sr", lr=0.05, eval_samples=256, seed=1)


def test_events_summary_and_reference():
    events: list[RunEvent] = []
    result = run(TINY.replace(steps=8, steps_per_call=2), callback=events.append, n_show=2)
    phases = [e.phase for e in events if e.kind == "phase"]
    assert phases[0] == "compiling" and phases[1] == "running" and phases[-1] == "done"
    steps = [e for e in events if e.kind == "steps"]
    assert len(steps) == 4 and all(len(e.records) == 2 for e in steps)  # 2 steps per call
    assert [r.step for e in steps for r in e.records] == list(range(8))
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
    assert s["final_source"] == "evaluation with 256 samples" and s["steps"] == 8 and s["devices"] == 1
    assert s["parameters"] == 6 + 6 + 36  # complex RBM α=1: visible bias, hidden bias, weights
    assert s["compile_seconds"] > 0 and s["iterations_per_second"] > 0 and s["wall_seconds"] >= s["compile_seconds"]
    assert "S_i·S_j" in s["convention"]
    assert s["v_score"] == TINY.n_sites * s["final_variance"] / s["final_energy"] ** 2
    # the typed summary keeps every key nqs run --json and the app read, and says how the run ended
    assert isinstance(result.report, RunSummary) and result.report.to_dict() == s
    assert set(SUMMARY_KEYS) <= set(s) and s["stop_reason"] == "steps" and s["verdict"] in ("ok", "warning")
    final = events[-1]
    assert final.kind == "phase" and final.verdict == s["verdict"] and final.summary == s
    assert list(final.warnings) == s["warnings"]
    # every steps event carries the parameters after its last step: the last ones are the final state's
    assert [e.params_step for e in steps] == [2, 4, 6, 8]
    for a, b in zip(jax.tree_util.tree_leaves(steps[-1].params), jax.tree_util.tree_leaves(result.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    first = jax.tree_util.tree_leaves(steps[0].params)[0]
    assert not np.array_equal(np.asarray(first), np.asarray(jax.tree_util.tree_leaves(result.state.params)[0]))


def test_the_final_evaluation_runs_the_compiled_step_without_learning():
    """The final evaluation is the run's own compiled step measuring without learning: ⌈256 / 64⌉ = 4 batches of
    the step's samples in 2 calls of its 2 fused steps, no program compiled from its start on but its statistics'
    (a separate evaluation program used to compile here), the run's state left as it was, and its energy that
    of ``VMC.evaluate`` on the same state within the two error bars."""
    evaluating = threading.Event()

    def on_event(e: RunEvent) -> None:
        if e.kind == "phase" and "final evaluation" in (e.message or ""):
            evaluating.set()

    settings = TINY.replace(steps=6, steps_per_call=2)
    with conftest.compilations(evaluating.is_set) as compiled:
        result = run(settings, callback=on_event, reference=False, exact=False)
    assert evaluating.is_set() and set(compiled) <= {"jit(chain_statistics)"}, compiled
    ev = result.evaluation
    assert ev["n_samples"] == 256 and 0 < ev["acceptance"] <= 1 and ev["error"] > 0 and ev["r_hat"] > 0
    assert int(result.state.step) == 6  # the evaluation did not step the parameters
    separate = VMC(settings).evaluate(result.state, 4096)
    assert abs(ev["energy"] - separate["energy"]) < 4 * math.hypot(ev["error"], separate["error"]), (ev, separate)


def _threaded_run(settings: RunSettings, control: RunControl | None = None, **kwargs):
    events: queue.Queue = queue.Queue()
    control = control or RunControl()
    out: dict = {}

    def work() -> None:
        out["result"] = run(settings, callback=lambda e: events.put((time.perf_counter(), e)), control=control,
                            reference=False, **kwargs)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return events, control, thread, out


def _wait_for(events: queue.Queue, predicate, timeout: float) -> tuple[float, RunEvent, list[tuple[float, RunEvent]]]:
    """The first event that satisfies ``predicate``, its time, and (time, event) of the events up to it."""
    seen = []
    deadline = time.perf_counter() + timeout
    while True:
        t, e = events.get(timeout=max(0.01, deadline - time.perf_counter()))
        seen.append((t, e))
        if predicate(e):
            return t, e, seen


class ParkedControl(RunControl):
    """A RunControl that signals ``parked`` once the run has blocked in its pause wait three times in a row
    (so the loop is provably parked, not computing), instead of sleeping to show that nothing happens."""

    def __init__(self) -> None:
        super().__init__()
        self.parked = threading.Event()
        self._idle = 0

    def wait(self, timeout):
        go = super().wait(timeout)
        self._idle = 0 if go else self._idle + 1
        if self._idle >= 3:
            self.parked.set()
        return go


def _steps_between(seen: list[tuple[float, RunEvent]], since: float = -math.inf) -> int:
    """The steps events emitted at or after ``since`` (one already queued before then came before it)."""
    return sum(1 for t, e in seen if e.kind == "steps" and t >= since)


def test_pause_resume_stop_take_effect_before_the_next_call(tmp_path):
    """Pause and stop act before the next fused call: at most the call in flight is reported after them;
    while paused the loop is parked in RunControl.wait and reports nothing; a pause writes the checkpoint
    before the "paused" event."""
    ck = tmp_path / "live.npz"
    control = ParkedControl()
    events, _, thread, out = _threaded_run(TINY.replace(steps=100_000, eval_samples=0), checkpoint=ck,
                                           control=control)
    _wait_for(events, lambda e: e.kind == "steps", timeout=120)  # compiled and running

    paused_at = time.perf_counter()
    control.pause()
    _, _, seen = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "paused", timeout=60)
    assert _steps_between(seen, since=paused_at) <= 1, "pause let more than the call in flight through"
    last_step = max([r.step for _, e in seen if e.kind == "steps" for r in e.records], default=-1)
    assert load_checkpoint(ck).step >= last_step + 1  # written before the "paused" event
    assert control.parked.wait(60)
    assert events.empty(), "steps were reported while paused"

    control.resume()
    _, e, _ = _wait_for(events, lambda e: e.kind == "steps", timeout=60)
    assert e.records[0].step > last_step

    stopped_at = time.perf_counter()
    control.stop()
    _, _, seen = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "stopped", timeout=60)
    assert _steps_between(seen, since=stopped_at) <= 1, "stop let more than the call in flight through"
    thread.join(timeout=60)
    assert not thread.is_alive()
    result = out["result"]
    assert result.phase == "stopped" and result.summary["phase"] == "stopped"
    assert result.summary["stop_reason"] == "stopped" and result.evaluation is None  # eval_samples=0
    assert load_checkpoint(ck).step == len(result.history) == int(result.state.step)


def test_stop_while_paused():
    control = ParkedControl()
    events, _, thread, out = _threaded_run(TINY.replace(steps=100_000, eval_samples=0), control=control)
    _wait_for(events, lambda e: e.kind == "steps", timeout=120)
    control.pause()
    _wait_for(events, lambda e: e.kind == "phase" and e.phase == "paused", timeout=60)
    assert control.parked.wait(60)
    control.stop()
    _, _, seen = _wait_for(events, lambda e: e.kind == "phase" and e.phase == "stopped", timeout=60)
    assert _steps_between(seen) == 0  # parked: no call was in flight
    thread.join(timeout=60)
    assert out["result"].phase == "stopped"


def test_diverging_learning_rate_stops_cleanly_with_a_finite_checkpoint(tmp_path):
    """SR without its diagonal shift at the largest allowed lr with heavy momentum blows up for about half the
    seeds (0, 2, 6 and 7 of 0-7); the first seed that diverges must stop with phase "diverged", a clear message
    and a finite state.  (TINY's step, 2 per call as above: only the run-time values are extreme.)"""
    ck = tmp_path / "diverged.npz"
    for seed in range(8):
        events: list[RunEvent] = []
        settings = TINY.replace(lr=10.0, diag_shift=0.0, momentum=0.99, steps=100, eval_samples=0,
                                steps_per_call=2, seed=seed)
        result = run(settings, callback=events.append, checkpoint=ck, reference=False)
        if result.phase == "diverged":
            break
    assert result.phase == "diverged", "no seed diverged at lr=10, diag_shift=0, momentum=0.99"
    assert events[-1].kind == "phase" and events[-1].phase == "diverged"
    assert "NaN/inf, or |E| exceeded twice the bound" in result.message and "smaller learning rate" in result.message
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
    # the exact energy of the final state: ψ†Hψ/ψ†ψ with the dense H on the Sᶻ = 0 basis, above the
    # sector's ground energy, and the Monte Carlo estimate of the final evaluation agrees with it
    from nqs_core.basis import basis_codes, decode, sparse_matrix
    codes = basis_codes(8, True)
    psi = np.exp(obs.log_psi_on_basis(vmc.model.apply, result.state.params, decode(codes, 8)))
    dense = sparse_matrix(vmc.hamiltonian, codes).toarray()
    e_state = float(np.vdot(psi, dense @ psi).real / np.vdot(psi, psi).real)
    assert s["exact_energy"] == pytest.approx(e_state, abs=1e-10) and e_state > e_k - 1e-10
    assert s["exact_relative_error"] == pytest.approx(abs(e_state - e_k) / abs(e_k), rel=1e-9)
    assert abs(s["final_energy"] - e_state) < 5 * s["final_error"] + 1e-9
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
    from nqs_core.problem import build_problem

    assert ExactObserver.reachable(RunSettings(lattice="chain", L=16))
    assert not ExactObserver.reachable(RunSettings(lattice="chain", L=24))  # 2.7e6 Sᶻ = 0 states
    settings = RunSettings(hamiltonian="j1j2", lattice="chain", L=10, J2=0.5)
    _, ham = build_problem(settings)
    for k in [(1.0,), (0.4,)]:
        res = exact_diagonalization(ham, want_vector=True, k=k)
        e, psi = sector_ground_state(ham, k)
        assert res.energy == pytest.approx(e, abs=1e-9)
        assert abs(np.vdot(psi, res.vector)) ** 2 == pytest.approx(np.vdot(res.vector, res.vector).real, abs=1e-8)


def test_the_exact_observer_measures_the_energy_with_the_hamiltonian_it_diagonalised(monkeypatch):
    """``energy()`` uses the Hamiltonian the background thread built for ED (not a second one): the
    uniform state on the Sᶻ = 0 basis of the Heisenberg chain of 6, ψ†Hψ/ψ†ψ with the dense H."""
    import jax.numpy as jnp

    from nqs_core import run_reference
    from nqs_core.basis import sparse_matrix
    from nqs_core.problem import build_problem

    settings = RunSettings(hamiltonian="heisenberg", lattice="chain", L=6)
    _, ham = build_problem(settings)
    observer = run_reference.ExactObserver(settings, enabled=True)
    observer.set_model(lambda p, s: p + jnp.zeros(s.shape[0]), jnp.zeros(()))
    assert observer.wait(120) and observer.hamiltonian == ham

    def rebuilt(_settings):
        raise AssertionError("the Hamiltonian was built again")

    monkeypatch.setattr(run_reference, "build_problem", rebuilt)
    observer.measure(jnp.zeros(()))
    dense = sparse_matrix(ham, observer.codes).toarray()
    ones = np.ones(len(observer.codes))
    assert observer.energy() == pytest.approx(ones @ dense @ ones / len(ones), abs=1e-12)


# ----- stopping rules (issue 9, item 2) -----------------------------------------------------------
def test_time_budget_ends_the_run_after_a_call_and_it_is_still_evaluated():
    """A budget shorter than one call: the loop stops after the first call (t + t_call > T), phase "done",
    and the final evaluation still runs with eval_samples samples."""
    result = run(TINY.replace(steps=50, time_budget=1e-9), reference=False, exact=False)
    s = result.summary
    assert result.phase == "done" and s["stop_reason"] == "time_budget" and len(result.history) == 1
    assert "time budget of 1e-09 s used after 1 of 50 steps" in result.message
    assert s["final_source"] == "evaluation with 256 samples" and result.evaluation is not None


def test_target_v_score_stops_after_its_window_and_an_unreached_target_warns():
    from nqs_core.callbacks import StoppingRules

    reached = run(TINY.replace(steps=50, target_v_score=1e9), reference=False, exact=False)
    assert reached.summary["stop_reason"] == "target_v_score" and len(reached.history) == StoppingRules.WINDOW
    assert "target V-score" in reached.message and not any("V-score" in w for w in reached.summary["warnings"])
    missed = run(TINY.replace(steps=12, target_v_score=1e-12), reference=False, exact=False)
    assert missed.summary["stop_reason"] == "steps" and len(missed.history) == 12
    assert missed.summary["verdict"] in ("warning", "failed")
    assert any(w.startswith("target V-score 1e-12 not reached") for w in missed.summary["warnings"])


def test_target_error_needs_the_reference_and_stops_once_met():
    """target_error 100 (|Ē−E_ref|/|E_ref| ≤ 100 holds for any state): the run stops at the first call after
    the reference (Bethe ansatz, background thread) arrived and the window is full."""
    from nqs_core.callbacks import StoppingRules

    result = run(TINY.replace(steps=100_000, target_error=100.0), exact=False)
    s = result.summary
    assert s["stop_reason"] == "target_error" and result.phase == "done"
    assert StoppingRules.WINDOW <= len(result.history) < 100_000 and s["reference_method"] == "exact"
    no_ref = run(TINY.replace(steps=12, target_error=100.0), reference=False, exact=False)
    assert no_ref.summary["stop_reason"] == "steps"
    assert any("not checked: no reference" in w for w in no_ref.summary["warnings"])


def test_a_callback_of_ones_own_can_end_the_run():
    """``run(..., callbacks=[...])``: a user callback sees every step after the built-ins and ends the run
    with ``ctx.stop``; the run is still evaluated and its reason is the summary's stop_reason."""
    from nqs_core.callbacks import Callback

    class StopAtFive(Callback):
        seen: list[int] = []

        def after_steps(self, ctx, records):
            self.seen.extend(r.step for r in records)
            if len(ctx.history) >= 5:
                ctx.stop("done", "done: five steps are enough", "five")

    cb = StopAtFive()
    result = run(TINY.replace(steps=50), reference=False, exact=False, callbacks=[cb])
    assert cb.seen == [0, 1, 2, 3, 4] and len(result.history) == 5
    assert result.summary["stop_reason"] == "five" and result.message == "done: five steps are enough"
    assert result.summary["final_source"] == "evaluation with 256 samples"


class RecordingObserver(driver.ExactObserver):
    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingObserver.made.append(self)


def test_stopped_run_gets_its_final_evaluation_and_cancels_the_exact_observer(monkeypatch):
    """Stop (asked from the callback after the first call, so exactly one step runs): phase "stopped", exit
    path of the CLI (130) unchanged, but the summary comes from a fresh evaluation; the exact observer's
    thread is cancelled and ends."""
    RecordingObserver.made = []
    monkeypatch.setattr(driver, "ExactObserver", RecordingObserver)
    control = RunControl()
    result = run(TINY.replace(steps=100), callback=lambda e: e.kind == "steps" and control.stop(), control=control,
                 reference=False)
    assert result.phase == "stopped" and len(result.history) == 1
    assert result.summary["final_source"] == "evaluation with 256 samples" and result.evaluation is not None
    (observer,) = RecordingObserver.made
    assert observer.cancelled
    observer._thread.join(timeout=60)
    assert not observer.working


# ----- races between sessions (issue 11, item 6) --------------------------------------------------
def test_concurrent_starts_of_the_same_settings_compile_once():
    """Three threads start the same (so far uncompiled in this process) settings at once: one compiles the fused
    steps, the others wait for it (today's check-then-read compiled it three times); the runs are identical.
    (This process forgets its compiled steps first; the one build may then find the program in the persistent
    cache, and its seconds are still > 0.)"""
    settings = TINY.replace(steps=2, eval_samples=0)
    driver._COMPILED.clear()
    barrier = threading.Barrier(3)
    results: list = [None] * 3

    def work(i: int) -> None:
        barrier.wait()
        results[i] = run(settings, reference=False, exact=False)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert all(r is not None for r in results)
    compiled = [r.summary["step_compile_seconds"] > 0 for r in results]
    assert sum(compiled) == 1, compiled
    energies = [[h.energy for h in r.history] for r in results]
    assert energies[0] == energies[1] == energies[2]


def test_compiled_cache_builds_once_bounds_its_size_and_forgets_failures():
    """CompiledCache: concurrent gets of one key run one build (the others wait for it); at most maxsize
    entries (oldest evicted); a failing build reaches every waiter and is not cached."""
    cache = driver.CompiledCache(2)
    release, builds = threading.Event(), []

    def slow_build():
        builds.append(1)
        release.wait(60)
        return object()

    got: list = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("k", slow_build))) for _ in range(4)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(timeout=60)
    assert len(builds) == 1 and len({id(v) for v, _ in got}) == 1 and sum(mine for _, mine in got) == 1
    for key in ("a", "b", "c"):
        cache.get(key, object)
    assert len(cache) == 2 and "k" not in cache and "a" not in cache and "c" in cache

    def fail():
        raise RuntimeError("compile failed")

    with pytest.raises(RuntimeError, match="compile failed"):
        cache.get("x", fail)
    assert "x" not in cache and cache.get("x", lambda: 1) == (1, True)


def test_axis_eigenvalue_functions_are_bounded(monkeypatch):
    """The per-engine jitted translation eigenvalues live in a bounded cache (today a dict that kept every
    engine alive): with room for one, the second engine's function evicts the first's.  The engines: one-step
    runs on the default square (its y axis needs the function) with the RBM and the Jastrow model, as
    test_cli_run's every_model test runs them (the same compiled programs)."""
    from nqs_core.vmc import VMC

    monkeypatch.setattr(driver._AXIS_EIGENVALUES, "maxsize", 1)
    driver._AXIS_EIGENVALUES.clear()
    engines = []
    for model in ("rbm", "jastrow"):
        settings = RunSettings(lattice="square", model=model, samples=32, chains=4, steps=1, eval_samples=0)
        result = run(settings, reference=False, exact=False)
        assert len(result.summary["translation_eigenvalues"]) == 2  # x and y
        engines.append(VMC(settings).engine)
        assert engines[-1] in driver._AXIS_EIGENVALUES
    assert len(driver._AXIS_EIGENVALUES) == 1 and engines[1] in driver._AXIS_EIGENVALUES
    assert engines[0] not in driver._AXIS_EIGENVALUES


def test_a_model_constructor_that_raises_leaves_no_observer_thread_waiting(monkeypatch):
    """The exact observer's thread starts before the model is built; when building raises, ``run`` re-raises
    and the thread ends (today it waited forever for a model that never came)."""
    import nqs_core.vmc as vmc_module

    def broken(static):
        raise RuntimeError("model constructor failed")

    RecordingObserver.made = []
    monkeypatch.setattr(driver, "ExactObserver", RecordingObserver)
    monkeypatch.setattr(vmc_module, "engine_for", broken)
    with pytest.raises(RuntimeError, match="model constructor failed"):
        run(TINY.replace(steps=2), reference=False)
    (observer,) = RecordingObserver.made
    assert observer._thread is not None  # ED reaches this chain: the thread was started
    observer._thread.join(timeout=60)
    assert not observer._thread.is_alive(), "the exact observer still waits for the model"
    assert not observer.ready and "cancelled" in observer.error


def test_a_cancelled_exact_observer_ends_without_measuring():
    from nqs_core.run_reference import ExactObserver

    observer = ExactObserver(TINY, True)
    observer.cancel()
    observer._thread.join(timeout=60)
    assert not observer.working and not observer.ready and observer.error.startswith("cancelled")


def _frozen_context(acceptances, energy, reference):
    from nqs_core.callbacks import RunContext
    from nqs_core.vmc import VMCState

    history = [StepRecord(step=i, energy=energy, error=1e-6, variance=0.0, acceptance=a, r_hat=1.0, tau=0.0,
                          grad_norm=0.0, v_score=0.0, seconds=0.1) for i, a in enumerate(acceptances)]
    state = VMCState(params={"w": 1.0}, opt_state=(), sampler=None, step=len(history))
    return RunContext(RunSettings(steps=100), vmc=None, state=state, control=RunControl(), emit=lambda e: None,
                      history=history, reference=None if reference is None else {"energy": reference})


def test_frozen_start_restarts_only_frozen_chains_far_above_the_reference():
    """callbacks.FrozenStart: 10 steps accepting nothing at E = −4 against E₀ = −8.46 → fresh state (the
    step count kept, a note in ctx.restarts); not when one step moved, without a reference, at the
    reference (a frozen ground state, e.g. the TFIM at h = 0), nor in the second half of the run."""
    from nqs_core.callbacks import FrozenStart
    from nqs_core.vmc import VMCState

    asked = []

    def fresh(k):
        asked.append(k)
        return VMCState(params={"w": 2.0}, opt_state=(), sampler=None, step=0)

    cb = FrozenStart(fresh)
    ctx = _frozen_context([0.0] * 10, -4.01, -8.4579)
    cb.after_steps(ctx, ctx.history)
    assert asked == [1] and ctx.state.params == {"w": 2.0} and ctx.state.step == 10
    assert len(ctx.restarts) == 1 and "froze" in ctx.restarts[0] and "step 9" in ctx.restarts[0]
    for acc, energy, ref, n in [([0.0] * 9 + [0.01], -4.01, -8.4579, 10), ([0.0] * 10, -4.01, None, 10),
                                ([0.0] * 10, -8.4579, -8.4579, 10), ([0.0] * 60, -4.01, -8.4579, 60)]:
        ctx = _frozen_context(acc[-n:] if n <= len(acc) else acc, energy, ref)
        cb.after_steps(ctx, ctx.history)
        assert ctx.restarts == [] and ctx.state.params == {"w": 1.0}, (acc[-1], energy, ref, n)
    assert asked == [1]


@pytest.mark.accuracy
@pytest.mark.usefixtures("fully_optimised")  # the driver's steps at XLA's default optimisation
def test_a_collapsed_start_is_restarted_and_the_default_start_does_not_collapse(tmp_path):
    """A ConvNeXt whose amplitude bias is staggered (|ψ|² on a Néel state, what the J1-J2 4×4 run collapsed
    onto from the old nearly-real start, its chains there: no Metropolis move is accepted) is restarted once
    from fresh parameters (the default initialisation), from which the chains keep moving.  (From random
    chains instead, each chain sticks in its own local maximum of |ψ|² and the first energy is wild:
    e.g. 297 ± 7000 with the differing-pair exchange, which ends as a divergence, not a frozen start.)
    30 steps, 5 per call: the restart may come after step 9 or 14 (the first half), then 15 or more from the fresh
    start; 256 samples, as the starts are tested, not the statistics (seeds 1-5 each restart once, the least
    acceptance after it 0.07-0.33; seed 1: 0.30, and 0.31 with the default 1024 samples)."""
    from nqs_core.checkpoint import save_checkpoint
    from nqs_core.vmc import VMC

    settings = RunSettings(hamiltonian="j1j2", model="convnext", seed=1, samples=256, steps=30, steps_per_call=5,
                           eval_samples=0)
    vmc = VMC(settings)
    state = vmc.init()
    params = jax.tree_util.tree_map(lambda x: x, state.params)
    neel = np.array([3.0, -3.0, -3.0, 3.0])  # in-patch sites (0,0), (1,0), (0,1), (1,1): A, B, B, A
    params["params"]["visible_bias"] = params["params"]["visible_bias"].at[:, 0].set(neel)
    # and the chains where such a run left them: on the favoured Néel state (+1 on the A sublattice)
    a_sites = vmc.lattice.sublattice == 0
    chains = np.broadcast_to(np.where(a_sites, 1, -1).astype(np.int8), state.sampler.sigma.shape)
    collapsed = state.replace(params=params, sampler=state.sampler.replace(sigma=jnp.asarray(chains)))
    save_checkpoint(tmp_path / "collapsed.npz", collapsed, settings.to_dict(), [])
    result = run(settings, resume=tmp_path / "collapsed.npz")
    s = result.summary
    assert len(s["restarts"]) == 1 and "froze" in s["restarts"][0], s["restarts"]
    frozen = [r.step for r in result.history if r.acceptance < 1e-3]
    assert len(frozen) >= 10 and frozen[-1] < 20  # the frozen steps before the restart, recorded
    assert min(r.acceptance for r in result.history[frozen[-1] + 1:]) > 0.05  # from the fresh start, no collapse
    assert [r.step for r in result.history] == list(range(30))