"""Runs side by side (issue 12, item 1), the sweep tab's refusals and the correlation map: the labels of
what differs, the overlay store, the legend entries, the sign-problem comparison's order, and the map
of a Néel state; no server, no VMC run."""

from types import SimpleNamespace

import numpy as np
import pytest

from app.overlays import MAX_KEPT, OverlayStore, difference_labels, run_series, setting_text
from app.settings import LabSettings
from app.run_queue import RUNNING, WAITING, RunQueue
from app.sweep_job import CurvePoint, SweepJob, curve_grid
from app.views.compare import SIGN_PROBLEM, CompareView
from app.views.correlations import map_rows, sample_map
from app.views.sweep import SweepView, point_row
from nqs_core.lattice import make_lattice
from nqs_core.presets import get_preset
from nqs_core.settings import RunSettings
from nqs_core.sweep import SweepEvent, make_sweep


def record(step: int, energy: float, **extra) -> SimpleNamespace:
    fields = dict(marshall_agreement=None, sign_agreement=None, fidelity=None, translation_eigenvalue=None)
    return SimpleNamespace(step=step, energy=energy, **{**fields, **extra})


def test_labels_name_the_settings_that_differ():
    no_sign, marshall = (get_preset(name).settings() for name in SIGN_PROBLEM)
    assert difference_labels([no_sign, marshall], marshall) == ["sign prior: none", "sign prior: Marshall"]
    # the current settings count: a run like them is named by what the others change
    assert difference_labels([marshall], marshall.replace(J2=0.5)) == ["J2: 0.3"]
    assert difference_labels([marshall], marshall) == ["same settings as now"]
    many = marshall.replace(J2=0.5, L=6, lr=0.01, seed=3)
    assert difference_labels([marshall, many], None)[1] == "L: 6, J2: 0.5, learning rate: 0.01, …"
    assert setting_text("k", (1.0,)) == "momentum sector k: π" and setting_text("k", None).endswith("k: none")
    assert setting_text("model", "convnext") == "model: ConvNeXt"
    # a label holding an input hint is named short: "trust region: 0.1", not "… (empty: none): 0.1"
    assert setting_text("max_step", 0.1) == "trust region: 0.1" and setting_text("max_step", None) == "trust region: off"
    assert setting_text("time_budget", 60.0) == "time budget (s): 60"


def test_store_keeps_labels_hides_and_clears():
    store = OverlayStore(current=RunSettings(sign="marshall"))
    assert store.keep(RunSettings(sign="none"), [], None) is None  # a run without steps is not kept
    first = store.keep(RunSettings(sign="none"), [record(0, -8.0), record(1, -9.0)], -10.0, "done")
    assert first.label == "run 1 · sign prior: none" and store.shown == 1
    assert store.overlays() == [] and store.overlays(include_shown=True) == [first]
    store.release_shown()  # a new run starts: the finished one becomes an overlay
    assert store.overlays() == [first]
    second = store.keep(RunSettings(sign="marshall"), [record(0, -9.5)], -10.0)
    assert [r.label for r in store.runs] == ["run 1 · sign prior: none", "run 2 · sign prior: Marshall"]
    version = store.version
    store.current = RunSettings(sign="marshall", seed=0)  # the same labels: nothing to redraw
    assert store.version == version
    store.current = RunSettings(sign="marshall", L=6)  # the labels follow the current settings
    assert store.runs[0].label == "run 1 · L: 4, sign prior: none" and store.version == version + 1
    version = store.version
    store.set_visible([2])
    assert not first.visible and second.visible and store.version > version
    version = store.version
    store.set_visible([2])  # unchanged: nothing to redraw
    assert store.version == version
    for i in range(MAX_KEPT + 2):  # different runs (an identical one is not kept twice)
        store.keep(RunSettings(), [record(0, -1.0 - i)], None)
    assert len(store.runs) == MAX_KEPT and store.runs[-1].number == MAX_KEPT + 4
    store.clear()
    assert store.runs == [] and store.shown is None


def test_series_per_site_relative_error_and_momentum():
    history = [record(0, -8.0, marshall_agreement=0.5, translation_eigenvalue=(-1.0, -1e-12)),
               record(1, float("nan"), fidelity=0.9), record(2, -10.0, sign_agreement=1.0)]
    s = run_series(history, 4, -10.0)
    assert s["energy"] == ([0, 2], [-2.0, -2.5])
    assert s["relative_error"] == ([0], [pytest.approx(0.2)])  # 0 has no place on a log axis
    assert s["marshall"] == ([0], [0.5]) and s["fidelity"] == ([1], [0.9]) and s["sign_agreement"] == ([2], [1.0])
    assert s["momentum"] == ([0], [1.0])  # k = π, whatever the rounding sign of Im⟨T⟩
    assert run_series(history, 4, None)["relative_error"] == ([], [])


def test_a_reference_after_the_end_gives_the_kept_run_its_relative_error():
    store = OverlayStore()
    run = store.keep(RunSettings(lattice="chain", L=4), [record(0, -1.0), record(1, -1.5)], None)
    store.set_reference(-2.0)  # e.g. DMRG, finished after the run
    assert run.series["relative_error"] == ([0, 1], [0.5, 0.25])
    store.release_shown()
    store.set_reference(-4.0)  # only the run the views show takes a new reference
    assert run.series["relative_error"] == ([0, 1], [0.5, 0.25])


def test_overlay_lines_name_each_run_in_the_legend_and_follow_hide():
    view = CompareView(LabSettings(preset="j1j2-marshall"))
    for name in SIGN_PROBLEM:
        view.store.keep(get_preset(name).settings(), [record(0, -8.0), record(1, -8.2)], -8.5)
    view.tick()
    items = [item for item in view.figures[0].legend[0].items if item.visible]
    assert [item.label.value for item in items] == ["run 1 · sign prior: none", "run 2 · sign prior: Marshall"]
    assert view.choice.value == [1, 2]
    assert view._drawn == view.store.version, "drawing the checkboxes changed the store: a second redraw"
    view.choice.value = [2]  # untick run 1
    view.tick()
    assert [i.label.value for i in view.figures[0].legend[0].items if i.visible] == ["run 2 · sign prior: Marshall"]
    view.clear_button.clicks += 1
    view.tick()
    assert not any(i.visible for i in view.figures[0].legend[0].items) and view.choice.options == {}


def test_the_sign_problem_comparison_runs_both_presets_in_turn():
    started: list[str] = []
    settings = LabSettings()
    view = CompareView(settings, run_preset=started.append)
    assert not view.sidebar_button.visible  # under the preset menu only with a sign-problem preset
    settings.preset = "j1j2-no-sign"
    assert view.sidebar_button.visible
    view.sidebar_button.clicks += 1
    assert started == ["j1j2-no-sign"]
    view.run_finished(get_preset("j1j2-no-sign").settings(), [record(0, -8.0)], None, "done")
    assert started == ["j1j2-no-sign", "j1j2-marshall"]
    view.run_finished(get_preset("j1j2-marshall").settings(), [record(0, -8.0)], None, "done")
    assert len(started) == 2 and len(view.store.runs) == 2
    view.start_comparison()
    view.run_finished(get_preset("j1j2-no-sign").settings(), [record(0, -8.0)], None, "stopped")
    assert view.plan == [] and len(started) == 3  # a stopped run ends the comparison
    view.start_comparison()  # abandoned by a Reset: the next run that ends is another one
    view.run_finished(get_preset("heisenberg-4x4").settings(), [record(0, -8.0)], None, "done")
    assert view.plan == [] and len(started) == 4


def test_a_loaded_run_is_kept_to_compare_with():
    from app.export import run_json
    from app.lab import Lab
    from nqs_core.events import StepRecord

    settings = RunSettings(lattice="chain", L=6, sign="none", steps=2)
    history = [StepRecord(i, -2.0 - i, 0.01, 0.1, 0.5, 1.0, 1.0, 0.1, 0.01, 0.01) for i in range(2)]
    reference = {"energy": -2.4, "method": "ed"}
    lab = Lab()
    lab.load_bytes("run.json", run_json(settings, history, reference, None).encode(), background=False)
    (kept,) = lab.compare.store.runs
    assert kept.settings == settings and kept.outcome == "loaded" and kept.series["relative_error"][0] == [0, 1]
    assert lab.compare.store.shown == kept.number  # drawn by the views: an overlay once another run starts


def test_a_run_loaded_back_after_its_export_is_not_kept_twice():
    """Run, export, load: the loaded run is the kept one (one entry, shown); another run is kept beside it."""
    store = OverlayStore()
    settings, history = RunSettings(lattice="chain", L=6), [record(0, -2.0), record(1, -2.4)]
    first = store.keep(settings, history, -2.5, "done")
    store.keep(settings.replace(seed=1), [record(0, -2.1)], -2.5, "done")
    assert store.keep(settings, list(history), -2.5, "loaded") is first
    assert [r.number for r in store.runs] == [1, 2] and store.shown == first.number
    assert store.keep(settings, [record(0, -2.0), record(1, -2.3)], -2.5, "loaded").number == 3  # other steps


def test_the_comparison_waits_for_a_free_session():
    started: list[str] = []
    view = CompareView(LabSettings(), run_preset=started.append, busy=lambda: True)
    view.start_comparison()
    assert started == [] and view.plan == [] and "Stop it first" in view.note.object


@pytest.mark.parametrize("coupling, text, setting", [("h", "0.5:1.5:1", "h"), ("h", "0.5:30:5", "h"),
                                                     ("h", "1:2", "h")])
def test_sweep_refuses_a_range_naming_the_setting(coupling, text, setting):
    settings = LabSettings(preset="tfim-critical")
    view = SweepView(settings)
    view.coupling, view.range_text = coupling, text
    assert not view.start() and view.job is None
    assert view.message.startswith(f"Not started: {setting} ") or f" {setting} " in view.message, view.message


def test_sweep_refuses_a_time_budget_and_follows_the_hamiltonian():
    settings = LabSettings(preset="j1j2-marshall")
    view = SweepView(settings)
    assert view.coupling == "J2" and "J" not in view.param.coupling.objects
    settings.time_budget = 30.0
    assert not view.start() and "time_budget" in view.message
    settings.hamiltonian = "tfim"
    assert view.coupling == "h" and view.range_text == "0.5:1.5:5"


def test_a_sweep_point_is_drawn_against_its_exact_values():
    point = SimpleNamespace(value=1.0, energy_per_site=-1.2766, error_per_site=1e-4, reference_energy_per_site=-1.0,
                            observables={"magnetisation": 0.68, "magnetisation_error": 0.01, "fidelity": 0.999,
                                         "sigma_x": 0.64},
                            exact={"energy_per_site": -1.2768, "magnetisation": 0.69, "sigma_x": 0.638})
    row = {k: v[0] for k, v in point_row(point, tfim=True).items()}
    assert row["exact_energy"] == -1.2768  # the ED state's energy before the closed form's
    assert row["rel"] == pytest.approx(0.0002 / 1.2768) and row["upper"] == pytest.approx(-1.2765)
    assert (row["order"], row["order_lower"], row["order_exact"]) == (0.68, 0.67, 0.69)
    assert np.isnan(row["marshall"]) and row["fidelity"] == 0.999 and row["sigma_x_exact"] == 0.638
    heisenberg = SimpleNamespace(**{**vars(point), "exact": None, "observables": {
        "structure_factor": {"peak": {"value": 2.5, "error": None}}, "marshall_agreement": 1.0}})
    row = {k: v[0] for k, v in point_row(heisenberg, tfim=False).items()}
    assert row["exact_energy"] == -1.0 and row["order"] == 2.5 and row["order_upper"] == 2.5
    assert row["marshall"] == 1.0 and np.isnan(row["order_exact"]) and row["momentum"] == ""
    j1j2 = SimpleNamespace(**{**vars(heisenberg), "observables": {"measured_momentum": [1.0, 0.0]},
                              "exact": {"ground_momentum": [0.0, 0.0], "energy_per_site": -0.5}})
    row = {k: v[0] for k, v in point_row(j1j2, tfim=False).items()}
    assert (row["momentum"], row["momentum_exact"]) == ("(π, 0)", "(0, 0)")


def test_the_sweep_tab_draws_what_its_job_reports():
    view = SweepView(LabSettings(preset="tfim-critical"))
    point = SimpleNamespace(value=0.5, energy_per_site=-1.06, error_per_site=1e-4, reference_energy_per_site=-1.0635,
                            observables={"magnetisation": 0.96}, exact={"energy_per_site": -1.0635})
    events = [SweepEvent("start", 0, 0.5, message="h = 0.5"),
              SweepEvent("steps", 0, 0.5, records=[SimpleNamespace(energy=-12.0)]),
              CurvePoint(0.75, {"energy_per_site": -1.15, "magnetisation": 0.9, "sigma_x": 0.5}),
              CurvePoint(0.5, {"energy_per_site": -1.06, "magnetisation": 0.96, "sigma_x": 0.3})]
    view.job = SimpleNamespace(drain=lambda: events, alive=True, sweep=SimpleNamespace(values=(0.5, 0.75), coupling="h"),
                               events=SimpleNamespace(qsize=lambda: 0))
    view.n_sites, view._pending_reset = 12, True
    view.sweep_button.disabled = True
    view.tick()
    assert view.live.data == {"value": [0.5], "energy": [-1.0]} and view.message == "point 1 of 2: h = 0.5"
    assert view.curve_source.data["value"] == [0.5, 0.75] and view.curve_source.data["order"] == [0.96, 0.9]
    events[:] = [SweepEvent("point", 0, 0.5, point=point), SweepEvent("done", message="done: 1 of 2 points")]
    view.job.alive = False
    view.tick()
    assert [r["energy"] for r in view.rows] == [-1.06] and view.live.data["value"] == []
    assert view.message == "Sweep done: 1 of 2 points" and not view.sweep_button.disabled
    # the tab shown only now: its figures are built on the sources drawn so far, labelled for this sweep
    assert "figures" not in view.__dict__
    energy, _, _, order = view.panel and view.figures
    assert energy.renderers[0].data_source is view.curve_source and energy.xaxis[0].axis_label == "h"
    assert order.yaxis[0].axis_label == "⟨|Σσᶻ|⟩/N, ⟨σˣ⟩" and view.sigma_x_points.visible
    events[:], view.tfim, view._pending_reset = [], False, True  # the next sweep (S·S model) relabels the built figures
    view.tick()
    assert order.yaxis[0].axis_label == "S(q) peak" and not view.sigma_x_points.visible and not view.rows


def test_curve_grid_holds_the_swept_values():
    grid = curve_grid((0.5, 0.75, 1.0, 1.33), n=5)
    assert grid[:4] == [0.5, 0.75, 1.0, 1.33]  # the swept values first, then the finer grid
    assert len(grid) == len(set(grid)) == 7 and min(grid) == 0.5 and max(grid) == 1.33
    assert curve_grid((0.0, 1.0), n=0) == [0.0, 1.0]


def test_correlation_map_of_a_neel_state_alternates():
    chain = make_lattice("chain", 6, "periodic")
    neel = np.array([[1, -1, 1, -1, 1, -1], [-1, 1, -1, 1, -1, 1]])
    assert np.allclose(sample_map(neel, chain, ising=True), [1, -1, 1, -1, 1, -1])
    assert np.allclose(sample_map(neel, chain, ising=False), np.array([1, -1, 1, -1, 1, -1]) / 4)
    square = make_lattice("square", 4, "periodic")
    rows = map_rows(sample_map(np.where(square.sublattice == 0, 1, -1)[None, :], square, ising=True))
    by_position = {(x, y): c for x, y, c in zip(rows["x"], rows["y"], rows["c"])}
    assert by_position[(0, 0)] == 1 and by_position[(1, 0)] == -1 and by_position[(1, 1)] == 1


@pytest.mark.slow
def test_the_final_correlation_map_comes_with_the_final_pictures():
    """Computed where the run ran (the Runner's ``after`` hook), drawn by ``show_final``."""
    from app.pictures import final_pictures
    from app.views.correlations import CorrelationMap
    from nqs_core.driver import run

    settings = RunSettings(hamiltonian="heisenberg", lattice="chain", L=6, samples=64, chains=4, steps=2, eval_samples=0)
    c = final_pictures(run(settings))["correlation_map"]
    assert c.shape == (6,) and np.isclose(c[0], 0.75)  # ⟨S_0·S_0⟩ = 3/4
    view = CorrelationMap()
    view.reset(make_lattice("chain", 6, "periodic"), ising=False)
    view.show_final(c)
    assert view.source.data["c"] == c.tolist() and "⟨S_0·S_r⟩ of the final state" in view.note.object


def test_a_queued_sweep_starts_its_exact_curve_only_with_its_place():
    """The exact curve (ED) waits for the sweep's run-queue place, like its points: a sweep cancelled
    while queued never starts it, and leaves the line without taking a place."""
    q = RunQueue(1)
    other = q.join("other-run")
    assert other.state == RUNNING
    sweep = make_sweep(get_preset("tfim-critical").settings().replace(L=8, steps=2), "h", "0.5:1.5:3")
    job = SweepJob(sweep, q, name="queued").start()
    first = job.events.get(timeout=60)
    assert first.kind == "queued" and job._ticket.state == WAITING
    assert job.curve_thread.ident is None  # not started while the ticket waits
    job.stop()
    job.thread.join(60)
    assert not job.thread.is_alive() and job.curve_thread.ident is None
    assert [e.kind for e in job.drain()] == ["stopped"] and q.running == 1 and q.waiting == 0
    other.release()
    assert q.running == 0
