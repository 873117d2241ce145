"""The reference only DMRG can give: computed by the session in a background process, its progress
shown in the energy view, then the dashed line labelled "DMRG (TeNPy …, χ=…)"; Reset cancels it.

A fresh cache directory makes sure DMRG really runs; a loose tolerance keeps it to seconds.
"""

import signal

import pytest
from conftest import tick_until

from app.lab import Lab
from app.reference_job import needs_new_dmrg, progress_text
from nqs_core.references import reference
from nqs_core.settings import RunSettings
from nqs_core.problem import build_problem

# 26 sites: the smallest periodic chain beyond ED (24 sites), so only DMRG gives its reference
CHAIN = dict(hamiltonian="j1j2", lattice="chain", L=26, J1=1.0, J2=0.3, model="rbm", sign="marshall", samples=64,
             chains=4, steps=50, dtype="float32")
FAST_DMRG = {"rel_tol": 1e-5, "chi_max": 64}


def test_only_chains_beyond_ed_without_a_stored_value_need_dmrg(tmp_path, monkeypatch):
    monkeypatch.setenv("NQS_CACHE_DIR", str(tmp_path))
    _, beyond = build_problem(RunSettings(**CHAIN))
    assert needs_new_dmrg(beyond, **FAST_DMRG)
    _, small = build_problem(RunSettings(**{**CHAIN, "L": 16}))  # ED reaches it
    _, bethe = build_problem(RunSettings(**{**CHAIN, "hamiltonian": "heisenberg", "J1": None, "J2": None}))
    _, square = build_problem(RunSettings(**{**CHAIN, "lattice": "square", "L": 6}))  # DMRG handles chains only
    assert not needs_new_dmrg(small) and not needs_new_dmrg(bethe) and not needs_new_dmrg(square)
    assert "χ = 64" in progress_text({"stage": 2, "chi": 64, "sweep": 5, "energy": -11.5, "seconds": 3.0})


@pytest.mark.slow
def test_dmrg_reference_in_the_background_with_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("NQS_CACHE_DIR", str(tmp_path))
    lab = Lab()
    lab.dmrg_options = dict(FAST_DMRG)
    settings = RunSettings(**CHAIN)
    lab._reset_views(settings)
    lab._start_reference(settings)
    seen: list[str] = []
    tick_until(lab, lambda: lab.reference is not None, 300, "the DMRG reference",
               each=lambda: seen.append(lab.energy.ref_label.object))
    assert any("DMRG (TeNPy) running in the background: stage" in t for t in seen), set(seen)
    ref = lab.reference
    assert ref["method"] == "dmrg" and ref["provenance"]["chi"] <= 64
    label = lab.energy.ref_label.object  # the caption under the energy figure's title
    assert f"DMRG (TeNPy {ref['provenance']['library'].split()[-1]}, χ={ref['provenance']['chi']})" in label
    per_site = ref["energy"] / settings.n_sites  # the energy view draws E/N
    assert lab.energy.ref_source.data["energy"] == [per_site, per_site]
    legend = [item.label["value"] for item in lab.energy.fig.legend[0].items]
    assert any(text.startswith("DMRG (TeNPy") and "χ=" in text for text in legend), legend
    # the job cached its result: the driver (and the next session) now find it without DMRG
    _, ham = build_problem(settings)
    assert reference(ham, method="dmrg", compute_dmrg=False, **FAST_DMRG)["energy"] == ref["energy"]
    # physics: per site within finite-size effects of the exact 16-site ring at the same couplings (measured:
    # 1.35e-3 apart; the 20-site ring, 6e-4 apart, cost 24 s of CPU for its ED)
    ed = reference(build_problem(RunSettings(**{**CHAIN, "L": 16}))[1], method="ed")
    assert abs(ref["energy"] / 26 - ed["energy"] / 16) < 3e-3
    assert ref["energy"] / 26 < -0.38


@pytest.mark.slow
def test_reset_and_session_end_cancel_the_dmrg_process(tmp_path, monkeypatch):
    monkeypatch.setenv("NQS_CACHE_DIR", str(tmp_path))
    for end in ("reset", "shutdown"):
        lab = Lab()
        settings = RunSettings(**{**CHAIN, "L": 60})  # default tolerance: minutes of DMRG
        lab._reset_views(settings)
        lab._start_reference(settings)
        tick_until(lab, lambda: lab.ref_job is not None and lab.ref_job.state == "dmrg", 60, "the DMRG process")
        process = lab.ref_job._job._process
        assert process.is_alive()
        lab._on_reset() if end == "reset" else lab.shutdown()
        process.join(60)  # a guard against a hang; the exit code says who ended it
        assert not process.is_alive() and process.exitcode == -signal.SIGTERM, (end, process.exitcode)
        # after Reset the idle page only looks references up (closed form, ED, stored): never a DMRG run
        assert lab.ref_job is None or lab.ref_job.state != "dmrg"
