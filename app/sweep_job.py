"""A coupling sweep of one session in background threads (``nqs_core.sweep``'s public API).

:class:`SweepJob` runs ``run_sweep`` in a worker thread (after waiting for a place in the server's
run queue, like a run) and, once the place is granted, the exact curve in a second thread
(``exact_observables.exact_curve`` on a fine grid of the swept coupling, where ED reaches; the worker
waits for it before it gives the place back).  Both only put events on a queue;
:meth:`SweepJob.drain` hands them to the page's periodic callback.  Stop asks the sweep's
``RunControl`` (checked between fused calls) and ends the curve between two of its points.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from nqs_core.events import RunControl
from nqs_core.exact_observables import exact_curve, exact_problem
from nqs_core.run_reference import exact_basis_dim
from nqs_core.sweep import Sweep, SweepEvent, run_sweep

log = logging.getLogger("nqs_lab.sweep")

CURVE_POINTS = 25  # values of the exact curve over the swept range
FINE_MAX_DIM = 5000  # a basis up to this size gets the fine grid (TFIM, 12 sites: 0.1 s per value); larger
# ones only the swept values (J1-J2 4×4, 12870 states: about 20 s per value on 2 shared cores)


def curve_grid(values: tuple[float, ...], n: int = CURVE_POINTS) -> list[float]:
    """The swept values first, then a fine grid over their range (``n`` values; no repeats): the
    curve's coarse shape comes before its detail.  The swept values stay exactly the sweep's (its
    points then find their exact states in ``exact_state``'s cache)."""
    coarse = [float(v) for v in values]
    seen = {round(v, 12) for v in coarse}
    fine = [round(float(v), 12) for v in np.linspace(min(values), max(values), n)] if n else []
    return list(dict.fromkeys([*coarse, *(v for v in fine if v not in seen)]))


@dataclass(frozen=True)
class CurvePoint:
    """One value of the exact curve: ``exact_observables`` of the ED state there, or ``message`` why none."""

    value: float = math.nan
    observables: dict[str, Any] | None = None
    message: str = ""


class SweepJob:
    """One sweep: its worker, its exact curve, its events (``drain``) and ``stop``."""

    def __init__(self, sweep: Sweep, run_queue: Any = None, name: str = "sweep") -> None:
        self.sweep = sweep
        self.events: queue.Queue = queue.Queue()
        self.control = RunControl()
        self._cancel = threading.Event()
        self._ticket = run_queue.join(f"{name}-sweep") if run_queue is not None else None
        self.thread = threading.Thread(target=self._work, daemon=True, name=f"nqs-sweep-{name}")
        self.curve_thread = threading.Thread(target=self._curve, daemon=True, name=f"nqs-sweep-curve-{name}")

    def start(self) -> "SweepJob":
        """Start the worker: it waits for its run-queue ticket, then starts the exact curve and the points."""
        self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        """Stop after the current fused call (and leave the run queue when still waiting)."""
        self.control.stop()
        self._cancel.set()
        if self._ticket is not None:
            self._ticket.cancel()

    def drain(self) -> list[SweepEvent | CurvePoint]:
        """Every event queued since the last call (call from the event loop)."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def _work(self) -> None:
        ticket = self._ticket
        try:
            if ticket is not None:
                self.events.put(SweepEvent("queued", message="waiting for a free place on this server"))
                if not ticket.wait_for_turn():
                    self.events.put(SweepEvent("stopped", message="cancelled while waiting for a free place"))
                    return
            self.curve_thread.start()  # the exact curve (ED) counts against the ticket too
            run_sweep(self.sweep, callback=self.events.put, control=self.control)
        except Exception as err:  # the page must stay usable
            log.warning("sweep failed: %s", traceback.format_exc())
            self.events.put(SweepEvent("error", message=f"{type(err).__name__}: {err}"))
        finally:
            if self.curve_thread.is_alive():
                self.curve_thread.join()  # the curve's ED holds the place until it ends (Stop ends it too)
            if ticket is not None:
                ticket.release()

    def _curve(self) -> None:
        """The exact curve, one grid value at a time (an ``exact`` event each), or why there is none."""
        s, name = self.sweep.settings, self.sweep.coupling
        why = exact_problem(self.sweep.point_settings(self.sweep.values[0]))
        if why is not None:
            self.events.put(CurvePoint(message=f"no exact curve: {why}"))
            return
        fine = exact_basis_dim(self.sweep.settings) <= FINE_MAX_DIM
        for v in curve_grid(self.sweep.values, CURVE_POINTS if fine else 0):
            if self._cancel.is_set():
                return
            try:
                (point,) = exact_curve(s, name, [v])
            except Exception as err:  # an exact curve is a bonus: say why it is missing
                self.events.put(CurvePoint(message=f"no exact curve: {type(err).__name__}: {err}"))
                return
            if point is not None:
                self.events.put(CurvePoint(v, point))


__all__ = ["CurvePoint", "SweepJob", "curve_grid", "CURVE_POINTS"]
