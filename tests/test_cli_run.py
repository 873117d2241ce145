"""``nqs run`` as a user runs it (``python -m nqs_core run …`` in a subprocess): JSON lines, the
readable summary, resuming from a checkpoint, and exit code 2 with one line for nonsense settings."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from conftest import nqs_main as _cli
from conftest import run_nqs

from nqs_core.devices import usable_device_count

TINY = ["--hamiltonian", "heisenberg", "--lattice", "chain", "--L", "6", "--samples", "64", "--chains", "4"]
STEP_KEYS = {"step", "energy", "error", "variance", "acceptance", "seconds"}
SUMMARY_KEYS = {"final_energy", "final_error", "reference_energy", "reference_method", "relative_error", "v_score",
                "iterations_per_second", "compile_seconds", "wall_seconds", "parameters", "devices", "convention"}


def nqs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_nqs("run", *args, env=env)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_json_output_shape():
    out = nqs(*TINY, "--steps", "5", "--eval-samples", "128", "--json", env={"NQS_CPU_DEVICES": ""})  # users' default
    assert out.returncode == 0, out.stderr
    objs = json_lines(out.stdout)  # every stdout line is JSON
    steps, summary = objs[:-1], objs[-1]
    assert [o["step"] for o in steps] == [0, 1, 2, 3, 4]
    for o in steps:
        assert STEP_KEYS <= set(o) and o["seconds"] > 0 and o["variance"] >= 0
    assert set(summary) == {"summary"}
    s = summary["summary"]
    assert SUMMARY_KEYS <= set(s)
    # one CPU device per core, as many as split the chains evenly (devices.split_cpu_into_cores)
    assert s["devices"] == usable_device_count(int(TINY[TINY.index("--chains") + 1]), len(os.sched_getaffinity(0)))
    assert s["parameters"] == 48 and s["steps"] == 5
    assert s["reference_method"] == "exact" and "Bethe" in s["reference_detail"] and s["reference_energy"] < 0
    assert s["iterations_per_second"] > 0 and s["compile_seconds"] > 0
    assert "S_i·S_j" in s["convention"]
    assert abs(s["relative_error"] - abs(s["final_energy"] - s["reference_energy"]) / abs(s["reference_energy"])) < 1e-12


def test_readable_output_names_the_convention():
    out = nqs(*TINY, "--steps", "4", "--eval-samples", "64", "--every", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("step ") >= 2 and "/4" in out.stdout
    assert "convention: H = J Σ⟨ij⟩ S_i·S_j" in out.stdout
    assert "final energy" in out.stdout and "reference" in out.stdout and "it/s" in out.stdout


def test_checkpoint_then_resume_continues_the_count(tmp_path):
    ck = str(tmp_path / "run.npz")
    first = nqs(*TINY, "--steps", "3", "--eval-samples", "0", "--seed", "5", "--checkpoint", ck, "--json",
                "--no-reference")
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
def test_nonsense_settings_exit_2_with_one_line(args, setting):
    out = nqs(*TINY, *args, "--json")
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and setting in lines[0]
    assert out.stdout == ""


def test_persistent_compilation_cache_fills_the_user_cache_dir(tmp_path):
    """A run stores its compiled programs under $NQS_CACHE_DIR/jax; NQS_COMPILE_CACHE=0 turns that off."""
    args = [*TINY, "--steps", "2", "--eval-samples", "0", "--no-reference", "--json"]
    on = nqs(*args, env={"NQS_CACHE_DIR": str(tmp_path / "on")})
    assert on.returncode == 0, on.stderr
    assert any((tmp_path / "on" / "jax").iterdir())
    off = nqs(*args, env={"NQS_CACHE_DIR": str(tmp_path / "off"), "NQS_COMPILE_CACHE": "0"})
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
    projection), the momentum they imply, and fidelity / sign agreement in [0, 1]."""
    out = nqs("--lattice", "square", "--L", "4", "--model", "convnext", "--depth", "1", "--features", "4",
              "--patch", "2", "--kernel", "2", "--k", "1,0", "--samples", "128", "--chains", "8", "--steps", "4",
              "--steps-per-call", "2", "--eval-samples", "256", "--json")
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
    # the same compiled step and evaluation as above (found in the persistent compilation cache), read as text
    readable = nqs("--lattice", "square", "--L", "4", "--model", "convnext", "--depth", "1", "--features", "4",
                   "--patch", "2", "--kernel", "2", "--k", "1,0", "--samples", "128", "--chains", "8", "--steps", "2",
                   "--steps-per-call", "2", "--eval-samples", "256")
    assert readable.returncode == 0, readable.stderr
    assert "momentum k = 1,0 (units of π)" in readable.stdout and "measured k = 1,0" in readable.stdout
    assert "fidelity |⟨ψ₀|ψ⟩|²" in readable.stdout and "ed (k=(π,0))" in readable.stdout


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
    out = nqs("--preset", "tfim-critical", "--L", "6", "--steps", "3", "--eval-samples", "64", "--json",
              "--no-reference")
    assert out.returncode == 0, out.stderr
    objs = json_lines(out.stdout)
    assert [o["step"] for o in objs[:-1]] == [0, 1, 2] and objs[-1]["summary"]["n_sites"] == 6


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
    (the ConvNeXt kernel adapts to the patch grid: 2 on the default 4×4 with 2×2 patches)."""
    code, out, err = _cli(["run", "--model", model, "--lattice", lattice, "--samples", "32", "--chains", "4",
                           "--steps", "2", "--eval-samples", "32", "--json", "--no-reference"], capsys)
    assert code == 0, err
    assert json_lines(out)[-1]["summary"]["steps"] == 2
