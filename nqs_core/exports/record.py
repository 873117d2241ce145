"""A finished run's saved record, from any of the files the project writes.

* the lab's export (``app/export.py``'s ``run_json``, also :func:`record_json` here):
  ``{"format": "nqs-lab run", "version": 1, "settings", "history", "reference", "summary"}``;
* ``nqs run --json``'s output: one JSON object per step, then ``{"summary": {...}}`` (no settings);
* a checkpoint ``.npz`` (``nqs run --checkpoint``, the lab's download): settings, history and the whole
  VMC state (the parameters the Metropolis movie needs), no summary or reference.

``load_record(path, checkpoint=None)`` reads one of them (plus, optionally, the checkpoint of the same
run) into a :class:`RunRecord`; ValueError names what is wrong with the file.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nqs_core.checkpoint import Checkpoint, load_checkpoint
from nqs_core.events import StepRecord
from nqs_core.settings import RunSettings

FORMAT = "nqs-lab run"
OPTIONAL = ("translation_eigenvalue", "marshall_agreement", "sign_agreement", "fidelity")  # None = not measured


@dataclass
class RunRecord:
    """What a saved run holds: settings (None for ``nqs run --json`` output), history, reference, summary,
    and the checkpoint when one was read."""

    source: str
    kind: str  # "json" | "json-lines" | "checkpoint"
    settings: RunSettings | None
    history: list[StepRecord]
    reference: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    checkpoint: Checkpoint | None = None

    @property
    def n_sites(self) -> int | None:
        if self.settings is not None:
            return self.settings.n_sites
        return int(self.summary["n_sites"]) if self.summary and self.summary.get("n_sites") else None

    @property
    def reference_energy(self) -> float | None:
        ref = self.reference or {}
        if ref.get("energy") is not None:
            return float(ref["energy"])
        return float(self.summary["reference_energy"]) if self.summary and self.summary.get("reference_energy") is not None else None


def _records(dicts: list[dict[str, Any]]) -> list[StepRecord]:
    """StepRecords from JSON dicts (a null statistic, written for NaN, reads back as NaN)."""
    return [StepRecord.from_dict({k: (math.nan if v is None and k not in OPTIONAL else v) for k, v in d.items()})
            for d in dicts]


def _reference_of_summary(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The reference as far as a summary names it (energy, method, provenance text)."""
    if not summary or summary.get("reference_energy") is None:
        return None
    return {"energy": summary["reference_energy"], "method": summary.get("reference_method"),
            "provenance": {"detail": summary.get("reference_detail")}, "convention": summary.get("convention")}


def _from_json(text: str, source: str) -> RunRecord:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _from_json_lines(text, source)
    if not isinstance(data, dict) or "settings" not in data or "history" not in data:
        raise ValueError(f"{source} is not a saved NQS Lab run (a run needs 'settings' and 'history')")
    return RunRecord(source, "json", RunSettings.from_dict(data["settings"]).validate(), _records(data["history"]),
                     data.get("reference"), data.get("summary"))


def _from_json_lines(text: str, source: str) -> RunRecord:
    try:
        objs = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ValueError(f"{source} is neither JSON nor JSON lines: {err}") from None
    steps = [o for o in objs if isinstance(o, dict) and "step" in o and "energy" in o]
    summaries = [o["summary"] for o in objs if isinstance(o, dict) and isinstance(o.get("summary"), dict)]
    if not steps and not summaries:
        raise ValueError(f"{source} holds no steps and no summary (expected the output of nqs run --json)")
    summary = summaries[-1] if summaries else None
    return RunRecord(source, "json-lines", None, _records(steps), _reference_of_summary(summary), summary)


def _from_checkpoint(path: Path) -> RunRecord:
    try:
        ckpt = load_checkpoint(path)
    except ValueError as err:
        raise ValueError(str(err).replace("resume: ", "")) from None
    return RunRecord(str(path), "checkpoint", RunSettings.from_dict(ckpt.settings).validate(),
                     _records(ckpt.history), checkpoint=ckpt)


def load_record(path: str | Path, checkpoint: str | Path | None = None) -> RunRecord:
    """The run saved in ``path`` (see the module docstring); ``checkpoint`` adds that run's state and
    settings to a JSON record (its settings must match the record's, when the record has any)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no run file at {str(path)!r}")
    if zipfile.is_zipfile(path):
        record = _from_checkpoint(path)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is neither a run (JSON) nor a checkpoint (.npz)") from None
        record = _from_json(text, str(path))
    if checkpoint is not None:
        extra = _from_checkpoint(Path(checkpoint))
        if record.settings is not None and record.settings != extra.settings:
            raise ValueError(f"checkpoint {checkpoint} belongs to another run (its settings differ from {path}'s)")
        record.settings, record.checkpoint = extra.settings, extra.checkpoint
        if not record.history:
            record.history = extra.history
    return record


def record_json(settings: RunSettings, history: list[StepRecord], reference: dict[str, Any] | None,
                summary: dict[str, Any] | None) -> str:
    """The lab's run format (``format: "nqs-lab run"``, version 1), e.g. of a ``driver.run`` result."""
    from nqs_core.driver import json_safe  # local: the driver loads the engine

    return json.dumps(json_safe({"format": FORMAT, "version": 1, "settings": settings.to_dict(),
                                 "history": [r.to_dict() for r in history], "reference": reference,
                                 "summary": summary}), indent=1, ensure_ascii=False)
