"""`nqs reference` / `python -m nqs_core reference` as a user runs it (subprocess); the refusals of nonsense
settings in this process (``nqs_core.cli.main``: they end before anything is computed, a new interpreter
for each only costs its start)."""

import json

import pytest
from conftest import nqs_main, run_nqs

from nqs_core.references.closed_forms import heisenberg_chain_bethe


def run(*args, cache_dir):
    return run_nqs("reference", *args, env={"NQS_CACHE_DIR": str(cache_dir)})


def test_json_output_bethe(tmp_path):
    p = run("--hamiltonian", "heisenberg", "--lattice", "chain", "--L", "20", "--json", cache_dir=tmp_path)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert {"energy", "energy_per_site", "method", "convention", "provenance"} <= set(r)
    assert r["method"] == "exact"
    assert r["energy"] == pytest.approx(heisenberg_chain_bethe(20), abs=1e-12)
    assert "S_i·S_j" in r["convention"]


def test_text_output_and_ed_method(tmp_path):
    p = run("--hamiltonian", "tfim", "--lattice", "square", "--L", "3", "--h", "2.5", "--J", "0.5",
            "--method", "ed", cache_dir=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "method: ed" in p.stdout and "E/N" in p.stdout and "σᶻ" in p.stdout


@pytest.mark.parametrize("args,needle", [
    (["--hamiltonian", "heisenberg", "--lattice", "chain", "--L", "7"], "even number of sites"),
    (["--hamiltonian", "j1j2", "--lattice", "square", "--L", "5"], "even number of sites"),
    (["--hamiltonian", "heisenberg", "--lattice", "chain", "--L", "1"], "--L"),
    (["--hamiltonian", "tfim", "--lattice", "chain", "--L", "8", "--h", "nan"], "--h"),
    (["--hamiltonian", "ising", "--lattice", "chain", "--L", "8"], "--hamiltonian"),
    (["--hamiltonian", "heisenberg", "--lattice", "square", "--L", "4", "--method", "dmrg"], "method=dmrg"),
    (["--hamiltonian", "heisenberg", "--lattice", "square", "--L", "6", "--method", "ed"], "method=ed"),
    (["--hamiltonian", "heisenberg", "--lattice", "square", "--L", "8"], "no reference"),
    (["--hamiltonian", "heisenberg", "--lattice", "chain", "--L", "8", "--h", "1"], "--h"),
    (["--hamiltonian", "heisenberg", "--lattice", "chain", "--L", "8", "--bc", "twisted"], "--bc"),
])
def test_invalid_settings_exit_2_with_one_line(private_cache, capsys, args, needle):
    code, stdout, stderr = nqs_main(["reference", *args], capsys)
    assert code == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], stderr
    assert "Traceback" not in stderr
