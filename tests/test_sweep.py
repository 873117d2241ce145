"""Coupling sweeps (nqs_core.sweep, ``nqs sweep``) against physics.  (That the engine's step takes
the couplings as run-time values is tested in test_hamiltonians.py and test_vmc.py.)

* A TFIM sweep through the critical point h = J on a 6-site chain: each point within 5e-3 of the exact
  (closed-form) energy, fidelity with the ED state > 0.99, the magnetisation ⟨|Σσᶻ|⟩/N falling and
  ⟨σˣ⟩ rising with h as the exact curve does, the map ⟨σᶻ_0σᶻ_r⟩ near the exact one, all points from
  one compiled step.
* The exact curve itself: Marshall's sign rule is exact for the J1-J2 chain at J2 = 0 and fails at
  J2 = 0.8; the exact ⟨σˣ⟩ obeys E₀ = −J Σ⟨σᶻσᶻ⟩ − h N⟨σˣ⟩.
* ``nqs sweep``: one JSON summary per point and a final table; invalid ranges exit 2 with one line.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import nqs_main

from nqs_core.exact_observables import exact_curve, exact_state
from nqs_core.settings import RunSettings
from nqs_core.sweep import make_sweep, run_sweep
from nqs_core.vmc import engine_for, static_settings

# one static configuration for the library test and the CLI test: the compiled step is shared
TFIM = RunSettings(hamiltonian="tfim", lattice="chain", L=6, samples=128, chains=8, steps=40, eval_samples=512)
TFIM_FLAGS = ["--hamiltonian", "tfim", "--lattice", "chain", "--L", "6", "--samples", "128", "--chains", "8",
              "--steps", "40", "--eval-samples", "512"]


def test_tfim_sweep_through_the_critical_point_follows_the_exact_curve():
    result = run_sweep(make_sweep(TFIM, "h", "0.5:1.5:3"))
    assert result.phase == "done" and [p.value for p in result.points] == [0.5, 1.0, 1.5]
    rows = result.table()
    for p, row in zip(result.points, rows):
        assert p.reference_method == "exact" and p.steps == 40 and p.verdict == "ok", p.warnings
        assert row["relative_error"] < 5e-3 and row["fidelity"] > 0.99
        assert row["exact_energy_per_site"] == pytest.approx(row["reference_energy_per_site"], rel=1e-10)
        for key in ("magnetisation", "sigma_x"):  # the network's value is near the exact one (error bars + bias)
            assert abs(row[key] - row[f"{key}_exact"]) < max(5 * row[f"{key}_error"], 0.05), (key, row)
        c, c_err, c_exact = (np.array(x) for x in (p.observables["correlation_map"], p.observables["correlation_map_error"],
                                                   p.exact["correlation_map"]))
        assert c[0] == 1.0 and c_exact[0] == pytest.approx(1.0)  # ⟨σᶻ_iσᶻ_i⟩ = 1
        assert np.all(np.abs(c - c_exact)[1:] < np.maximum(5 * c_err[1:], 0.05)), (c, c_exact)
    for key, sign in (("magnetisation", -1), ("sigma_x", 1)):  # order melts, the field polarises
        assert np.all(sign * np.diff([r[key] for r in rows]) > 0) and np.all(sign * np.diff([r[f"{key}_exact"] for r in rows]) > 0)
    engine = engine_for(static_settings(TFIM))
    # one compile for all fields, the evaluations included (they run the step, measuring without learning)
    assert engine.multi_step._cache_size() == 1 and engine.evaluate_fn._cache_size() == 0
    assert result.points[1].compile_seconds == 0 and result.points[2].compile_seconds == 0


def test_exact_curve_shows_where_marshalls_rule_breaks_and_obeys_the_energy_identity():
    chain = RunSettings(hamiltonian="j1j2", lattice="chain", L=8)
    low, high = exact_curve(chain, "J2", [0.0, 0.8])
    assert low["marshall_agreement"] == pytest.approx(1.0) and high["marshall_agreement"] < 0.9
    assert low["structure_factor"]["peak"]["q_over_pi"] == [1.0]  # antiferromagnetic peak at q = π
    c = np.array(low["correlation_map"])  # ⟨S_0·S_r⟩ of the Heisenberg chain: 3/4, then alternating signs
    assert c[0] == pytest.approx(0.75) and np.all(np.sign(c[1:]) == [(-1) ** r for r in range(1, 8)])
    assert np.sum(c) == pytest.approx(0.0, abs=1e-9)  # a singlet: Σ_r ⟨S_0·S_r⟩ = ⟨S_tot²⟩/N = 0
    assert 8 * c[1] == pytest.approx(low["energy"], abs=1e-9)  # J2 = 0: E₀ = J Σ_⟨ij⟩ ⟨S_i·S_j⟩ = N⟨S_0·S_1⟩
    s = RunSettings(hamiltonian="tfim", lattice="chain", L=8, J=1.0, h=0.6)
    st = exact_state(s)
    w, c = st.weights, st.configs.astype(float)
    zz = sum(np.sum(w * c[:, i] * c[:, j]) for i, j in st.lattice.bonds)
    (point,) = exact_curve(s, "h", [0.6])
    assert -zz - 0.6 * 8 * point["sigma_x"] == pytest.approx(st.result.energy, abs=1e-9)


def test_the_exact_state_of_a_problem_is_computed_once():
    """``exact_state`` keeps states by their Hamiltonian and sector: the sweep's curve and its points
    (``curve_grid`` keeps the swept values exact) share them; another coupling or sector is new."""
    from app.sweep_job import curve_grid
    from nqs_core.exact_observables import STATE_CACHE

    STATE_CACHE.clear()
    sweep = make_sweep(TFIM, "h", "0:1:6")  # 0.6000000000000001 among the values: kept exactly
    grid = curve_grid(sweep.values, 5)
    exact_curve(sweep.settings, "h", grid)
    assert STATE_CACHE.misses == len(grid) == 9 and STATE_CACHE.hits == 0  # 6 swept values, 3 between
    states = [exact_state(sweep.point_settings(v).replace(seed=3, lr=0.2, steps=7)) for v in sweep.values]
    assert STATE_CACHE.misses == 9 and STATE_CACHE.hits == 6  # the points' states: from the curve
    assert exact_state(sweep.point_settings(0.2)) is states[1]
    other = exact_state(sweep.point_settings(0.2).replace(k=(1.0,)))  # another sector: its own state
    assert STATE_CACHE.misses == 10 and other.sector == (1.0,) and other.result.energy > states[1].result.energy
    open_chain = exact_state(sweep.point_settings(0.2).replace(bc="open"))
    assert STATE_CACHE.misses == 11 and not open_chain.lattice.pbc


def test_cli_json_prints_a_summary_per_point_and_a_table(capsys):
    code, out, err = nqs_main(["sweep", *TFIM_FLAGS, "--h", "0.5:1.5:3", "--json"], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    points, last = lines[:-1], lines[-1]["sweep"]
    assert [p["point"]["value"] for p in points] == [0.5, 1.0, 1.5]
    assert all(p["point"]["reference_method"] == "exact" and "σˣ" in p["point"]["convention"] for p in points)
    assert last["coupling"] == "h" and len(last["table"]) == 3 and last["settings"]["L"] == 6
    assert all(row["relative_error"] < 5e-3 and row["magnetisation_exact"] is not None for row in last["table"])


@pytest.mark.parametrize("args, names", [
    (["--h", "0.5:1.5"], "h must be a range START:STOP:N"),
    (["--h", "0.5:1.5:500"], "N from 2 to 101"),
    (["--scan", "h=-1:1:3"], "h must be between 0 and 20"),
    (["--scan", "J2=0:1:3"], "J2 is not a coupling of tfim"),
    ([], "exactly one coupling"),
    (["--h", "0.5:1:3", "--J", "1:2:3"], "got J and h"),
    (["--h", "abc"], "h must be a number"),
    (["--h", "0.5:1:3", "--time-budget", "5"], "time_budget is not supported"),
])
def test_cli_refuses_invalid_ranges_with_one_line(capsys, args, names):
    code, out, err = nqs_main(["sweep", "--hamiltonian", "tfim", *args], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and names in err, err
