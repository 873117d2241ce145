"""``nqs run`` as a user runs it (``python -m nqs_core run …`` in a subprocess): JSON lines, the
readable summary, resuming from a checkpoint; in this process (``nqs_core.cli.main``), exit code 2 with one
line for nonsense settings, and every model's defaults.

The runs use the suite's ``TINY`` settings (tests/conftest.py) with ``EVAL`` evaluation samples and one step
per call, as test_driver's runs do: the first process to need a program compiles it, every later one (and
the in-process tests) finds it in the persistent compilation cache.  Output formats do not depend on the
size of the run."""

from __future__ import annotations

import io
import json
import os
import subprocess

import numpy as np
import pytest
from conftest import TINY, nqs_main as _cli
from conftest import TWO_CPU_DEVICES_XLA_FLAGS, run_nqs, tiny_cli

from nqs_core.devices import usable_device_count

EVAL = "256"  # evaluation samples of the runs that are evaluated (test_driver's TINY too: one compiled evaluation)
STEP_KEYS = {"step", "energy", "error", "variance", "acceptance", "seconds"}
SUMMARY_KEYS = {"final_energy", "final_error", "reference_energy", "reference_method", "relative_error", "v_score",
                "iterations_per_second", "compile_seconds", "wall_seconds", "parameters", "devices", "convention"}


def nqs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_nqs("run", *args, env=env)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_json_output_shape():
    out = nqs(*tiny_cli(steps=3, eval_samples=EVAL), "--json", env={"NQS_CPU_DEVICES": ""})  # users' default
    assert out.returncode == 0, out.stderr
    objs = json_lines(out.stdout)  # every stdout line is JSON
    steps, summary = objs[:-1], objs[-1]
    assert [o["step"] for o in steps] == [0, 1, 2]
    for o in steps:
        assert STEP_KEYS <= set(o) and o["seconds"] > 0 and o["variance"] >= 0
    assert set(summary) == {"summary"}
    s = summary["summary"]
    assert SUMMARY_KEYS <= set(s)
    # one CPU device per core, as many as split the chains evenly (devices.split_cpu_into_cores)
    assert s["devices"] == usable_device_count(TINY["chains"], len(os.sched_getaffinity(0)))
    assert s["parameters"] == 48 and s["steps"] == 3
    assert s["final_source"] == f"evaluation with {EVAL} samples"
    assert s["reference_method"] == "exact" and "Bethe" in s["reference_detail"] and s["reference_energy"] < 0
    assert s["iterations_per_second"] > 0 and s["compile_seconds"] > 0
    assert "S_i·S_j" in s["convention"]
    assert abs(s["relative_error"] - abs(s["final_energy"] - s["reference_energy"]) / abs(s["reference_energy"])) < 1e-12


def test_readable_output_names_the_convention():
    out = nqs(*tiny_cli(steps=4, eval_samples=EVAL), "--every", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("step ") >= 2 and "/4" in out.stdout
    assert "convention: H = J Σ⟨ij⟩ S_i·S_j" in out.stdout
    assert "final energy" in out.stdout and "reference" in out.stdout and "it/s" in out.stdout


def test_checkpoint_then_resume_continues_the_count(tmp_path):
    ck = str(tmp_path / "run.npz")
    first = nqs(*tiny_cli(steps=3, eval_samples=0, seed=5), "--checkpoint", ck, "--json", "--no-reference")
    assert first.returncode == 0, first.stderr
    # flags left out come from the checkpoint (L=6, seed 5, …); --steps counts all steps
    second = nqs("--resume", ck, "--checkpoint", ck, "--steps", "6", "--eval-samples", "0", "--json",
                 "--no-reference")
    assert second.returncode == 0, second.stderr
    objs = json_lines(second.stdout)
    assert [o["step"] for o in objs[:-1]] == [3, 4, 5]
    assert objs[-1]["summary"]["steps"] == 6 and objs[-1]["summary"]["n_sites"] == 6


@pytest.mark.parametrize(
    "args, setting",
    [
        (["--lr", "-1"], "lr"),
        (["--samples", "0"], "samples"),
        (["--samples", "100", "--chains", "16"], "samples"),
        (["--model", "transformer"], "model"),
        (["--L", "5"], "L"),  # odd chain: no Sᶻ = 0 sector
        (["--steps", "many"], "steps"),
        (["--resume", "/nonexistent/checkpoint.npz"], "checkpoint"),
    ],
)
def test_nonsense_settings_exit_2_with_one_line(args, setting, capsys):
    """In-process (``nqs_core.cli.main``, as below): refused before anything compiles.  (The exit code of the
    command itself: test_devices' refused NQS_CPU_DEVICES.)"""
    code, stdout, stderr = _cli(["run", *tiny_cli(), *args, "--json"], capsys)
    assert code == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and setting in lines[0]
    assert stdout == ""


def test_persistent_compilation_cache_fills_the_user_cache_dir(tmp_path):
    """A run stores its compiled programs under $NQS_CACHE_DIR/jax, a run on 2 CPU devices in a folder of its
    own (JAX's cache key ignores the forced device count: a one-device process must not find them), and reports
    ``devices: 2``; NQS_COMPILE_CACHE=0 turns the cache off.  (Both runs compile everything: one step, unevaluated.)"""
    args = [*tiny_cli(steps=1, eval_samples=0), "--no-reference", "--json"]
    on = nqs(*args, env={"NQS_CACHE_DIR": str(tmp_path / "on"), "XLA_FLAGS": TWO_CPU_DEVICES_XLA_FLAGS})
    assert on.returncode == 0, on.stderr[-3000:]
    summary = json_lines(on.stdout)[-1]["summary"]
    assert summary["devices"] == 2 and summary["steps"] == 1
    assert [p.name for p in (tmp_path / "on" / "jax").iterdir()] == ["host-devices-2"]
    assert any((tmp_path / "on" / "jax" / "host-devices-2").iterdir())
    # this run finds nothing and keeps nothing: the exact sampler and Adam, a step quicker to compile than TINY's
    # (the whole process: 15 s of CPU instead of 17 s)
    off = nqs(*args, "--sampler", "exact", "--optimizer", "adam",
              env={"NQS_CACHE_DIR": str(tmp_path / "off"), "NQS_COMPILE_CACHE": "0"})
    assert off.returncode == 0, off.stderr
    assert not (tmp_path / "off" / "jax").exists()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from nqs_core.compile_cache import cache_dir

    monkeypatch.setenv("NQS_CACHE_DIR", str(tmp_path / "nqs"))
    assert cache_dir() == tmp_path / "nqs" / "jax"
    monkeypatch.delenv("NQS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "nqs-lab" / "jax"


def test_sector_summary_on_a_square():
    """ConvNeXt projected to k = (π, 0) on the 4×4 Heisenberg model: the summary names the sector, the
    ED reference of that sector, translation eigenvalues e^{iπ} along x and 1 along y (exact for the
    projection), the momentum they imply, and fidelity / sign agreement in [0, 1]; the readable summary
    prints them.  (One fused call of two steps, no final evaluation: the last step's read-outs are the final ones.)"""
    from nqs_core.cli.run import print_summary

    out = nqs("--lattice", "square", "--L", "4", "--model", "convnext", "--depth", "1", "--features", "4",
              "--patch", "2", "--kernel", "2", "--k", "1,0", "--samples", "128", "--chains", "8", "--steps", "2",
              "--steps-per-call", "2", "--eval-samples", "0", "--json")
    assert out.returncode == 0, out.stderr
    objs = json_lines(out.stdout)
    s = objs[-1]["summary"]
    assert s["momentum"] == [1.0, 0.0] and s["measured_momentum"] == [1.0, 0.0]
    np.testing.assert_allclose(s["translation_eigenvalue"], [-1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(s["translation_eigenvalues"], [[-1.0, 0.0], [1.0, 0.0]], atol=1e-9)
    assert s["reference_method"] == "ed (k=(π,0))" and s["reference_energy"] > -11.228483 + 0.1  # above E₀(0,0)
    assert 0.0 <= s["fidelity"] <= 1.0 and 0.5 <= s["sign_agreement"] <= 1.0
    assert 0.5 <= s["marshall_agreement"] <= 1.0 and s["exact_state"].startswith("ed (k=(π,0))")
    assert objs[-2]["fidelity"] == s["fidelity"]  # the last step carries the final measurement
    for o in objs[:-1]:
        assert o["translation_eigenvalue"] == pytest.approx([-1.0, 0.0], abs=1e-9)
    # the same summary read as text (what nqs run prints without --json: cli.run.print_summary)
    text = io.StringIO()
    print_summary(s, text)
    readable = text.getvalue()
    assert "momentum k = 1,0 (units of π)" in readable and "measured k = 1,0" in readable
    assert "fidelity |⟨ψ₀|ψ⟩|²" in readable and "ed (k=(π,0))" in readable
    assert s["precision"] == "mixed" and " parameters in mixed;" in readable  # dtype auto: the ConvNeXt's own


@pytest.mark.parametrize(
    "args, setting, allowed",
    [
        (["--L", "8", "--model", "convnext", "--patch", "3"], "patch", "allowed: 1, 2, 4, 8"),
        (["--L", "8", "--model", "convnext", "--patch", "2", "--kernel", "5"], "kernel", "L/patch = 4"),
        (["--L", "4", "--k", "0.3"], "k", "one of 0, 0.5, 1, 1.5"),
        (["--lattice", "chain", "--L", "8", "--k", "0.3"], "k", "one of 0, 0.25, 0.5"),
        (["--L", "4", "--k", "1,2,3"], "k", "KX,KY"),
        (["--lattice", "chain", "--L", "8", "--k", "1,0"], "k", "KX on a chain"),
        (["--L", "4", "--k", "x"], "k", "numbers separated by commas"),
        (["--L", "4", "--bc", "open", "--k", "1,0"], "k", "0,0 with open boundaries"),
        (["--optimizer", "adam", "--max-step", "0.1"], "max_step", "needs optimizer sr or minsr"),
        (["--max-step", "0"], "max_step", "> 0 and ≤ 10"),
    ],
)
def test_model_and_momentum_settings_exit_2_with_one_line(args, setting, allowed, capsys):
    """In-process (``nqs_core.cli.main``): invalid ConvNeXt / momentum settings end before any
    compilation with exit code 2 and one stderr line naming the setting and the allowed values."""
    code, stdout, stderr = _cli(["run", *args, "--steps", "1", "--json"], capsys)
    assert code == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr and stdout == ""
    assert f"{setting} " in lines[0] or f"--{setting}" in lines[0], lines[0]
    assert allowed in lines[0], lines[0]


def test_preset_with_overrides(capsys):
    """``--preset NAME`` starts from the preset's settings; other flags override them."""
    from nqs_core.cli import build_parser
    from nqs_core.cli.run import settings_from_args
    from nqs_core.presets import PRESETS

    args = build_parser().parse_args(["run", "--preset", "chain-18-k-pi", "--steps", "7", "--lr", "0.02"])
    assert settings_from_args(args) == PRESETS["chain-18-k-pi"].settings(steps=7, lr=0.02)
    # an optional setting the preset sets goes back to none with the word none
    args = build_parser().parse_args(["run", "--preset", "chain-18-k-pi", "--k", "none", "--sweep", "None"])
    assert settings_from_args(args) == PRESETS["chain-18-k-pi"].settings(k=None, sweep=None)
    code, stdout, stderr = _cli(["run", "--sweep", "several"], capsys)
    assert code == 2 and "--sweep" in stderr and "invalid int value" in stderr
    code, stdout, stderr = _cli(["run", "--preset", "no-such-preset"], capsys)
    assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1 and "--preset" in stderr
    assert "heisenberg-4x4" in stderr  # the allowed names
    code, stdout, stderr = _cli(["run", "--preset", "heisenberg-4x4", "--resume", "x.npz"], capsys)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "--preset and --resume" in stderr


def test_preset_runs_from_the_command_line():
    """The preset's settings with the size overridden: the TFIM of test_exports' and test_app_views' run
    (``TINY`` with ``hamiltonian="tfim"``, unevaluated), whose programs the cache holds."""
    size = [a for k in ("L", "samples", "chains") for a in (f"--{k}", str(TINY[k]))]
    out = nqs("--preset", "tfim-critical", *size, "--steps", "3", "--eval-samples", "0", "--json", "--no-reference")
    assert out.returncode == 0, out.stderr
    objs = json_lines(out.stdout)
    s = objs[-1]["summary"]
    assert [o["step"] for o in objs[:-1]] == [0, 1, 2] and s["n_sites"] == 6
    assert "σˣ" in s["convention"]  # the preset's Hamiltonian, not the default Heisenberg model


def test_presets_lists_every_preset_with_its_full_settings(capsys):
    from nqs_core.presets import GROUPS, PRESETS

    code, stdout, _ = _cli(["presets", "--json"], capsys)
    listed = json.loads(stdout)
    assert code == 0 and [p["name"] for p in listed] == list(PRESETS)
    for p in listed:
        assert p["group"] in GROUPS and p["title"] and p["story"]
        assert p["settings"] == PRESETS[p["name"]].settings().to_dict()
        assert all(p["settings"][k] == v for k, v in p["overrides"].items())
    code, stdout, _ = _cli(["presets"], capsys)
    assert code == 0 and all(f"nqs run --preset {name}" in stdout for name in PRESETS)
    code, stdout, _ = _cli(["presets", "chain-18-k-pi"], capsys)
    assert code == 0 and "--k 1 " in stdout and "--eval-samples 8192" in stdout  # overrides and defaults
    code, stdout, stderr = _cli(["presets", "nope"], capsys)
    assert code == 2 and "preset must be one of" in stderr and stdout == ""


@pytest.mark.parametrize("model", ["rbm", "jastrow", "convnext"])
@pytest.mark.parametrize("lattice", ["chain", "square"])
def test_every_model_runs_with_its_defaults_on_every_default_lattice(model, lattice, capsys):
    """Only the size of the run is shrunk: the model's and the lattice's own defaults must be valid
    (the ConvNeXt kernel adapts to the patch grid: 2 on the default 4×4 with 2×2 patches).  One step and
    no final evaluation: each configuration compiles its step (and the exact observer's programs) only."""
    code, out, err = _cli(["run", "--model", model, "--lattice", lattice, "--samples", "32", "--chains", "4",
                           "--steps", "1", "--eval-samples", "0", "--json", "--no-reference"], capsys)
    assert code == 0, err
    summary = json_lines(out)[-1]["summary"]
    assert summary["steps"] == 1 and summary["final_source"].startswith("last step")
