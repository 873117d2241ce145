"""DMRG (TeNPy) in our conventions: against ED, closed forms and the Bethe ansatz; the background job."""

import gc
import warnings

import pytest
from conftest import poll_until

from nqs_core import make_hamiltonian, make_lattice
from nqs_core.references import dmrg_job, reference
from nqs_core.references.closed_forms import heisenberg_chain_bethe, tfim_chain_open
from nqs_core.references.dmrg import DMRGCancelled, DMRGJob, hamiltonian_spec, run_dmrg
from nqs_core.references.ed import exact_diagonalization


pytestmark = pytest.mark.usefixtures("private_cache")  # tests/conftest.py


def test_dmrg_equals_ed_on_16_site_j1j2_chain():
    ham = make_hamiltonian("j1j2", make_lattice("chain", 16), J2=0.3)
    run = run_dmrg(hamiltonian_spec(ham))
    exact = exact_diagonalization(ham, want_vector=False).energy
    assert run["converged"]
    assert abs(run["energy"] - exact) / abs(exact) < 1e-6
    assert run["energy"] >= exact - 1e-10  # variational
    assert run["estimated_relative_error"] < 1e-6 and run["truncation_error"] >= 0 and run["sweeps"] >= 2


def test_dmrg_open_tfim_equals_free_fermions():
    ham = make_hamiltonian("tfim", make_lattice("chain", 20, "open"), J=1.0, h=0.8)
    r = reference(ham, method="dmrg")
    assert r["method"] == "dmrg" and r["provenance"]["library"].startswith("physics-tenpy")
    assert r["energy"] == pytest.approx(tfim_chain_open(20, 1.0, 0.8), rel=1e-6)


def test_the_background_job_sweeps_with_one_blas_thread():
    """OpenBLAS threads spin on cores the VMC run is using (nqs_core/references/dmrg.py, "Threads"): the
    job's own process sweeps with one."""
    job = DMRGJob(make_hamiltonian("heisenberg", make_lattice("chain", 8)))
    job.result(timeout=300)
    assert job.progress["blas_threads"] == 1


def test_a_run_in_this_process_leaves_its_blas_threads_alone():
    """Changing them is process-wide, unsafe under threads that use OpenBLAS (JAX's LAPACK calls): a run
    in the caller's process sweeps with the process's own setting and never sets it.  And it warns of
    nothing: on 8 sites every two-site block is diagonalised exactly, and TeNPy warned that the Lanczos
    settings went unused."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    seen: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dmrg(hamiltonian_spec(make_hamiltonian("heisenberg", make_lattice("chain", 8))),
                 progress=lambda p: seen.append(p["blas_threads"]))
        gc.collect()  # TeNPy reports unused options when an engine's options are collected
    assert [str(w.message) for w in caught] == []
    assert seen and set(seen) == {max(before)}
    assert blas_threads() == before


def test_background_job_reports_progress_and_caches_its_result():
    job = dmrg_job("heisenberg", "chain", L=12, bc="open")
    run = job.result(timeout=300)
    assert job.done() and job.progress is not None and job.progress["sweep"] >= 1
    exact = exact_diagonalization(make_hamiltonian("heisenberg", make_lattice("chain", 12, "open")), False).energy
    assert run["energy"] == pytest.approx(exact, rel=1e-8)
    cached = reference("heisenberg", "chain", "dmrg", L=12, bc="open")
    assert cached["source"] == "cache" and cached["energy"] == run["energy"]


def test_background_job_can_be_cancelled():
    job = DMRGJob(make_hamiltonian("heisenberg", make_lattice("chain", 96)))
    poll_until(lambda: None, lambda: job.progress is not None, 120, "DMRG progress")
    job.cancel()
    assert job.done()
    assert not job._process.is_alive()
    with pytest.raises(DMRGCancelled):
        job.result(timeout=1)


def test_dmrg_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="chains only"):
        DMRGJob(make_hamiltonian("heisenberg", make_lattice("square", 4)))
    with pytest.raises(ValueError, match="L ≥ 4"):
        reference("tfim", "chain", "dmrg", L=3)


@pytest.mark.accuracy
def test_dmrg_equals_bethe_ansatz_on_the_longest_periodic_chain():
    """Computed as the lab computes it (the job's own process, one BLAS thread), then read back as a
    reference from the cache.  L = 64, the lab's largest chain: a smaller one (32 was here too) checks
    nothing more and cost 10 s of the suite."""
    L = 64
    dmrg_job("heisenberg", "chain", L=L).result(timeout=600)
    r = reference("heisenberg", "chain", "dmrg", L=L, use_table=False, compute_dmrg=False)
    assert r["source"] == "cache"
    exact = heisenberg_chain_bethe(L)
    assert abs(r["energy"] - exact) / abs(exact) <= 1e-6
    assert r["provenance"]["converged"]
