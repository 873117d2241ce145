"""Export a run (history as CSV and JSON, the engine's checkpoint) and load one to view it again.

Two files load back: the JSON written by :func:`run_json` (settings, history, reference, summary)
and the checkpoint ``.npz`` written by the engine (``nqs_core.checkpoint``: settings, history and
the whole VMC state).  A checkpoint also restores the state, so the lattice, sign and momentum
pictures of its final samples are drawn again (:func:`checkpoint_pictures`).  Nothing here touches
Panel: loading is tested without a server.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nqs_core.driver import json_safe
from nqs_core.settings import RunSettings

HISTORY_FIELDS = ("step", "energy", "error", "variance", "acceptance", "r_hat", "tau", "grad_norm", "v_score",
                  "seconds", "translation_eigenvalue_re", "translation_eigenvalue_im", "marshall_agreement",
                  "sign_agreement", "fidelity")
OPTIONAL_FIELDS = ("translation_eigenvalue", "marshall_agreement", "sign_agreement", "fidelity")  # None = not measured
N_PICTURE = 64  # configurations drawn from a loaded checkpoint


def history_rows(history: list[Any]) -> list[dict[str, Any]]:
    """Flat rows (CSV columns ``HISTORY_FIELDS``) of StepRecords."""
    rows = []
    for r in history:
        d = r.to_dict()
        te = d.pop("translation_eigenvalue", None)
        d["translation_eigenvalue_re"] = te[0] if te is not None else None
        d["translation_eigenvalue_im"] = te[1] if te is not None else None
        rows.append({k: d.get(k) for k in HISTORY_FIELDS})
    return rows


def history_csv(history: list[Any]) -> str:
    """The history as CSV (empty cells where an observable was not measured)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(HISTORY_FIELDS))
    writer.writeheader()
    for row in history_rows(history):
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def run_json(settings: RunSettings, history: list[Any], reference: dict | None, summary: dict | None) -> str:
    """The exported run: settings, per-step history, reference and summary (loadable again)."""
    return json.dumps(json_safe({"format": "nqs-lab run", "version": 1, "settings": settings.to_dict(),
                              "history": [r.to_dict() for r in history], "reference": reference,
                              "summary": summary}), indent=1)


def _records(dicts: list[dict[str, Any]]) -> list[Any]:
    from nqs_core.driver import StepRecord

    return [StepRecord.from_dict({k: (float("nan") if v is None and k not in OPTIONAL_FIELDS else v)
                                  for k, v in d.items()}) for d in dicts]


def parse_run_json(text: str) -> tuple[RunSettings, list[Any], dict | None, dict | None]:
    """Inverse of :func:`run_json`; raises ValueError with a readable reason."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not a JSON file: {err}") from err
    if not isinstance(data, dict) or "settings" not in data or "history" not in data:
        raise ValueError("not an exported NQS Lab run (needs 'settings' and 'history')")
    settings = RunSettings.from_dict(data["settings"])
    return settings, _records(data["history"]), data.get("reference"), data.get("summary")


@dataclass
class LoadedRun:
    """A run read back from an exported file, ready to be drawn by every view."""

    kind: str  # "json" | "checkpoint"
    settings: RunSettings
    history: list[Any]
    reference: dict | None = None
    summary: dict | None = None
    phase: str = ""  # the checkpoint's phase (done, stopped, paused, diverged, running)
    samples: np.ndarray | None = None  # (n, N) configurations of the restored sampler state
    extra: dict[str, Any] = field(default_factory=dict)  # "configurations", "final_translation"


def checkpoint_pictures(settings: RunSettings, ckpt: Any, n_max: int = N_PICTURE) -> tuple[np.ndarray, dict]:
    """Restore the checkpointed state and compute what the views draw from a state.

    Returns (configurations (n, N) of the restored chains, payloads as computed for a finished run:
    ``configurations`` (log ψ, target sign) and ``final_translation``).
    """
    from app.pictures import state_pictures
    from nqs_core.checkpoint import restore_state
    from nqs_core.vmc import VMC

    vmc = VMC(settings)
    state = restore_state(ckpt, vmc.init())
    samples = np.asarray(vmc.samples(state, n_max))
    return samples, state_pictures(vmc, state.params, samples)


def load_run_file(filename: str, data: bytes, pictures: bool = True) -> LoadedRun:
    """Read an exported run: the JSON of :func:`run_json` or an engine checkpoint (``.npz``).

    Raises ValueError naming what is wrong with the file.
    """
    if not data:
        raise ValueError(f"{filename or 'the file'} is empty")
    if zipfile.is_zipfile(io.BytesIO(data)):
        from nqs_core.checkpoint import load_checkpoint

        fd, path = tempfile.mkstemp(suffix=".npz", prefix="nqs-load-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                ckpt = load_checkpoint(path)
            except ValueError as err:
                raise ValueError(str(err).replace("resume: ", "").replace(path, filename or "the file")) from None
        finally:
            os.unlink(path)
        settings = RunSettings.from_dict(ckpt.settings)
        settings.validate()
        loaded = LoadedRun(kind="checkpoint", settings=settings, history=_records(ckpt.history),
                           phase=str(ckpt.extra.get("phase", "")))
        if pictures:
            loaded.samples, loaded.extra = checkpoint_pictures(settings, ckpt)
        return loaded
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{filename or 'the file'} is neither a run (JSON) nor a checkpoint (.npz)") from None
    settings, history, reference, summary = parse_run_json(text)
    settings.validate()
    return LoadedRun(kind="json", settings=settings, history=history, reference=reference, summary=summary,
                     phase=str((summary or {}).get("phase", "")))


__all__ = ["HISTORY_FIELDS", "LoadedRun", "history_csv", "history_rows", "load_run_file", "parse_run_json",
           "run_json", "checkpoint_pictures"]
