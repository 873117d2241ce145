"""Ground-state energies of chains by two-site DMRG with TeNPy (physics-tenpy), in OUR conventions.

The MPO is built term by term from the same bond lists the VMC uses (``Lattice.bonds``,
``Lattice.next_bonds``), so periodic chains (the wrap-around bond is a long-range MPO term),
open chains and the L = 2 / L = 4 special cases describe exactly the Hamiltonian of
``nqs_core.hamiltonians``:
* Heisenberg / J1-J2: Σ_b J_b [S^z_i S^z_j + ½(S^+_i S^-_j + S^-_i S^+_j)], Sᶻ conserved, Néel start;
* TFIM: −J Σ σˣ_i σˣ_j − h Σ σᶻ_i, unitarily equivalent to −J Σ σᶻσᶻ − h Σ σˣ (a Hadamard on
  every site), same spectrum; the σᶻ parity is conserved in the sector that holds the ground state
  (``tfim_parity_sector``), which avoids symmetry-broken cat states in the ordered phase.

Convergence: the bond dimension is raised stage by stage (χ = 32, 64, 128, 256, 384, …, ``chi_max``),
each stage sweeping until the energy settles (the first only roughly: it is never the answer, see
``stage_options``); the run stops when the error of the last stage,
estimated by extrapolating the energy linearly in the discarded weight over the last two stages,
is below ``rel_tol`` relative.  The estimate is reported next to TeNPy's truncation error (White, PRL 69, 2863 (1992); Hauschild & Pollmann, SciPost Phys. Lect.
Notes 5 (2018)).

Threads: ``DMRGJob`` sweeps with ONE BLAS thread (``JOB_BLAS_THREADS``).  The lab computes a DMRG
reference beside a running VMC step on the same cores, and OpenBLAS threads spin-wait when the cores
are busy: a periodic L = 32 chain took 26 s of CPU and 39 s of wall time with OpenBLAS's two threads
against 9.8 s and 15.5 s with one (2 cores, load ≈ 10; benchmarks/README.md, "DMRG threads").  A call
of ``run_dmrg`` in the caller's process leaves the BLAS threads as they are unless asked
(``blas_threads``): they are process-wide state, and changing them under other threads that use
OpenBLAS (JAX's LAPACK calls, numpy) is not safe.

``DMRGJob`` runs the same computation in a separate process forked from the engine's fork server
(``nqs_core.fork_server``), with ``.progress``, ``.result(timeout)`` and ``.cancel()`` for the app: 3.4–3.8 s
from start to the result of an 8-site ring, ~2.5 s of it importing TeNPy, against 7.6 s for a spawned
process that imported JAX and the engine first (idle 2 cores; benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queue_module
import time
from typing import Any, Callable


from nqs_core import fork_server
from nqs_core.hamiltonians import Hamiltonian

DEFAULT_REL_TOL = 5e-7
DEFAULT_CHI_MAX = 512
JOB_BLAS_THREADS = 1  # DMRGJob's process: see "Threads" above


def dmrg_problem(ham: Hamiltonian) -> str | None:
    """Why DMRG cannot handle ``ham`` (a message naming the setting), or None."""
    if ham.lattice.kind != "chain":
        return f"method=dmrg handles chains only; got lattice={ham.lattice.kind}"
    if ham.conserves_sz and ham.lattice.n_sites % 2:
        return f"L must give an even number of sites for the Sᶻ = 0 sector; got {ham.lattice.n_sites} sites"
    if ham.lattice.L < 4:
        return f"method=dmrg needs L ≥ 4; got L={ham.lattice.L} (use method=ed)"
    return None


def hamiltonian_spec(ham: Hamiltonian) -> dict[str, Any]:
    """Plain-data description of ``ham`` (sites, two-site terms, field) for the worker process."""
    spec: dict[str, Any] = {"name": ham.name, "ising": ham.is_ising, "L": ham.lattice.L, "pbc": ham.lattice.pbc}
    if ham.is_ising:
        bonds, coup = ham.ising_bonds
        spec["bonds"] = [(int(i), int(j), float(c)) for (i, j), c in zip(bonds, coup)]
        spec["h"] = ham.field
    else:
        bonds, coup = ham.exchange_bonds
        spec["bonds"] = [(int(i), int(j), float(c)) for (i, j), c in zip(bonds, coup) if c != 0]
    return spec


def tfim_parity_sector(spec: dict[str, Any]) -> str | None:
    """The product state ("up" or "down") whose σᶻ-parity sector holds the TFIM ground state, or None.

    In the −J Σ XX − h Σ Z picture: for J ≥ 0 the off-diagonal elements are ≤ 0, so (Perron–Frobenius)
    the ground state overlaps the all-up state (h ≥ 0) or, after Π X which maps h → −h, the all-down
    state; on a bipartite chain (open, or even L) a sublattice rotation maps J → −J without changing
    the parity.  Otherwise (J < 0 on an odd ring) no sector is imposed.
    """
    J = spec["bonds"][0][2] if spec["bonds"] else 0.0
    bipartite = (not spec["pbc"]) or spec["L"] % 2 == 0
    if J >= 0 or bipartite:
        return "up" if spec["h"] >= 0 else "down"
    return None


def build_model(spec: dict[str, Any]):
    """A TeNPy ``CouplingMPOModel`` with exactly the terms of ``spec``."""
    # local: TeNPy is a heavy optional dependency, imported only in the DMRG worker process
    from tenpy.models.lattice import Chain
    from tenpy.models.model import CouplingMPOModel
    from tenpy.networks.site import SpinHalfSite

    tfim = spec["ising"]
    conserve = ("parity" if tfim_parity_sector(spec) is not None else None) if tfim else "Sz"

    class BondListModel(CouplingMPOModel):
        def init_sites(self, model_params):
            return SpinHalfSite(conserve=conserve)

        def init_lattice(self, model_params):
            return Chain(spec["L"], self.init_sites(model_params), bc="open", bc_MPS="finite")

        def init_terms(self, model_params):
            for i, j, c in spec["bonds"]:
                i, j = min(i, j), max(i, j)
                if tfim:
                    self.add_coupling_term(-c, i, j, "Sigmax", "Sigmax")
                else:
                    self.add_coupling_term(c, i, j, "Sz", "Sz")
                    self.add_coupling_term(0.5 * c, i, j, "Sp", "Sm", plus_hc=True)
            if tfim and spec["h"] != 0:
                for i in range(spec["L"]):
                    self.add_onsite_term(-spec["h"], i, "Sigmaz")

    return BondListModel({})


def initial_state(spec: dict[str, Any]) -> list[str]:
    """The product state DMRG starts from: Néel (Sᶻ = 0) for the exchange models, the TFIM's
    parity-sector product state (``tfim_parity_sector``) otherwise."""
    L = spec["L"]
    if spec["ising"]:
        return [tfim_parity_sector(spec) or "up"] * L
    return ["up", "down"] * (L // 2)


FIRST_STAGE_SWEEPS = 4
# Lanczos steps per two-site update: the update starts from the previous sweep's wave function, already close
# to the local ground state, so a few steps suffice (ITensor's default is 2).  A 64-site ring to 5e-7, one
# BLAS thread: TeNPy's default N_max = 20 took 106 s of CPU, N_max = 4 72 s, 3 69 s (same stages and sweeps,
# the same energy to 1e-9 relative); N_max = 2 needed 13 sweeps at χ = 64 (86 s).
LANCZOS_N_MAX = 4


def stage_options(chi: int, first: bool, rel_tol: float, L: int, max_sweeps: int) -> dict[str, Any]:
    """TeNPy options of one stage at bond dimension ``chi`` (the mixer only in the first stage).

    The first stage only prepares a start for the next: it is always the coarse one of a pair, never the
    answer, and an energy left too high there only enlarges the error estimate (``_error_estimate``), so it
    sweeps at most ``FIRST_STAGE_SWEEPS`` times.  On a 64-site ring its 13 sweeps at χ = 32 had cost a
    quarter of the run (each sweep's cost is mostly TeNPy's per-site work, not χ³)."""
    return {
        "trunc_params": {"chi_max": chi, "svd_min": 1e-14},
        "mixer": first,
        "mixer_params": {"amplitude": 1e-5, "decay": 2.0, "disable_after": 4},
        # sweeps within a stage: settle the energy below the stage-to-stage tolerance (a tenth of rel_tol
        # at a quarter of the sites' energy scale; TeNPy's test is |ΔE| / max(E, 1) < max_E_err, i.e.
        # absolute for negative E)
        "max_E_err": 0.1 * rel_tol * 0.25 * L,
        "max_S_err": 1.0,
        "min_sweeps": 2,
        "max_sweeps": min(max_sweeps, FIRST_STAGE_SWEEPS) if first else max_sweeps,
        "max_trunc_err": 1.0,  # early stages truncate heavily by design; no TeNPy warning
        "combine": True,
        "lanczos_params": {"N_min": 2, "N_max": LANCZOS_N_MAX},
    }


def next_chi(chi: int, chi_max: int) -> int:
    """The next stage's bond dimension: doubled up to 256, then ×1.5, capped at ``chi_max``.  (A 64-site
    ring to 5e-7: χ = 32, 64, 128, 256 in 111 s of CPU, against 32, 64, 128, 192, 288 in 157 s.)"""
    return min(2 * chi if chi < 256 else int(1.5 * chi), chi_max)


def reporting_engine(progress: Callable[[dict[str, Any]], None] | None, where: dict[str, Any]):
    """A ``TwoSiteDMRGEngine`` subclass that reports each sweep to ``progress``; ``where`` holds the
    run's position (stage, chi, sweeps of the finished stages, start time), updated by the caller."""
    # local: TeNPy is a heavy optional dependency, imported only in the DMRG worker process
    from tenpy.algorithms.dmrg import TwoSiteDMRGEngine

    class ReportingEngine(TwoSiteDMRGEngine):
        def status_update(self, iteration_start_time: float) -> None:
            if progress is not None:
                progress({
                    "stage": where["stage"], "chi": int(where["chi"]), "sweep": where["sweeps"] + self.sweeps,
                    "energy": float(self.sweep_stats["E"][-1]),
                    "truncation_error": float(self.sweep_stats["max_trunc_err"][-1]),
                    "seconds": time.perf_counter() - where["start"], "blas_threads": where["blas_threads"],
                })

    return ReportingEngine


def run_stage(engine_class: Any, psi: Any, model: Any, chi: int, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Sweep at bond dimension ``chi`` until the energy settles: (ψ, the stage's record)."""
    engine = engine_class(psi, model, options)
    # a stage whose two-site blocks are all small (TeNPy's max_N_for_ED) diagonalises them exactly and never
    # reads the Lanczos settings; TeNPy would then warn that they went unused
    engine.lanczos_params.touch("N_min", "N_max")
    energy, psi = engine.run()
    trunc = float(engine.sweep_stats["max_trunc_err"][-1]) if engine.sweep_stats["max_trunc_err"] else 0.0
    return psi, {"chi_max": chi, "chi_used": int(max(psi.chi)), "energy": float(energy), "sweeps": engine.sweeps,
                 "truncation_error": trunc}


def run_dmrg(
    spec: dict[str, Any],
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    chi_max: int = DEFAULT_CHI_MAX,
    chi_start: int = 32,
    max_sweeps_per_stage: int = 12,
    progress: Callable[[dict[str, Any]], None] | None = None,
    blas_threads: int | None = None,
) -> dict[str, Any]:
    """Converged DMRG ground energy of ``spec`` (see ``hamiltonian_spec``) with its diagnostics: stages of
    growing χ until the extrapolated error (``_error_estimate``) is below ``rel_tol`` relative.

    ``blas_threads``: BLAS threads during the sweeps; None leaves the process's setting (module docstring,
    "Threads").  Each progress report says how many threads the sweeps use."""
    # local: TeNPy is a heavy optional dependency, imported only in the DMRG worker process
    import tenpy
    from threadpoolctl import threadpool_info, threadpool_limits

    # no threadpool_limits(None): leaving it sets every library's threads again, to the same value
    limits = contextlib.nullcontext() if blas_threads is None else threadpool_limits(blas_threads, user_api="blas")
    with limits:
        threads = max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=None)
        return _converge(threads, spec, rel_tol, chi_max, chi_start, max_sweeps_per_stage, progress) | {
            "library": f"physics-tenpy {tenpy.__version__}"}


def _converge(blas_threads: int | None, spec: dict[str, Any], rel_tol: float, chi_max: int, chi_start: int,
              max_sweeps_per_stage: int, progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """The stages of ``run_dmrg`` (TeNPy imported by the caller)."""
    from tenpy.networks.mps import MPS

    logging.getLogger("tenpy").setLevel(logging.ERROR)
    where = {"stage": 1, "chi": chi_start, "sweeps": 0, "start": time.perf_counter(), "blas_threads": blas_threads}
    model = build_model(spec)
    psi = MPS.from_product_state(model.lat.mps_sites(), initial_state(spec), bc="finite", unit_cell_width=spec["L"])
    engine_class = reporting_engine(progress, where)
    stages: list[dict[str, Any]] = []
    converged, change, extrapolated = False, None, None
    while True:
        options = stage_options(where["chi"], not stages, rel_tol, spec["L"], max_sweeps_per_stage)
        psi, stage = run_stage(engine_class, psi, model, where["chi"], options)
        stages.append(stage)
        where["sweeps"] += stage["sweeps"]
        if len(stages) > 1:
            error, extrapolated = _error_estimate(stages[-2], stages[-1])
            change = float(error / max(abs(stage["energy"]), 1e-12))
            if change < rel_tol:
                converged = True
                break
        if where["chi"] >= chi_max:
            break
        where["chi"], where["stage"] = next_chi(where["chi"], chi_max), len(stages) + 1
    return {
        "energy": stages[-1]["energy"], "converged": converged, "estimated_relative_error": change,
        "extrapolated_energy": extrapolated, "truncation_error": stages[-1]["truncation_error"],
        "chi": stages[-1]["chi_used"], "chi_max": chi_max, "sweeps": where["sweeps"], "stages": stages,
        "rel_tol": rel_tol, "seconds": time.perf_counter() - where["start"],
    }


def _error_estimate(coarse: dict[str, Any], fine: dict[str, Any]) -> tuple[float, float]:
    """(estimated |E_fine − E_exact|, extrapolated energy) from two bond dimensions.

    DMRG energies are linear in the discarded weight ε for small ε, E(ε) ≈ E₀ + a ε (White 1992;
    Legeza & Fáth, PRB 53, 14349 (1996)), so E₀ ≈ E_f − (E_c − E_f) ε_f/(ε_c − ε_f).  The estimate is
    never below 1e-3 of the stage-to-stage change, and is the whole change when ε does not drop.
    """
    de = abs(coarse["energy"] - fine["energy"])
    ec, ef = coarse["truncation_error"], fine["truncation_error"]
    if ec > ef:
        slope_part = de * ef / (ec - ef)
        error = max(slope_part, 1e-3 * de)
        extrapolated = fine["energy"] - (coarse["energy"] - fine["energy"]) * ef / (ec - ef)
    else:
        error, extrapolated = de, fine["energy"]
    return float(error), float(extrapolated)


# ----- background process ---------------------------------------------------------------
def _worker(spec: dict[str, Any], options: dict[str, Any], out: Any, env: dict[str, str], watch: Any) -> None:
    fork_server.adopt_caller(env, watch)  # the caller's environment; end with the caller
    try:
        result = run_dmrg(spec, progress=lambda p: out.put(("progress", p)), blas_threads=JOB_BLAS_THREADS, **options)
        out.put(("result", result))
    except BaseException as err:  # report, never hang the parent
        out.put(("error", f"{type(err).__name__}: {err}"))


class DMRGCancelled(RuntimeError):
    """The DMRG job was cancelled before it finished."""


class DMRGJob:
    """DMRG of one chain in a background process (forked from ``nqs_core.fork_server``).

    ``progress``: latest progress dict (stage, chi, sweep, energy, truncation_error, seconds) or None;
    ``result(timeout)``: the result dict of ``run_dmrg`` (raises TimeoutError, DMRGCancelled, RuntimeError);
    ``cancel()``: stop the process; ``done()``: finished, failed or cancelled.
    ``on_result`` (optional) is called with the result dict in the parent, once, when it arrives.
    """

    def __init__(self, ham: Hamiltonian, on_result: Callable[[dict[str, Any]], None] | None = None,
                 **options: Any):
        problem = dmrg_problem(ham)
        if problem:
            raise ValueError(problem)
        ctx = fork_server.context()
        self._queue = ctx.Queue()
        watch, self._caller_end = fork_server.caller_pipe(ctx)  # held while the job lives
        self._process = ctx.Process(target=_worker,
                                    args=(hamiltonian_spec(ham), options, self._queue, dict(os.environ), watch),
                                    daemon=True, name=f"nqs-dmrg-{ham.name}-L{ham.lattice.L}")
        self._progress: dict[str, Any] | None = None
        self._result: dict[str, Any] | None = None
        self._error: str | None = None
        self._cancelled = False
        self._on_result = on_result
        self._process.start()
        watch.close()

    def _drain(self, timeout: float | None = 0.0) -> None:
        """Read queued messages; block up to ``timeout`` for the first one."""
        block = timeout is None or timeout > 0
        while self._result is None and self._error is None:
            try:
                kind, payload = self._queue.get(block=block, timeout=timeout if block else None)
            except queue_module.Empty:
                return
            block = False
            if kind == "progress":
                self._progress = payload
            elif kind == "result":
                self._result = payload
                if self._on_result is not None:
                    self._on_result(payload)
            else:
                self._error = payload

    @property
    def progress(self) -> dict[str, Any] | None:
        self._drain()
        return self._progress

    def done(self) -> bool:
        self._drain()
        return self._cancelled or self._result is not None or self._error is not None

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            if not self._process.is_alive():
                self._drain(0.5)  # the last messages may still be in the pipe
                if not self.done():
                    self._error = f"DMRG process ended with exit code {self._process.exitcode}"
                break
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError("DMRG still running")
            self._drain(wait)
        if self._cancelled:
            raise DMRGCancelled("DMRG was cancelled")
        if self._error is not None:
            raise RuntimeError(self._error)
        assert self._result is not None
        self._process.join(timeout=5)
        self._caller_end.close()
        return self._result

    def cancel(self) -> None:
        """Stop the worker process (no-op if already finished)."""
        if self._result is None and self._error is None:
            self._cancelled = True
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=5)
        self._caller_end.close()
