"""Print constraints.txt: the exact installed version of every package nqs-lab[test] needs.

    .venv/bin/python scripts/freeze_constraints.py > constraints.txt     (or: make constraints)

Like ``pip freeze --exclude-editable``, but only the project's dependency closure (its
requirements, theirs, and so on, with environment markers evaluated), so a package left over in
.venv (one that is no longer a dependency) does not get pinned.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "nqs-lab"
EXTRAS = ("test",)
HEADER = ("# Exact versions of every package the lab and its tests install (the dependency closure of\n"
          "# nqs-lab[test] in a working .venv). scripts/bootstrap.sh installs with\n"
          "# pip install -c constraints.txt -e .[test]. Refresh: make constraints (README \"Installs\").")


def closure(project: str, extras: tuple[str, ...]) -> dict[str, str]:
    """Installed name -> version of every distribution ``project[extras]`` needs (itself excluded)."""
    out: dict[str, str] = {}
    todo = [(project, extras)]
    while todo:
        name, wanted = todo.pop()
        for text in distribution(name).requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            key = canonicalize_name(req.name)
            if key in out:
                continue
            try:
                dist = distribution(req.name)
            except PackageNotFoundError:
                raise SystemExit(f"freeze_constraints: {req.name} (needed by {name}) is not installed")
            out[key] = f"{dist.metadata['Name']}=={dist.version}"
            todo.append((req.name, tuple(req.extras)))
    return out


def main() -> None:
    pins = closure(PROJECT, EXTRAS)
    print(HEADER)
    for key in sorted(pins, key=str.lower):
        print(pins[key])


if __name__ == "__main__":
    main()
