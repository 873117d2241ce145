"""``nqs reference``: the ground-state energy a run is compared with, and where it comes from.

    nqs reference --hamiltonian {heisenberg,j1j2,tfim} --lattice {chain,square} --L INT
                  [--J F] [--J1 F] [--J2 F] [--h F] [--bc {periodic,open}]
                  [--method {auto,exact,ed,dmrg}] [--json]

With ``--json`` stdout is one JSON object (energy, energy_per_site, method, convention,
provenance, settings, source); DMRG progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from nqs_core.hamiltonians import COUPLING_ALIASES, COUPLINGS, HAMILTONIANS
from nqs_core.lattice import BOUNDARIES, KINDS
from nqs_core.references import reference

CLI_METHODS = ("auto", "exact", "ed", "dmrg")
COUPLINGS_OF = {h: COUPLING_ALIASES.get(h, ()) + c for h, c in COUPLINGS.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hamiltonian", required=True, choices=HAMILTONIANS)
    parser.add_argument("--lattice", required=True, choices=KINDS)
    parser.add_argument("--L", required=True, type=int, help="chain length, or side of the L×L square")
    parser.add_argument("--J", type=float, help="coupling J (Heisenberg, TFIM; alias of J1 for j1j2); default 1")
    parser.add_argument("--J1", type=float, help="nearest-neighbour coupling of j1j2; default 1")
    parser.add_argument("--J2", type=float, help="next-nearest-neighbour coupling of j1j2; default 0.5")
    parser.add_argument("--h", type=float, help="transverse field of the TFIM; default 1")
    parser.add_argument("--bc", default="periodic", choices=BOUNDARIES)
    parser.add_argument("--method", default="auto", choices=CLI_METHODS,
                        help="auto: closed form > ED > DMRG > published value")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _check(args: argparse.Namespace) -> dict[str, float]:
    """The couplings given on the command line; ValueError naming a coupling that is NaN or foreign."""
    given = {}
    for name in ("J", "J1", "J2", "h"):
        value = getattr(args, name)
        if value is None:
            continue
        if name not in COUPLINGS_OF[args.hamiltonian]:
            allowed = ", ".join(f"--{c}" for c in COUPLINGS_OF[args.hamiltonian])
            raise ValueError(f"--{name} does not apply to {args.hamiltonian} (its couplings: {allowed})")
        if not math.isfinite(value):
            raise ValueError(f"--{name} must be a finite number; got {value}")
        given[name] = value
    if "J" in given and "J1" in given and args.hamiltonian == "j1j2":
        raise ValueError("--J and --J1 both set the J1-J2 nearest-neighbour coupling; give one")
    if args.L < 2:
        raise ValueError(f"--L must be an integer ≥ 2; got {args.L}")
    return given


def _progress(p: dict[str, Any]) -> None:
    print(f"dmrg: stage {p['stage']} χ={p['chi']} sweep {p['sweep']} E={p['energy']:.12f} "
          f"trunc={p['truncation_error']:.1e} ({p['seconds']:.0f} s)", file=sys.stderr, flush=True)


def _plain(value: Any) -> Any:
    """JSON-safe copy (NumPy scalars to Python numbers)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def main(args: argparse.Namespace) -> int:
    couplings = _check(args)
    result = _plain(reference(args.hamiltonian, args.lattice, args.method, L=args.L, bc=args.bc,
                              progress=_progress, **couplings))
    prov = result["provenance"]
    if result["method"] == "dmrg" and not prov.get("converged", True):
        print(f"warning: DMRG did not reach rel_tol={prov['rel_tol']:g} by chi_max={prov['chi_max']} "
              f"(estimated relative error {prov['estimated_relative_error']:.1e})", file=sys.stderr)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    s = result["settings"]
    size = f"{s['L']}" if s["lattice"] == "chain" else f"{s['L']}×{s['L']}"
    c = ", ".join(f"{k}={v:g}" for k, v in s["couplings"].items())
    print(f"{s['hamiltonian']} ({c}) on the {s['bc']} {s['lattice']} {size} ({s['n_sites']} sites)")
    print(f"E     = {result['energy']:.12f}")
    print(f"E/N   = {result['energy_per_site']:.12f}")
    print(f"method: {result['method']} ({result.get('source', 'computed')})")
    print(f"convention: {result['convention']}")
    prov = {k: v for k, v in result["provenance"].items() if k != "stages"}
    print("provenance: " + "; ".join(f"{k}={v}" for k, v in prov.items()))
    if result.get("ground_momentum_over_pi") is not None:
        print(f"ground-state momentum: k/π = {result['ground_momentum_over_pi']}")
    return 0
