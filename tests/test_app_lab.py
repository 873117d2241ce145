"""One lab session without a server: Run refused with the reason, a real tiny run drained by the
periodic callback, export (CSV, JSON, checkpoint) and loading the JSON back into a fresh session."""

import csv
import io
import json
import time

import numpy as np
import pytest

from app.lab import HISTORY_FIELDS, Lab, parse_run_json

TINY = dict(preset="custom", hamiltonian="heisenberg", lattice="chain", L=6, bc="periodic", model="rbm",
            sign="marshall", samples=64, chains=4, steps=15, dtype="float32")


def run_to_end(lab: Lab, timeout: float = 180.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        lab.tick()
        if not lab.runner.alive and lab.runner.phase in ("done", "stopped", "diverged", "error"):
            lab.tick()
            return
        time.sleep(0.1)
    pytest.fail(f"run did not end: {lab.runner.status_text()}")


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


@pytest.mark.slow
def test_run_export_and_load_again(tmp_path):
    lab = Lab()
    lab.settings.param.update(**TINY)
    lab._on_run()
    assert lab.runner.alive and lab.run_button.disabled and not lab.stop_button.disabled
    run_to_end(lab)
    assert lab.runner.phase == "done", lab.runner.status_text()
    assert "step 15 / 15" in lab.status.object
    assert len(lab.history) == 15 and lab.energy.n_points == 15
    assert len(lab.spins.frames) == 15 and lab.spins.source.data["image"][0].shape == (6, 15)
    assert not lab.run_button.disabled and lab.stop_button.disabled, "buttons follow the finished worker"
    # the final-state pictures computed in the worker
    assert len(lab.sign.config_source.data["phase"]) == 4
    assert len(lab.momentum.final_source.data["re"]) == 1
    assert lab.reference is not None and lab.energy.ref_source.data["energy"]

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
    assert "Loaded a run of 15 steps" in other.message.object
    assert other.energy.n_points == 15 and other.settings.L == 6 and other.settings.lattice == "chain"
    assert np.allclose(other.energy.source.data["energy"], lab.energy.source.data["energy"])
    assert other.reference == lab.reference
    assert "step 15 / 15" in other.status.object

    bad = Lab()
    bad.upload.value = b"{not json"
    assert "Could not load" in bad.message.object
