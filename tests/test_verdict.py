"""Runs that say when they failed (issue 9, item 3): the verdict of real runs constructed to fail, and
the rules of ``nqs_core.verdict.assess`` on given numbers.

The failing runs are real VMC runs of the engine, started (through a checkpoint) from a state built to
fail: an RBM whose visible bias peaks |ψ|² on the all-up configuration of a TFIM chain at h = 10, a
collapse like the one issue 9 reports for the 16-site chain.  Under Metropolis the chains freeze there
(acceptance ≈ e^{−4a} = 0); with the exact sampler nothing freezes, but every sample is that one
configuration, so Var(E) = 0 while E = −J·N sits far above the exact ground energy.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import pytest
from conftest import TINY

from nqs_core.checkpoint import save_checkpoint
from nqs_core.driver import RunEvent, run
from nqs_core.events import StepRecord
from nqs_core.settings import RunSettings
from nqs_core.verdict import R_HAT_MIN_SAMPLES, Estimate, assess
from nqs_core.vmc import VMC

# the suite's small run (``TINY``) on the TFIM, as the lab's and the exports' tests run it: their compiled step
PEAKED = RunSettings(**{**TINY, "hamiltonian": "tfim"}, h=10.0, steps=4, eval_samples=256, seed=3)


def peaked_checkpoint(settings: RunSettings, path, bias: float = 20.0):
    """A checkpoint of ``settings``' initial state with every visible bias set to ``bias`` (|ψ|² ∝ e^{2a·Σσ})
    and every chain at the all-up configuration it peaks on (a chain elsewhere would see ψ(σ')/ψ(σ) ~ e^{2a}
    and an energy far outside the Hamiltonian's norm, which the engine refuses as a divergence)."""
    vmc = VMC(settings)
    state = vmc.init()
    params = state.params["params"]
    peaked = {"params": {**params, "visible_bias": jnp.full_like(params["visible_bias"], bias)}}
    chains = state.sampler.replace(sigma=jnp.ones_like(state.sampler.sigma))
    save_checkpoint(path, state.replace(params=peaked, sampler=chains), settings.to_dict(), [])
    return path


def _run_from(settings: RunSettings, tmp_path):
    events: list[RunEvent] = []
    result = run(settings, callback=events.append, resume=peaked_checkpoint(settings, tmp_path / "peaked.npz"))
    return result, events


@pytest.mark.accuracy
def test_frozen_sampler_fails_with_the_reason(tmp_path):
    result, events = _run_from(PEAKED, tmp_path)
    s = result.summary
    assert result.phase == "done" and s["verdict"] == "failed"
    assert s["warnings"][0].startswith("the chains stopped moving: acceptance")
    assert any(w.startswith("the variance collapsed") for w in s["warnings"])
    assert "FAILED: the chains stopped moving" in result.message and s["message"] == result.message
    final = events[-1]
    assert final.phase == "done" and final.verdict == "failed" and list(final.warnings) == s["warnings"]
    assert s["reference_energy"] < -60 and s["relative_error"] > 0.5  # frozen far from the ground state


@pytest.mark.accuracy
def test_collapsed_state_fails_without_a_frozen_sampler(tmp_path):
    result, _ = _run_from(PEAKED.replace(sampler="exact"), tmp_path)
    s = result.summary
    assert s["verdict"] == "failed" and s["final_variance"] < 1e-8
    assert s["final_energy"] == pytest.approx(-PEAKED.n_sites, abs=1e-6)  # −J·N: the all-up configuration
    assert s["warnings"][0].startswith("the variance collapsed")
    assert not any("stopped moving" in w or "R̂" in w for w in s["warnings"])  # independent samples


@pytest.mark.accuracy
def test_a_healthy_tiny_run_is_not_failed():
    s = run(PEAKED.replace(h=1.0, steps=30, seed=0)).summary
    assert s["verdict"] != "failed", s["warnings"]


# ----- the rules on given numbers ----------------------------------------------------------------
SETTINGS = RunSettings(hamiltonian="heisenberg", lattice="chain", L=6)
EXACT = {"energy": -2.8027756, "method": "exact"}


def estimate(**kw) -> Estimate:
    base = dict(energy=-2.80, error=1e-3, variance=1e-2, acceptance=0.5, r_hat=1.0)
    return Estimate(**{**base, **kw})


def test_below_an_exact_reference_beyond_the_error_bar_fails():
    v = assess(SETTINGS, estimate(energy=-2.81, error=1e-3), EXACT, "done", "done")
    assert v.verdict == "failed" and "lies below the exact reference" in v.reason
    within = assess(SETTINGS, estimate(energy=-2.8037, error=1e-3), EXACT, "done", "done")  # 0.9 error bars
    assert within.verdict == "ok"
    dmrg = assess(SETTINGS, estimate(energy=-2.81, error=1e-3), {**EXACT, "method": "dmrg"}, "done", "done")
    assert dmrg.verdict == "ok"  # only exact references bound a variational energy


def test_split_r_hat_and_acceptance_thresholds():
    assert assess(SETTINGS, estimate(r_hat=5e16), EXACT, "done", "done").verdict == "failed"
    assert assess(SETTINGS, estimate(r_hat=math.nan), EXACT, "done", "done").verdict == "failed"
    assert assess(SETTINGS, estimate(r_hat=1.2), EXACT, "done", "done").verdict == "warning"
    assert assess(SETTINGS, estimate(acceptance=0.0), EXACT, "done", "done").verdict == "failed"
    assert assess(SETTINGS, estimate(acceptance=0.005), EXACT, "done", "done").verdict == "warning"
    exact_sampler = SETTINGS.replace(sampler="exact")
    assert assess(exact_sampler, estimate(acceptance=0.0, r_hat=math.nan), EXACT, "done", "done").verdict == "ok"


def test_split_r_hat_of_short_chains_warns_instead_of_failing():
    """R̂ from halves of a few samples is noise (a well-mixed 2-step run with 8 samples per chain gave 1.63)."""
    short = assess(SETTINGS, estimate(r_hat=1.63, samples_per_chain=8), EXACT, "done", "done")
    assert short.verdict == "warning" and "only 8 samples per chain" in short.reason
    assert assess(SETTINGS, estimate(r_hat=1.05, samples_per_chain=8), EXACT, "done", "done").verdict == "ok"
    long = assess(SETTINGS, estimate(r_hat=1.63, samples_per_chain=R_HAT_MIN_SAMPLES), EXACT, "done", "done")
    assert long.verdict == "failed" and "far from 1" in long.reason
    evaluation = {"energy": -2.5, "error": 0.01, "variance": 0.1, "acceptance": 0.4, "r_hat": 1.6, "n_samples": 32}
    assert Estimate.of(evaluation, [], SETTINGS.replace(chains=4)).samples_per_chain == 8


def test_collapsed_variance_needs_a_reference_far_below():
    assert assess(SETTINGS, estimate(energy=-1.5, variance=0.0, error=0.0), EXACT, "done", "done").verdict == "failed"
    assert assess(SETTINGS, estimate(energy=-2.8027, variance=0.0, error=0.0), EXACT, "done", "done").verdict == "ok"
    assert assess(SETTINGS, estimate(energy=-1.5, variance=0.0, error=0.0), None, "done", "done").verdict == "ok"


def test_a_low_fidelity_or_a_restart_is_a_warning():
    """A local minimum with a small error bar (default ConvNeXt J1-J2 4×4, seed 2: F = 0.48, E 4.7 % above E₀)
    is not "ok"; nor is a run that had to restart after a frozen start."""
    low = assess(SETTINGS, estimate(), EXACT, "done", "done", {"fidelity": 0.48})
    assert low.verdict == "warning" and "0.480" in low.reason and "local minimum" in low.reason
    assert assess(SETTINGS, estimate(), EXACT, "done", "done", {"fidelity": 0.95}).verdict == "ok"
    restarted = assess(SETTINGS, estimate(), EXACT, "done", "done", {"restarts": ["restarted after step 29 ..."]})
    assert restarted.verdict == "warning" and restarted.reason.startswith("restarted after step 29")


def test_diverged_runs_fail_with_their_message_and_estimates_come_from_the_last_steps():
    v = assess(SETTINGS, estimate(), None, "diverged", "diverged: NaN at step 3")
    assert v.verdict == "failed" and v.reason == "diverged: NaN at step 3"
    history = [StepRecord(i, -2.0, 0.1, 0.5, 0.0 if i >= 5 else 0.5, 1.0, 1.0, 0.0, 0.0, 0.0) for i in range(15)]
    est = Estimate.of(None, history)
    assert est.acceptance == 0.0 and est.energy == -2.0  # median of the last 10 steps
    assert Estimate.of({"energy": -2.5, "error": 0.01, "variance": 0.1, "acceptance": 0.4, "r_hat": 1.01},
                       history).acceptance == 0.4


@pytest.mark.accuracy
def test_the_cli_exit_message_names_the_failure(tmp_path, capsys):
    """``nqs run`` on the frozen run: the summary prints the verdict, stderr the reason, exit code 1."""
    from nqs_core.cli import main

    ck = peaked_checkpoint(PEAKED, tmp_path / "peaked.npz")
    code = main(["run", "--resume", str(ck), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "verdict: failed\n  - the chains stopped moving" in out
    assert err.strip().splitlines()[-1].startswith("nqs run: failed: the chains stopped moving")
