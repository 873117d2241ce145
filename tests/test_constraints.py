"""Reproducible installs: constraints.txt pins every declared dependency to a version that meets
pyproject.toml, and the environment running the tests has exactly those versions."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
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


def test_installed_versions_are_the_pinned_ones():
    wrong = {}
    for name, ver in pins().items():
        try:
            got = version(name)
        except PackageNotFoundError:
            got = None
        if got != ver:
            wrong[name] = (ver, got)
    assert not wrong, f"pinned vs installed (run scripts/bootstrap.sh --test): {wrong}"


def test_holoviews_is_neither_declared_nor_imported():
    """README "Installs": HoloViews was declared but never imported, so it is not a dependency."""
    assert "holoviews" not in {canonicalize_name(r.name) for r in declared()}
    pattern = re.compile(r"^\s*(import|from)\s+holoviews\b", re.M)
    sources = [p for d in ("app", "nqs_core", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    assert not [p for p in sources if pattern.search(p.read_text(encoding="utf-8"))]
