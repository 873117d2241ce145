"""Build ``assets/references.json``: computed references for common cases plus published values.

    python -m nqs_core.references.build_table [--max-open-dmrg 100] [--skip-dmrg]

Computed entries (default couplings J = J1 = 1, J2 = 0.5, h = 1):
* periodic chains L = 4..100 (even): closed forms (Bethe ansatz, Majumdar–Ghosh, free fermions),
  ED where no closed form applies (J1-J2 at L = 4);
* open chains: TFIM by free fermions for L = 4..100; Heisenberg and J1-J2 by ED for L ≤ 20 and by
  DMRG (TeNPy) for the lengths in ``OPEN_DMRG_LENGTHS``;
* squares 2×2 and 4×4: ED for all three Hamiltonians.
Published entries: ``PUBLISHED`` below, each with its citation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nqs_core.hamiltonians import make_hamiltonian
from nqs_core.lattice import make_lattice
from nqs_core.references import reference, settings_of
from nqs_core.references.table import TABLE_PATH

OPEN_DMRG_LENGTHS = (24, 32, 40, 48, 64, 80, 100)

_VARBENCH_REF = "varbench (Wu et al., Science 386, 296 (2024), github.com/varbench/varbench)"
_VARBENCH = "exact ground-state energies as tabulated by " + _VARBENCH_REF
_SZP = "H. J. Schulz, T. A. L. Ziman and D. Poilblanc, J. Phys. I France 6, 675 (1996), exact diagonalisation"

# (hamiltonian, L of the L×L square, couplings, E/N, uncertainty of E/N or None, method note, citation)
PUBLISHED: list[tuple[str, int, dict[str, float], float, float | None, str, str]] = [
    ("heisenberg", 4, {"J": 1.0}, -0.7017802, None, "exact diagonalisation (16 sites)", _VARBENCH),
    ("heisenberg", 6, {"J": 1.0}, -0.67887215, None, "exact diagonalisation (36 sites)",
     "H. J. Schulz and T. A. L. Ziman, Europhys. Lett. 18, 355 (1992); value as tabulated by " + _VARBENCH_REF),
    ("heisenberg", 10, {"J": 1.0}, -0.67155264, 3e-8, "quantum Monte Carlo (stochastic series expansion)",
     "A. W. Sandvik, Phys. Rev. B 56, 11678 (1997); value as quoted in DESIGN.md §5"),
    ("tfim", 6, {"J": 1.0, "h": 3.0}, -3.2009085, None,
     "exact diagonalisation (36 sites; H = JΣσᶻσᶻ + ΓΣσˣ at Γ/J = 3, equal spectrum on the bipartite 6×6)",
     _VARBENCH),
]
for _j2, _e in [(0.05, -0.68059004), (0.1, -0.65981717), (0.15, -0.63954285), (0.2, -0.61987394),
                (0.25, -0.6009545), (0.3, -0.58298383), (0.35, -0.56624475), (0.4, -0.55114777),
                (0.45, -0.5382998), (0.5, -0.52862021), (0.6, -0.52589582), (0.65, -0.53938247),
                (0.7, -0.56385812), (0.75, -0.59427308), (0.8, -0.6273351), (0.85, -0.66171967),
                (0.9, -0.69686563), (0.95, -0.73249885), (1.0, -0.76846814)]:
    PUBLISHED.append(("j1j2", 4, {"J1": 1.0, "J2": _j2}, _e, None, "exact diagonalisation (16 sites)",
                      _SZP + "; value as tabulated by " + _VARBENCH_REF))
for _j2, _e in [(0.3, -0.56245947), (0.4, -0.52974501), (0.5, -0.50380965), (0.6, -0.49323859),
                (0.7, -0.53000123), (0.8, -0.5864866), (0.9, -0.64905201), (1.0, -0.71436043)]:
    PUBLISHED.append(("j1j2", 6, {"J1": 1.0, "J2": _j2}, _e, None, "exact diagonalisation (36 sites)",
                      _SZP + "; value as tabulated by " + _VARBENCH_REF))


def published_entries() -> list[dict[str, Any]]:
    out = []
    for name, L, couplings, e_site, err, how, citation in PUBLISHED:
        kw = {"J": couplings.get("J"), "J1": couplings.get("J1"), "J2": couplings.get("J2"), "h": couplings.get("h")}
        ham = make_hamiltonian(name, make_lattice("square", L), **kw)
        n = ham.lattice.n_sites
        prov: dict[str, Any] = {"citation": citation, "method": how, "digits": "as published (E/N)"}
        if err is not None:
            prov["uncertainty_per_site"] = err
        result = {"energy": e_site * n, "energy_per_site": e_site, "method": "published",
                  "convention": ham.convention, "provenance": prov, "settings": settings_of(ham)}
        out.append({"settings": settings_of(ham), "result": result})
    return out


def computed_cases(max_open_dmrg: int, skip_dmrg: bool) -> list[tuple[str, str, int, str, str]]:
    """(hamiltonian, lattice, L, bc, method) for every computed entry."""
    cases = []
    for L in range(4, 101, 2):
        cases += [("heisenberg", "chain", L, "periodic", "exact"), ("tfim", "chain", L, "periodic", "exact"),
                  ("j1j2", "chain", L, "periodic", "exact" if L >= 6 else "ed"), ("tfim", "chain", L, "open", "exact")]
        if L <= 20:
            cases += [("heisenberg", "chain", L, "open", "ed"), ("j1j2", "chain", L, "open", "ed")]
    if not skip_dmrg:
        for L in OPEN_DMRG_LENGTHS:
            if L <= max_open_dmrg:
                cases += [("heisenberg", "chain", L, "open", "dmrg"), ("j1j2", "chain", L, "open", "dmrg")]
    for L in (2, 4):
        cases += [(name, "square", L, "periodic", "ed") for name in ("heisenberg", "j1j2", "tfim")]
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TABLE_PATH)
    parser.add_argument("--max-open-dmrg", type=int, default=100, help="longest open chain computed by DMRG")
    parser.add_argument("--skip-dmrg", action="store_true")
    args = parser.parse_args(argv)

    entries = []
    for name, kind, L, bc, method in computed_cases(args.max_open_dmrg, args.skip_dmrg):
        t = time.perf_counter()
        r = reference(name, kind, method, L=L, bc=bc, use_table=False)
        r = {k: v for k, v in r.items() if k not in ("source", "seconds")}
        entries.append({"settings": r["settings"], "result": r})
        print(f"{name:10s} {kind:6s} L={L:3d} {bc:8s} {method:5s} E/N={r['energy_per_site']:.12f} "
              f"({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    entries += published_entries()
    doc = {
        "format": 1,
        "description": "NQS Lab reference ground-state energies; conventions in each entry (DESIGN.md §2)",
        "generated_by": "python -m nqs_core.references.build_table",
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "entries": entries,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(entries)} entries to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
