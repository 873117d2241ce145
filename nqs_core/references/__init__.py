"""Reference ground-state energies: closed forms > exact diagonalisation > DMRG > published values.

``reference(hamiltonian, lattice, method="auto")`` answers with a dict
    energy, energy_per_site, method ("exact" | "ed" | "dmrg" | "published"), convention,
    provenance (formula, library and version, χ and truncation error, or citation),
    settings (hamiltonian, lattice, L, bc, n_sites, couplings), source ("computed" | "cache" | "table"),
plus for ED the lowest energy of every momentum sector.  ED and DMRG results are cached on disk
(``nqs_core.references.cache``) and common cases ship in ``assets/references.json``.
For the app, ``dmrg_job(...)`` runs DMRG in a background process that caches its result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from nqs_core.hamiltonians import Hamiltonian, make_hamiltonian
from nqs_core.lattice import Lattice, make_lattice
from nqs_core.references import cache, table
from nqs_core.references.closed_forms import closed_form
from nqs_core.references.dmrg import DEFAULT_CHI_MAX, DEFAULT_REL_TOL, DMRGCancelled, DMRGJob, dmrg_problem, hamiltonian_spec, run_dmrg
from nqs_core.references.ed import EDResult, ed_problem, exact_diagonalization
from nqs_core.references.ed import provenance as ed_provenance

METHODS = ("auto", "exact", "ed", "dmrg", "published")

__all__ = ["reference", "dmrg_job", "ground_state", "settings_of", "resolve_hamiltonian", "NeedsDMRG",
           "DMRGJob", "DMRGCancelled", "EDResult", "METHODS"]


class NeedsDMRG(LookupError):
    """Raised by ``reference(..., compute_dmrg=False)`` when only a fresh DMRG run could answer."""

    def __init__(self, ham: Hamiltonian):
        super().__init__(f"no stored reference for {ham.describe()}; DMRG must run (see dmrg_job)")
        self.hamiltonian = ham


def resolve_hamiltonian(hamiltonian: Hamiltonian | str, lattice: Lattice | str | None = None, *,
                        L: int | None = None, bc: str = "periodic", J: float | None = None,
                        J1: float | None = None, J2: float | None = None, h: float | None = None) -> Hamiltonian:
    """A Hamiltonian from an object or from user-facing names (``make_hamiltonian`` defaults)."""
    if isinstance(hamiltonian, Hamiltonian):
        return hamiltonian
    if isinstance(lattice, str):
        if L is None:
            raise ValueError("L is required when the lattice is given by name")
        lattice = make_lattice(lattice, L, bc)
    if lattice is None:
        raise ValueError("lattice is required when the Hamiltonian is given by name")
    return make_hamiltonian(hamiltonian, lattice, J=J, J1=J1, J2=J2, h=h)


def settings_of(ham: Hamiltonian) -> dict[str, Any]:
    lat = ham.lattice
    return {"hamiltonian": ham.name, "lattice": lat.kind, "L": int(lat.L), "bc": lat.boundary,
            "n_sites": int(lat.n_sites), "couplings": {k: float(v) for k, v in ham.couplings.items()}}


def _validate(ham: Hamiltonian) -> None:
    n = ham.lattice.n_sites
    if ham.conserves_sz and n % 2:
        raise ValueError(f"L must give an even number of sites for the Sᶻ = 0 sector of {ham.name}; got {n} sites")


def _finish(ham: Hamiltonian, energy: float, method: str, provenance: dict[str, Any], **extra: Any) -> dict[str, Any]:
    n = ham.lattice.n_sites
    return {"energy": float(energy), "energy_per_site": float(energy) / n, "method": method,
            "convention": ham.convention, "provenance": provenance, "settings": settings_of(ham), **extra}


def _cache_key(ham: Hamiltonian, method: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    s = settings_of(ham)
    return {**{k: s[k] for k in ("hamiltonian", "lattice", "L", "bc", "couplings")}, "method": method,
            "options": options or {}}


# ----- the methods ------------------------------------------------------------------------
def _exact(ham: Hamiltonian) -> dict[str, Any] | None:
    found = closed_form(ham)
    if found is None:
        return None
    energy, formula = found
    return _finish(ham, energy, "exact", {"formula": formula, "library": "nqs_core.references.closed_forms"})


def _ed_dict(ham: Hamiltonian, res: EDResult) -> dict[str, Any]:
    sectors = [{"k_over_pi": [round(float(x) / math.pi, 12) for x in k], "energy": float(e)}
               for k, e in zip(res.momenta, res.sector_energies)]
    prov = {**ed_provenance(), "basis_dimension": int(res.dim), "largest_block": int(np.max(res.block_dims)),
            "seconds": round(res.seconds, 3),
            "sector": ham.basis}
    if not ham.lattice.pbc:
        prov["symmetry"] = "none (open boundaries)"
    return _finish(ham, res.energy, "ed", prov, sector_energies=sectors,
                   ground_momentum_over_pi=[round(float(x) / math.pi, 12) for x in res.ground_momentum])


def _stored(ham: Hamiltonian, method: str, options: dict[str, Any] | None, use_cache: bool,
            use_table: bool) -> dict[str, Any] | None:
    key = _cache_key(ham, method, options)
    if use_cache:
        hit = cache.load(key)
        if hit is not None:
            return {**hit, "source": "cache"}
    if use_table and (method == "published" or not options or options == _default_dmrg_options()):
        hit = table.lookup(settings_of(ham), method)
        if hit is not None:
            return {**hit, "settings": settings_of(ham), "source": "table"}
    return None


def _ed(ham: Hamiltonian, use_cache: bool, use_table: bool) -> dict[str, Any]:
    hit = _stored(ham, "ed", None, use_cache, use_table)
    if hit is not None:
        return hit
    result = _ed_dict(ham, exact_diagonalization(ham, want_vector=False))
    if use_cache:
        cache.store(_cache_key(ham, "ed"), result)
    return {**result, "source": "computed"}


def _default_dmrg_options() -> dict[str, Any]:
    return {"rel_tol": DEFAULT_REL_TOL, "chi_max": DEFAULT_CHI_MAX}


def _dmrg_dict(ham: Hamiltonian, run: dict[str, Any]) -> dict[str, Any]:
    prov = {k: run[k] for k in ("library", "chi", "chi_max", "truncation_error", "sweeps", "estimated_relative_error",
                                "extrapolated_energy", "converged", "rel_tol", "stages")}
    prov["seconds"] = round(run["seconds"], 2)
    prov["algorithm"] = ("two-site DMRG (TeNPy TwoSiteDMRGEngine); χ raised until the error estimated by "
                          "extrapolation in the discarded weight is below rel_tol")
    return _finish(ham, run["energy"], "dmrg", prov)


def _dmrg(ham: Hamiltonian, options: dict[str, Any], use_cache: bool, use_table: bool, compute: bool,
          progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    hit = _stored(ham, "dmrg", options, use_cache, use_table)
    if hit is not None:
        return hit
    if not compute:
        raise NeedsDMRG(ham)
    result = _dmrg_dict(ham, run_dmrg(hamiltonian_spec(ham), progress=progress, **options))
    if use_cache:
        cache.store(_cache_key(ham, "dmrg", options), result)
    return {**result, "source": "computed"}


def dmrg_job(hamiltonian: Hamiltonian | str, lattice: Lattice | str | None = None, *, use_cache: bool = True,
             rel_tol: float = DEFAULT_REL_TOL, chi_max: int = DEFAULT_CHI_MAX, **couplings: Any) -> DMRGJob:
    """Start DMRG in a background process; its result (``job.result()``) is also written to the cache,
    so ``reference(...)`` answers from the cache afterwards."""
    ham = resolve_hamiltonian(hamiltonian, lattice, **couplings)
    _validate(ham)
    options = {"rel_tol": rel_tol, "chi_max": chi_max}

    def store(run: dict[str, Any]) -> None:
        if use_cache:
            cache.store(_cache_key(ham, "dmrg", options), _dmrg_dict(ham, run))

    return DMRGJob(ham, on_result=store, **options)


# ----- the entry point --------------------------------------------------------------------
def reference(
    hamiltonian: Hamiltonian | str,
    lattice: Lattice | str | None = None,
    method: str = "auto",
    *,
    use_cache: bool = True,
    use_table: bool = True,
    compute_dmrg: bool = True,
    rel_tol: float = DEFAULT_REL_TOL,
    chi_max: int = DEFAULT_CHI_MAX,
    progress: Callable[[dict[str, Any]], None] | None = None,
    **names: Any,
) -> dict[str, Any]:
    """The best available ground-state energy of ``hamiltonian`` (see the module docstring).

    ``hamiltonian``: a ``Hamiltonian``, or a name with ``lattice`` (Lattice or kind), ``L``, ``bc`` and
    couplings ``J``, ``J1``, ``J2``, ``h`` as keywords.  ``method``: auto (closed form > ED > DMRG >
    published), exact (closed form), ed, dmrg or published.  Raises ValueError naming the setting
    when the method cannot handle the case, ``NeedsDMRG`` if ``compute_dmrg=False`` and only a new
    DMRG run could answer.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    ham = resolve_hamiltonian(hamiltonian, lattice, **names)
    _validate(ham)
    how = _How({"rel_tol": float(rel_tol), "chi_max": int(chi_max)}, use_cache, use_table, compute_dmrg, progress)
    result = _auto(ham, how) if method == "auto" else _by_method(ham, method, how)
    result["seconds"] = round(time.perf_counter() - start, 4)
    return result


@dataclass(frozen=True)
class _How:
    """How ``reference`` may answer: DMRG options, stores to consult, whether DMRG may run, its progress."""

    options: dict[str, Any]
    use_cache: bool
    use_table: bool
    compute_dmrg: bool
    progress: Callable[[dict[str, Any]], None] | None


def _published(ham: Hamiltonian, how: _How) -> dict[str, Any] | None:
    return _stored(ham, "published", None, use_cache=False, use_table=how.use_table)


def _by_method(ham: Hamiltonian, method: str, how: _How) -> dict[str, Any]:
    """The answer of one named method; ValueError naming the limit when it cannot handle ``ham``."""
    if method == "exact":
        result = _exact(ham)
        if result is None:
            raise ValueError(f"method=exact has no closed form for {ham.describe()} (closed forms: periodic "
                             "Heisenberg chain, periodic or open TFIM chain, J1-J2 chain at J2 = J1/2 or 0)")
        return {**result, "source": "computed"}
    if method in ("ed", "dmrg"):
        problem = ed_problem(ham) if method == "ed" else dmrg_problem(ham)
        if problem:
            raise ValueError(problem)
        if method == "ed":
            return _ed(ham, how.use_cache, how.use_table)
        return _dmrg(ham, how.options, how.use_cache, how.use_table, how.compute_dmrg, how.progress)
    result = _published(ham, how)
    if result is None:
        raise ValueError(f"method=published: no published value for {ham.describe()} in the shipped table")
    return result


def _auto(ham: Hamiltonian, how: _How) -> dict[str, Any]:
    """The first method that handles ``ham``: closed form > ED > DMRG > published."""
    result = _exact(ham)
    if result is not None:
        return {**result, "source": "computed"}
    if ed_problem(ham) is None:
        return _ed(ham, how.use_cache, how.use_table)
    if dmrg_problem(ham) is None:
        return _dmrg(ham, how.options, how.use_cache, how.use_table, how.compute_dmrg, how.progress)
    result = _published(ham, how)
    if result is None:
        raise ValueError(f"no reference for {ham.describe()}: too large for ED ({ed_problem(ham)}), "
                         "DMRG handles chains only, and the shipped table has no published value")
    return result


def ground_state(hamiltonian: Hamiltonian | str, lattice: Lattice | str | None = None, **names: Any) -> EDResult:
    """ED ground state with its vector on ``basis.basis_codes`` ordering (in-memory cache of 4)."""
    ham = resolve_hamiltonian(hamiltonian, lattice, **names)
    _validate(ham)
    return exact_diagonalization(ham, want_vector=True)
