"""The reference energy the driver cannot wait for: DMRG in a background process, per session.

The driver looks up closed forms, ED, cached and shipped values itself, but never starts a new
DMRG run for the app (a thread cannot be cancelled).  :class:`ReferenceJob` fills that gap: for a
chain beyond ED with no stored value (e.g. J1-J2, L = 40, J2 = 0.3) it starts
``nqs_core.references.dmrg_job`` (a separate process with progress and cancellation, whose result
is written to the reference cache) and the page polls :meth:`ReferenceJob.poll` from its periodic
callback.  With ``lookup=True`` (a loaded run) it also answers from closed forms / ED / stores.
Cancel it when the session ends or on Reset.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from nqs_core.run_reference import error_text
from nqs_core.settings import RunSettings

log = logging.getLogger("nqs_lab.reference")


def hamiltonian_key(settings: RunSettings) -> tuple:
    """What the reference energy depends on (not the model, optimizer or sampling)."""
    return (settings.hamiltonian, settings.lattice, settings.L, settings.bc, settings.J, settings.J1, settings.J2,
            settings.h)


def needs_new_dmrg(ham: Any, **dmrg_options: Any) -> bool:
    """True when only a new DMRG run can give the reference: no closed form, beyond ED, a chain
    DMRG handles, and nothing in the cache or the shipped table (for these DMRG options)."""
    from nqs_core.references import NeedsDMRG, reference
    from nqs_core.references.closed_forms import closed_form
    from nqs_core.references.dmrg import dmrg_problem
    from nqs_core.references.ed import ed_problem

    if closed_form(ham) is not None or ed_problem(ham) is None or dmrg_problem(ham) is not None:
        return False
    try:
        reference(ham, method="dmrg", compute_dmrg=False, **dmrg_options)
    except NeedsDMRG:
        return True
    return False


def progress_text(p: dict | None, seconds: float | None = None) -> str:
    """e.g. ``DMRG (TeNPy) running in the background: stage 2, χ = 64, sweep 7, E = −17.2345, 14 s``."""
    if not p:
        return "DMRG (TeNPy) starting in the background…"
    return (f"DMRG (TeNPy) running in the background: stage {p.get('stage')}, χ = {p.get('chi')}, "
            f"sweep {p.get('sweep')}, E = {p.get('energy', float('nan')):.6f}, {p.get('seconds', 0):.0f} s")


class ReferenceJob:
    """Find the reference of ``settings`` in the background (see the module docstring).

    ``state``: "looking", "dmrg" (a DMRG process runs), "done", "none" (the driver answers, or there
    is no reference), "failed" or "cancelled".  :meth:`poll` returns ``(text, reference)``: a progress
    line while DMRG runs, and the reference dict once, when it is ready.
    """

    def __init__(self, settings: RunSettings, lookup: bool = False, dmrg: bool = True, **dmrg_options: Any):
        self.key = hamiltonian_key(settings)
        self.settings = settings
        self.state = "looking"
        self.error = ""
        self.reference: dict | None = None
        self._delivered = False
        self.progress: dict | None = None
        self._job: Any = None
        self._ham: Any = None
        self._options = dmrg_options
        self._lock = threading.Lock()
        self._cancelled = False
        self._dmrg = dmrg  # False: closed forms, ED and stored values only (an idle page starts no DMRG)
        self.needs_dmrg = False
        self._lookup = lookup
        self._thread = threading.Thread(target=self._work, args=(lookup,), daemon=True, name="nqs-reference-job")
        self._thread.start()

    def _work(self, lookup: bool) -> None:
        """Decide, start DMRG if needed and wait for it (this thread only touches the job)."""
        try:
            from nqs_core.references import dmrg_job
            from nqs_core.problem import build_problem

            _, ham = build_problem(self.settings)
            self._ham = ham
            if needs_new_dmrg(ham, **self._options):
                self.needs_dmrg = True
                if not self._dmrg:
                    self.state = "none"
                    return
                with self._lock:
                    if self._cancelled:
                        self.state = "cancelled"
                        return
                    self._job = job = dmrg_job(ham, **self._options)
                    self.state = "dmrg"
                log.info("DMRG job started for %s", ham.describe())
                while not job.done():
                    self.progress = job.progress
                    time.sleep(0.25)
                try:
                    run = job.result(timeout=10.0)
                except Exception as err:
                    if self._cancelled:
                        self.state = "cancelled"
                        return
                    raise RuntimeError(f"DMRG failed: {type(err).__name__}: {err}") from None
                self.reference = self._from_cache(run)
                self.state = "done"
                log.info("DMRG reference ready: E = %.8f", self.reference["energy"])
                return
            if lookup:
                from nqs_core.run_reference import find_reference

                self.reference = find_reference(self.settings, compute_dmrg=False)
            self.state = "done" if self.reference is not None else "none"
        except Exception as err:
            if self._cancelled:
                self.state = "cancelled"
                return
            self.state, self.error = "failed", error_text(err)
            log.warning("reference lookup failed: %s", self.error)

    @property
    def running(self) -> bool:
        return self.state in ("looking", "dmrg")

    def poll(self) -> tuple[str, dict | None]:
        """(progress text or "", the reference dict the first time it is available); never blocks."""
        if self.state == "dmrg":
            return progress_text(self.progress), None
        if self.state == "failed" and not self._delivered:
            self._delivered = True
            return self.error, None  # the energy view says "reference: " before it
        if self.reference is not None and not self._delivered:
            self._delivered = True
            return "", self.reference
        if self.state == "none" and self._lookup and not self._delivered:  # nothing found without running
            self._delivered = True
            return ("DMRG (TeNPy) computes it in the background once the run starts" if self.needs_dmrg else
                    "none known for these settings (the V-score needs none)"), None
        return "", None

    def _from_cache(self, run: dict) -> dict:
        """The reference dict as ``nqs_core.references.reference`` gives it (the job cached it)."""
        from nqs_core.references import NeedsDMRG, reference

        try:
            ref = dict(reference(self._ham, method="dmrg", compute_dmrg=False, **self._options))
            ref["source"] = "computed in the background"  # by this job (read back from the cache it wrote)
            return ref
        except NeedsDMRG:  # the cache is not writable: build the same fields from the run
            return {"energy": run["energy"], "energy_per_site": run["energy"] / self._ham.lattice.n_sites,
                    "method": "dmrg", "convention": self._ham.convention, "source": "computed",
                    "provenance": {k: run.get(k) for k in ("library", "chi", "chi_max", "truncation_error",
                                                           "estimated_relative_error", "converged")}}

    def cancel(self) -> None:
        """Stop the DMRG process, if any (returns within a few seconds)."""
        with self._lock:
            self._cancelled = True
            job = self._job
        if job is not None and self.state == "dmrg":
            job.cancel()
            log.info("DMRG job cancelled")
        if self.running:
            self.state = "cancelled"


__all__ = ["ReferenceJob", "hamiltonian_key", "needs_new_dmrg", "progress_text"]
