"""Finished runs of a session, kept to be drawn on the same axes as the current one.

A :class:`KeptRun` holds a run's settings and its per-step series (E/N, relative error, Marshall
agreement, exact sign agreement, fidelity, k_x/π from ⟨T_x⟩).  :class:`OverlayStore` keeps the
latest ``MAX_KEPT`` of them, which are shown, and labels each by what differs
(:func:`difference_labels`): the settings whose values are not the same for every kept run and the
current settings, e.g. ``sign prior: none`` and ``sign prior: Marshall``.  Nothing here draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import param

from app.settings import UI
from nqs_core.lattice import momentum_text
from nqs_core.observables import k_over_pi
from nqs_core.settings import RunSettings, schema

MAX_KEPT = 6
MAX_LABEL_SETTINGS = 3  # a label names at most this many differing settings, then "…"
Series = tuple[list[int], list[float]]


def setting_text(name: str, value: Any) -> str:
    """``sign prior: Marshall``, ``J2: 0.3``, ``k: π``: a setting as the sidebar names it."""
    ui = UI.get(name, {})
    label = str(ui.get("short") or ui.get("label") or name).lower() if name not in ("J", "J1", "J2", "h", "L") else name
    if value is None:
        shown = "none" if name == "k" else "off"
    elif name == "k":
        shown = momentum_text(value)
    elif isinstance(value, float):
        shown = f"{value:g}"
    else:
        shown = str(ui.get("names", {}).get(value, value))
    return f"{label}: {shown}"


def differing_settings(runs: Iterable[RunSettings]) -> list[str]:
    """The settings (schema order) whose values are not the same in all of ``runs``."""
    runs = list(runs)
    return [name for name in schema() if len({repr(getattr(r, name)) for r in runs}) > 1]


def difference_labels(runs: list[RunSettings], current: RunSettings | None) -> list[str]:
    """One label per run: its values of the settings that differ among ``runs`` and ``current``."""
    names = differing_settings([*runs, *([current] if current is not None else [])])
    labels = []
    for run in runs:
        parts = [setting_text(n, getattr(run, n)) for n in names[:MAX_LABEL_SETTINGS]]
        if len(names) > MAX_LABEL_SETTINGS:
            parts.append("…")
        labels.append(", ".join(parts) if parts else "same settings as now")
    return labels


def _points(history: list[Any], value: Any) -> Series:
    """(steps, values) of the records where ``value(record)`` is finite."""
    steps, values = [], []
    for r in history:
        v = value(r)
        if v is not None and math.isfinite(v):
            steps.append(int(r.step))
            values.append(float(v))
    return steps, values


def _momentum(record: Any) -> float | None:
    """k_x/π of a record's translation eigenvalue ⟨T_x⟩ (None where not measured), as the Momentum view
    labels it (``nqs_core.observables.k_over_pi``)."""
    t = getattr(record, "translation_eigenvalue", None)
    if t is None:
        return None
    z = np.asarray(t, dtype=float).reshape(-1)
    return k_over_pi(z[0] + 1j * (z[1] if z.size > 1 else 0.0))


def run_series(history: list[Any], n_sites: int, reference_energy: float | None) -> dict[str, Series]:
    """The per-step series of one run: energy (per site), relative error (only with a reference), marshall,
    sign_agreement, fidelity and momentum."""
    def rel(r: Any) -> float | None:
        if reference_energy is None or r.energy is None:
            return None
        return abs(float(r.energy) - reference_energy) / abs(reference_energy) or None

    getters = {"energy": lambda r: None if r.energy is None else float(r.energy) / n_sites, "relative_error": rel,
               "marshall": lambda r: getattr(r, "marshall_agreement", None),
               "sign_agreement": lambda r: getattr(r, "sign_agreement", None),
               "fidelity": lambda r: getattr(r, "fidelity", None), "momentum": _momentum}
    return {name: _points(history, fn) for name, fn in getters.items()}


@dataclass
class KeptRun:
    """A finished run: its number in the session, settings, series and whether it is drawn."""

    number: int
    settings: RunSettings
    series: dict[str, Series]
    visible: bool = True
    label: str = ""
    outcome: str = ""


class OverlayStore(param.Parameterized):
    """The kept runs of a session; ``version`` changes with every change (views watch it)."""

    runs = param.List(default=[], item_type=KeptRun, doc="Kept runs, oldest first")
    shown = param.Integer(default=None, allow_None=True, doc="Number of the run the main views show")
    current = param.ClassSelector(class_=RunSettings, default=None, allow_None=True,
                                  doc="The current settings, against which the labels are made")
    version = param.Integer(default=0)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._count = 0

    def keep(self, settings: RunSettings, history: list[Any], reference_energy: float | None,
             outcome: str = "") -> KeptRun | None:
        """Keep a finished run (None for a run without steps); the oldest goes beyond MAX_KEPT.  A run
        already kept (the same settings and series: a run loaded back after its export) is shown again,
        not kept twice."""
        if not history:
            return None
        series = run_series(history, settings.n_sites, reference_energy)
        run = next((r for r in self.runs if r.settings == settings and r.series == series), None)
        if run is None:
            self._count += 1
            run = KeptRun(self._count, settings, series, outcome=outcome)
            self.runs = [*self.runs, run][-MAX_KEPT:]
        self.shown = run.number
        self._changed()
        return run

    def set_reference(self, energy: float | None) -> None:
        """A reference that came after its run ended (DMRG): the shown run's relative error from it."""
        run = next((r for r in self.runs if r.number == self.shown), None)
        if run is None or energy is None or run.series["relative_error"][0]:
            return
        per_site = energy / run.settings.n_sites
        steps, values = run.series["energy"]
        rel = [(s, abs(e - per_site) / abs(per_site)) for s, e in zip(steps, values) if e != per_site]
        run.series["relative_error"] = ([s for s, _ in rel], [r for _, r in rel])
        self._changed()

    def set_visible(self, numbers: Iterable[int]) -> None:
        """Show the runs numbered ``numbers``, hide the others."""
        chosen = set(numbers)
        if all(run.visible == (run.number in chosen) for run in self.runs):
            return  # the tick that drew the checkboxes sets their value again: nothing to redraw
        for run in self.runs:
            run.visible = run.number in chosen
        self._changed()

    def clear(self) -> None:
        self.runs, self.shown = [], None
        self._changed()

    def release_shown(self) -> None:
        """The main views leave the last kept run (a new run, a reset, a load): it becomes an overlay."""
        if self.shown is not None:
            self.shown = None
            self._changed()

    @param.depends("current", watch=True)
    def _relabel(self) -> None:
        """New current settings: redraw only when a label changes."""
        labels = self._labels()
        if labels != [r.label for r in self.runs]:
            self._changed(labels)

    def _labels(self) -> list[str]:
        return [f"run {run.number} · {label}"
                for run, label in zip(self.runs, difference_labels([r.settings for r in self.runs], self.current))]

    def _changed(self, labels: list[str] | None = None) -> None:
        for run, label in zip(self.runs, self._labels() if labels is None else labels):
            run.label = label
        self.version += 1

    def overlays(self, include_shown: bool = False) -> list[KeptRun]:
        """The visible kept runs, without the one the main views show unless ``include_shown``."""
        return [r for r in self.runs if r.visible and (include_shown or r.number != self.shown)]


__all__ = ["KeptRun", "OverlayStore", "difference_labels", "differing_settings", "run_series", "setting_text",
           "MAX_KEPT"]
