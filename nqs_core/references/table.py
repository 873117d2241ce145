"""The reference table shipped in ``assets/references.json``.

It holds results computed by ``python -m nqs_core.references.build_table`` (closed forms, ED,
DMRG: each entry carries the provenance of the run that produced it) and published values with
their citation for lattices beyond our ED.  Entries are matched on every setting: Hamiltonian,
lattice, L, boundary and couplings.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).resolve().parents[2] / "assets" / "references.json"


@lru_cache(maxsize=2)
def _load(path: str) -> tuple[dict[str, Any], ...]:
    try:
        with open(path, encoding="utf-8") as f:
            return tuple(json.load(f)["entries"])
    except FileNotFoundError:
        return ()


def entries(path: Path | None = None) -> tuple[dict[str, Any], ...]:
    """All table entries, each ``{"settings": {...}, "result": {...}}``."""
    return _load(str(path or TABLE_PATH))


def same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal Hamiltonian, lattice, L, boundary and couplings (floats compared to 1e-12)."""
    if any(a[k] != b[k] for k in ("hamiltonian", "lattice", "L", "bc")):
        return False
    ca, cb = a["couplings"], b["couplings"]
    return ca.keys() == cb.keys() and all(abs(float(ca[k]) - float(cb[k])) <= 1e-12 for k in ca)


def lookup(settings: dict[str, Any], method: str, path: Path | None = None) -> dict[str, Any] | None:
    """The shipped result for ``settings`` computed by ``method`` (exact, ed, dmrg, published), or None."""
    for entry in entries(path):
        if entry["result"]["method"] == method and same_settings(entry["settings"], settings):
            return dict(entry["result"])
    return None
