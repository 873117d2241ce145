"""reference(): method choice, provenance, the on-disk cache and the shipped table."""

import json

import numpy as np
import pytest
from conftest import refuse_computing

from nqs_core import make_hamiltonian, make_lattice
from nqs_core.references import NeedsDMRG, _cache_key, cache, ground_state, reference, table
from nqs_core.references.closed_forms import heisenberg_chain_bethe
from nqs_core.references.ed import exact_diagonalization


pytestmark = pytest.mark.usefixtures("private_cache")  # tests/conftest.py


def test_auto_prefers_the_closed_form_and_reports_everything():
    r = reference("heisenberg", "chain", L=16)
    assert r["method"] == "exact" and "Bethe" in r["provenance"]["formula"]
    assert r["energy"] == pytest.approx(heisenberg_chain_bethe(16))
    assert r["energy_per_site"] == pytest.approx(r["energy"] / 16)
    assert r["convention"] == make_hamiltonian("heisenberg", make_lattice("chain", 16)).convention
    assert r["settings"] == {"hamiltonian": "heisenberg", "lattice": "chain", "L": 16, "bc": "periodic",
                             "n_sites": 16, "couplings": {"J": 1.0}}
    json.dumps(r)  # plain data


def test_auto_falls_back_to_ed_with_momentum_sectors():
    r = reference("j1j2", "chain", L=12, J2=0.2)
    assert r["method"] == "ed" and "scipy" in r["provenance"]["library"]
    assert len(r["sector_energies"]) == 12
    assert min(s["energy"] for s in r["sector_energies"]) == pytest.approx(r["energy"], abs=1e-12)
    assert r["ground_momentum_over_pi"] == [0.0]


def test_unusual_coupling_is_computed_cached_and_answered_from_cache(private_cache, monkeypatch):
    ham = make_hamiltonian("j1j2", make_lattice("chain", 16), J2=0.4137)
    first = reference(ham)
    assert first["method"] == "ed" and first["source"] == "computed"
    files = list((private_cache / "references").glob("*.json"))
    assert len(files) == 1
    with monkeypatch.context() as m:  # the second answer must not compute anything
        refuse_computing(m)
        second = reference("j1j2", "chain", L=16, J1=1.0, J2=0.4137)
    assert second["source"] == "cache"
    assert second["energy"] == first["energy"]
    assert second["sector_energies"] == first["sector_energies"]
    # any other setting is another key
    other = make_hamiltonian("j1j2", make_lattice("chain", 16), J2=0.4138)
    assert cache.load(_cache_key(other, "ed")) is None and cache.load(_cache_key(ham, "ed")) is not None


def test_cache_ignores_corrupt_files_and_other_keys(private_cache):
    key = {"hamiltonian": "tfim", "x": 1}
    assert cache.load(key) is None
    path = cache.store(key, {"energy": -1.0})
    assert cache.load(key) == {"energy": -1.0}
    assert cache.load({"hamiltonian": "tfim", "x": 2}) is None
    path.write_text("{not json")
    assert cache.load(key) is None


def test_explicit_methods_and_their_refusals():
    assert reference("tfim", "chain", "ed", L=10, h=0.7)["energy"] == pytest.approx(
        reference("tfim", "chain", "exact", L=10, h=0.7)["energy"], abs=1e-10)
    with pytest.raises(ValueError, match="method=exact"):
        reference("heisenberg", "square", "exact", L=4)
    with pytest.raises(ValueError, match="method=dmrg handles chains only"):
        reference("heisenberg", "square", "dmrg", L=4)
    with pytest.raises(ValueError, match="method=ed handles at most"):
        reference("heisenberg", "square", "ed", L=6)
    with pytest.raises(ValueError, match="method must be one of"):
        reference("heisenberg", "chain", "qmc", L=8)
    with pytest.raises(ValueError, match="even number of sites"):
        reference("heisenberg", "chain", L=7)
    with pytest.raises(ValueError, match="h must be a finite number"):
        reference("tfim", "chain", L=8, h=float("nan"))
    with pytest.raises(NeedsDMRG):
        reference("j1j2", "chain", "dmrg", L=30, bc="open", J2=0.123, compute_dmrg=False)


def test_published_values_when_nothing_else_applies():
    r = reference("j1j2", "square", L=6, J2=0.5)
    assert r["method"] == "published" and r["source"] == "table"
    assert r["energy_per_site"] == pytest.approx(-0.50380965, abs=1e-12)
    assert "Schulz" in r["provenance"]["citation"]
    q = reference("heisenberg", "square", L=10)
    assert q["energy_per_site"] == pytest.approx(-0.67155264) and "Sandvik" in q["provenance"]["citation"]


def published_on_ed_lattices():
    """Published entries on lattices our ED handles (the 4×4 squares)."""
    return [e for e in table.entries() if e["result"]["method"] == "published" and e["settings"]["n_sites"] <= 16]


def check_published_against_ed(entry):
    s, res = entry["settings"], entry["result"]
    c = s["couplings"]
    ham = make_hamiltonian(s["hamiltonian"], make_lattice(s["lattice"], s["L"], s["bc"]),
                           J=c.get("J"), J1=c.get("J1"), J2=c.get("J2"), h=c.get("h"))
    ours = exact_diagonalization(ham, want_vector=False).energy / ham.lattice.n_sites
    assert ours == pytest.approx(res["energy_per_site"], abs=6e-8), s  # published to 8 digits


def test_shipped_published_values_agree_with_our_ed():
    """The 4×4 Heisenberg and J1-J2 (J2 = 0.5, 0.8) published values against a fresh ED."""
    entries = published_on_ed_lattices()
    assert len(entries) >= 20
    picked = [e for e in entries if e["settings"]["couplings"].get("J2", 0.5) in (0.5, 0.8)]
    assert len(picked) == 3
    for entry in picked:
        check_published_against_ed(entry)


@pytest.mark.accuracy
def test_every_shipped_published_value_on_4x4_agrees_with_our_ed():
    for entry in published_on_ed_lattices():
        check_published_against_ed(entry)


def test_shipped_computed_entries_are_reproduced():
    """A sample of the table (closed forms, ED, DMRG) against fresh computations."""
    kinds = {}
    for entry in table.entries():
        kinds.setdefault(entry["result"]["method"], []).append(entry)
    assert {"exact", "ed", "dmrg", "published"} <= set(kinds)
    for entry in kinds["exact"][::17] + [e for e in kinds["ed"] if e["settings"]["n_sites"] <= 16][::5]:
        s = entry["settings"]
        fresh = reference(s["hamiltonian"], s["lattice"], entry["result"]["method"], L=s["L"], bc=s["bc"],
                          use_table=False, **s["couplings"])
        assert fresh["energy"] == pytest.approx(entry["result"]["energy"], abs=1e-9)
    for entry in kinds["dmrg"]:
        prov = entry["result"]["provenance"]
        assert prov["converged"] and prov["estimated_relative_error"] <= 1e-6
        assert "tenpy" in prov["library"] and prov["chi"] > 0 and prov["truncation_error"] >= 0


def test_table_answers_open_chain_of_100_without_computing(no_computing):
    r = reference("heisenberg", "chain", L=100, bc="open")
    assert r["method"] == "dmrg" and r["source"] == "table"
    assert -0.4432 < r["energy_per_site"] < -0.43  # open chain: above the bulk 1/4 − ln 2


def test_ground_state_vector_for_the_app():
    res = ground_state("heisenberg", "square", L=4)
    assert res.vector.shape == res.codes.shape and np.isrealobj(res.vector)
    assert res.energy == pytest.approx(-11.228483208, abs=1e-8)
