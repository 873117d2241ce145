"""One lab session without a server: Run refused with the reason, a real tiny run drained by the
periodic callback, live sign/momentum data during a run, export (CSV, JSON, checkpoint) and
loading both the JSON and the checkpoint (.npz) back into a fresh session."""

import csv
import io
import json

import numpy as np
import pytest
from conftest import TINY as SUITE_TINY
from conftest import run_lab_to_end, tick_until

from app.export import load_run_file
from app.lab import HISTORY_FIELDS, Lab, parse_run_json

# the suite's small run as the lab's controls (sign: the default preset's Marshall prior switched off), so its
# programs come from the compilation cache
TINY = dict(preset="custom", **SUITE_TINY, sign="none", steps=15)


def test_invalid_settings_are_refused_next_to_the_control():
    lab = Lab()
    lab.settings.L = 5
    assert lab.widgets["L"].error_state and "even number of sites" in lab.widgets["L"].helper_text
    lab._on_run()
    assert "Not started" in lab.message.object and not lab.runner.alive
    assert not lab.run_button.disabled
    lab.settings.L = 4
    assert not lab.widgets["L"].error_state and lab.widgets["L"].helper_text == ""


def test_dependent_visibility_reaches_the_widgets():
    lab = Lab()
    assert lab.widgets["J"].visible and not lab.widgets["J2"].visible and not lab.widgets["h"].visible
    lab.settings.hamiltonian = "tfim"
    assert lab.widgets["h"].visible and not lab.widgets["sign"].visible
    lab.settings.model = "convnext"
    assert lab.widgets["depth"].visible and not lab.widgets["alpha"].visible


def test_an_ended_run_finishing_its_pictures_is_neither_paused_nor_exported(monkeypatch):
    """Between "done" and the worker's end (its final pictures, then the summary) Pause has nothing left to
    pause and an exported run would lack its summary; Stop stays."""
    lab = Lab()
    lab.history = [object()]  # a step to export
    monkeypatch.setattr(type(lab.runner), "alive", property(lambda runner: True))
    for phase, going in (("running", True), ("done", False), ("stopped", False), ("diverged", False)):
        lab.runner.phase = phase
        lab._refresh_buttons()
        assert lab.pause_button.disabled is not going and not lab.stop_button.disabled, phase
        assert lab.download_json.disabled is not going and lab.download_csv.disabled is not going, phase


@pytest.mark.slow
def test_run_export_and_load_again(tmp_path):
    lab = Lab()
    lab.settings.param.update(**TINY)
    lab._on_run()
    assert lab.runner.alive and lab.run_button.disabled and not lab.stop_button.disabled
    run_lab_to_end(lab)
    assert lab.runner.phase == "done", lab.runner.status_text()
    assert "step 15 / 15" in lab.status.object
    assert len(lab.history) == 15 and lab.energy.n_points == 15
    assert len(lab.spins.frames) == 15
    lab.spins.mode.value = "Sampled batch"  # the batch draws its frames once shown (the Spins tab is active)
    lab.tick()
    assert lab.spins.source.data["image"][0].shape == (6, 15)
    assert not lab.run_button.disabled and lab.stop_button.disabled, "buttons follow the finished worker"
    # the final-state pictures computed in the worker
    assert len(lab.sign.config_source.data["phase"]) == 4
    assert len(lab.momentum.final_source.data["re"]) == 1
    assert lab.reference is not None and lab.energy.ref_source.data["energy"]
    # the summary under the status: the sampled energy and the final state's exact one (ED reaches 6 sites)
    assert "relative error" in lab.message.object and "exact ⟨H⟩ of the final state" in lab.message.object

    rows = list(csv.DictReader(io.StringIO(lab._csv_bytes().read().decode())))
    assert len(rows) == 15 and list(rows[0]) == list(HISTORY_FIELDS)
    assert [int(r["step"]) for r in rows] == list(range(15))
    exported = lab._json_bytes().read()
    data = json.loads(exported)
    assert data["settings"]["L"] == 6 and len(data["history"]) == 15 and data["summary"]["phase"] == "done"
    ckpt = lab._checkpoint_bytes().read()
    assert ckpt[:2] == b"PK"  # a NumPy .npz archive written by the engine

    settings, history, reference, summary = parse_run_json(exported.decode())
    assert settings == lab.run_settings and [r.energy for r in history] == [r.energy for r in lab.history]

    other = Lab()
    other.upload.filename = "run.json"
    other.upload.value = exported
    tick_until(other, lambda: not other.loading, 60, "the JSON to load")
    assert "Loaded a run of 15 steps" in other.message.object
    assert other.energy.n_points == 15 and other.settings.L == 6 and other.settings.lattice == "chain"
    assert np.allclose(other.energy.source.data["energy"], lab.energy.source.data["energy"])
    assert other.reference == lab.reference
    assert "step 15 / 15" in other.status.object
    assert np.allclose(other.sign.source.data["marshall"], lab.sign.source.data["marshall"], equal_nan=True)
    assert len(other.momentum.circle_source.data["re"]) == 15
    # a mistyped setting and Run refused: the loaded run stays on the status line (it read "idle · step 15 / 15")
    other.settings.L = 5
    other._on_run()
    assert "Not started" in other.message.object and "loaded · step 15 / 15" in other.status.object
    other.settings.L = 6

    # the checkpoint alone redraws every view, including those drawn from the state
    third = Lab()
    third.load_bytes("checkpoint.npz", ckpt, background=False)
    assert "Loaded a checkpoint of 15 steps" in third.message.object, third.message.object
    assert third.run_settings == lab.run_settings and third.settings.L == 6
    assert np.allclose(third.energy.source.data["energy"], lab.energy.source.data["energy"])
    assert third.diagnostics.source.data["acceptance"] == lab.diagnostics.source.data["acceptance"]
    assert len(third.momentum.circle_source.data["re"]) == 15
    assert len(third.spins.frames) == 1 and third.spins.frames[0].shape == (4, 6)
    assert len(third.sign.config_source.data["phase"]) == 4 and "loaded checkpoint" in third.sign.config_title.object
    assert len(third.momentum.final_source.data["re"]) == 1 and len(third.momentum.sq_source.data["s"]) == 6
    # a checkpoint stores no reference: the session looks it up (Bethe ansatz for this chain)
    tick_until(third, lambda: third.reference is not None, 60, "the reference of the loaded checkpoint")
    assert third.reference["energy"] == pytest.approx(lab.reference["energy"], rel=1e-12)
    # the restored state is the one the run ended with: its chains and log ψ give the same picture
    assert np.allclose(third.sign.config_source.data["phase"], lab.sign.config_source.data["phase"])
    assert third.momentum.final_source.data["re"] == pytest.approx(lab.momentum.final_source.data["re"])
    loaded = load_run_file("checkpoint.npz", ckpt, pictures=False)
    assert loaded.kind == "checkpoint" and loaded.phase == "done" and loaded.samples is None

    # Reset after a finished run and after a loaded one: the views and the step count go back to idle
    for session in (lab, other):
        session._on_reset()
        assert session.history == [] and session.energy.n_points == 0, session.energy.n_points
        assert "step 0 /" in session.status.object and "press Run" in session._stage_text()

    bad = Lab()
    bad.load_bytes("run.json", b"{not json", background=False)
    assert "Could not load run.json" in bad.message.object
    bad.load_bytes("x.npz", b"PK\x05\x06" + bytes(18), background=False)  # an empty zip archive
    assert "Could not load x.npz" in bad.message.object


@pytest.mark.slow
def test_a_run_without_a_reference_says_why_instead_of_waiting():
    """The TFIM on the 6×6 square has no reference (too large for ED, no DMRG for squares, none published):
    the idle page says why, and a finished run says so too, not "waiting for the reference…"."""
    lab = Lab()
    lab.settings.param.update(**{**TINY, "hamiltonian": "tfim", "lattice": "square", "L": 6, "steps": 2})
    tick_until(lab, lambda: "too large for ED" in lab.energy.ref_label.object, 60, "the idle page's reason")
    assert "reference: no reference for tfim" in lab.energy.ref_label.object  # no "reference: ValueError: …"
    lab._on_run()
    assert lab.energy.rel_waiting.text == "waiting for the reference…" and "looking" in lab.energy.ref_label.object
    run_lab_to_end(lab)
    assert lab.runner.phase == "done" and lab.reference is None
    assert "reference: no reference for tfim" in lab.energy.ref_label.object  # Run had set "looking it up…"
    assert "too large for ED" in lab.energy.ref_label.object
    assert lab.energy.rel_waiting.visible and lab.energy.rel_waiting.text.startswith("no reference energy")


def test_sign_and_momentum_views_fill_during_a_run():
    """Per-step Marshall agreement and translation eigenvalue stream while running; the
    per-configuration sign picture appears from the run's checkpoint before the run ends."""
    lab = Lab()
    # the k = 0 projection is a configuration of its own: without a final evaluation it compiles no more
    lab.settings.param.update(**{**TINY, "steps": 100_000, "eval_samples": 0})
    lab.settings.k = "0"
    lab._on_run()
    tick_until(lab, lambda: len(lab.history) >= 5, 180, "the first steps")
    marshall = np.asarray(lab.sign.source.data["marshall"], dtype=float)
    assert np.isfinite(marshall).all() and ((marshall >= 0) & (marshall <= 1)).all()
    ev = np.asarray(lab.momentum.circle_source.data["re"]) + 1j * np.asarray(lab.momentum.circle_source.data["im"])
    assert len(ev) == len(lab.history) and np.all(np.abs(ev) <= 1 + 1e-5)
    assert lab.momentum.latest_source.data["re"] == [ev[-1].real]
    # projected on k = 0: the measured eigenvalue is e^{i·0} = 1 at every step (DESIGN.md §2)
    assert np.allclose(ev, 1.0, atol=1e-4)
    assert len(lab.momentum.sq_source.data["s"]) == 6
    tick_until(lab, lambda: len(lab.sign.config_source.data["phase"]) > 0, 60, "the live sign picture")
    assert lab.runner.alive, "the picture must come while the run is going"
    assert "checkpoint" in lab.sign.config_title.object and "agree with Marshall" in lab.sign.config_title.object
    lab._on_stop()
    # a hang guard: the stopped run still draws its final pictures
    tick_until(lab, lambda: not lab.runner.alive, 180, "the run to stop")
    lab.tick()
    assert lab.runner.phase == "stopped"


def test_figure_text_is_relative_so_it_follows_the_page_font_size():
    """Figure titles are HTML in rem; no text inside a figure has a fixed pixel size (the browser
    scales em with the page's root font size, through every theme switch)."""
    from bokeh.models import Axis, Label, Legend, Title

    lab = Lab()
    for view in lab.views:
        view.panel  # noqa: B018  (built as when its tab is first shown: some views build their figures then)
        for fig in view.figures:
            assert not (fig.title and fig.title.text), fig.title.text
            texts = [(m, a) for m in fig.select({"type": Axis}) for a in ("axis_label_text_font_size",
                                                                       "major_label_text_font_size")]
            texts += [(m, "text_font_size") for m in [*fig.select({"type": Label}), *fig.select({"type": Title})]
                      if m.text]
            texts += [(m, "label_text_font_size") for m in fig.select({"type": Legend})]
            for model, attr in texts:
                size = str(getattr(model, attr))
                assert not size.endswith("px"), (view.title, type(model).__name__, attr, size)


def test_status_numbers_stay_short_when_a_run_diverges():
    from app.lab import _number

    assert _number(-11.228483) == "-11.22848"
    assert _number(7.43e225) == "7.4300e+225"
    assert _number(float("inf")) == "nan" and _number(None) == "nan"


def test_typed_values_are_checked_against_the_parameter_and_refused_with_the_range():
    lab = Lab()
    field = lab.widgets["L"]
    for text in ("100", "-4", "", "abc", "3.5"):
        field.value = text
        assert lab.settings.L == 4, text
        assert field.error_state and field.helper_text.startswith("L ") and "2 to 64" in field.helper_text, text
    lab._on_run()
    assert "Not started: L " in lab.message.object and not lab.runner.alive
    field.value = "6"
    assert lab.settings.L == 6 and not field.error_state and lab.message.object == ""
    lab.settings.L = 4  # set elsewhere (a preset, a loaded run): the field follows
    assert field.value == "4"


def test_the_summary_line_names_a_verdict_and_its_reasons():
    """A run that ended with a warning or a failure says so, with the reasons (a restart, frozen chains)
    next to its energy; an ok run shows no verdict."""
    lab = Lab()
    lab.summary = {"final_energy": -4.01, "final_error": 0.002, "final_source": "last step", "verdict": "warning",
                   "warnings": ["restarted after step 26 from fresh parameters: the chains froze"]}
    text = lab._summary_text()
    assert text.startswith("E = -4.01") and "warning: restarted after step 26" in text
    lab.summary = dict(lab.summary, verdict="ok", warnings=[])
    assert "warning" not in lab._summary_text() and "ok" not in lab._summary_text()
