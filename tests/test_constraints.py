"""Reproducible installs: constraints.txt pins every declared dependency to a version that meets
pyproject.toml, and it is exactly the installed dependency closure of nqs-lab[test] (what
scripts/freeze_constraints.py prints), so the tests run on the pinned versions."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, ver = line.partition("==")
            assert ver, f"constraints.txt: not an exact pin: {line!r}"
            out[canonicalize_name(name)] = ver
    return out


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    return [Requirement(d) for d in deps]


def test_every_declared_dependency_is_pinned_within_its_range():
    pinned = pins()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is declared in pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), (req, pinned[name])


def test_constraints_are_the_installed_closure():
    """Every installed dependency (direct or not) is pinned at its installed version, and nothing else is."""
    spec = importlib.util.spec_from_file_location("freeze_constraints", ROOT / "scripts" / "freeze_constraints.py")
    freeze = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(freeze)
    installed = {k: v.partition("==")[2] for k, v in freeze.closure(freeze.PROJECT, freeze.EXTRAS).items()}
    pinned = pins()
    wrong = {k: (pinned.get(k), installed.get(k)) for k in set(pinned) | set(installed)
             if pinned.get(k) != installed.get(k)}
    assert not wrong, f"pinned vs installed (scripts/bootstrap.sh --test installs the pins): {wrong}"


def test_holoviews_is_neither_declared_nor_imported():
    """README "Installs": HoloViews was declared but never imported, so it is not a dependency."""
    assert "holoviews" not in {canonicalize_name(r.name) for r in declared()}
    pattern = re.compile(r"^\s*(import|from)\s+holoviews\b", re.M)
    sources = [p for d in ("app", "nqs_core", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    assert not [p for p in sources if pattern.search(p.read_text(encoding="utf-8"))]
