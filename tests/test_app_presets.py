"""The talk presets converge (engine, headless).

Each preset runs as the app runs it (``nqs_core.driver.run``); the final energy must be within
the stated relative error of the exact reference (closed form or ED), and the 18-site chain must
sit at k = π (translation eigenvalue −1).  Measured 2026-11-25 under load ≈ 5 (README "The lab").
Their wall time (about a minute each on 2 shared cores) is checked by benchmarks/talk_presets.py,
not here: a test asserts what happened, not how long it took on a loaded machine.
"""

import numpy as np
import pytest

from app.settings import LabSettings
from nqs_core.driver import run
from nqs_core.presets import presets
from nqs_core.run_reference import find_reference

pytestmark = [pytest.mark.accuracy, pytest.mark.timeout(900)]

# preset -> relative error reached at the end
BOUNDS = {
    "heisenberg-4x4": 1e-2,
    "j1j2-no-sign": 3e-2,
    "j1j2-marshall": 2e-2,
    "chain-18-k-pi": 3e-3,
    "tfim-critical": 1e-3,
}
TALK = [p.name for p in presets("talk")]


def test_every_talk_preset_has_a_bound():
    assert set(BOUNDS) == set(TALK)


@pytest.mark.parametrize("name", TALK)
@pytest.mark.usefixtures("fully_optimised")  # the driver's steps at XLA's default optimisation
def test_preset_converges(name):
    settings = LabSettings(preset=name).to_run_settings()
    ref = find_reference(settings, compute_dmrg=False)
    assert ref is not None and ref["method"].split()[0] in ("exact", "ed")
    result = run(settings, reference=False, exact=False)  # the energy is checked, not the overlap
    rel = abs(result.summary["final_energy"] - ref["energy"]) / abs(ref["energy"])
    assert result.phase == "done" and rel < BOUNDS[name], (rel, result.summary["final_energy"], ref["energy"])
    if settings.k is not None:  # the projected sector is the measured one: e^{iπ} = −1
        z = complex(*result.history[-1].translation_eigenvalue)
        assert abs(z - np.exp(1j * np.pi * settings.k[0])) < 1e-6
