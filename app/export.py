"""Export a run (history as CSV and JSON, the engine's checkpoint) and load one to view it again.

Two files load back: the JSON written by :func:`run_json` (settings, history, reference, summary)
and the checkpoint ``.npz`` written by the engine (``nqs_core.checkpoint``: settings, history and
the whole VMC state).  A checkpoint also restores the state, so the lattice, sign and momentum
pictures of its final samples are drawn again (:func:`checkpoint_pictures`).  Nothing here touches
Panel: loading is tested without a server.

A loaded file comes from a browser (``app.upload``): its size is checked first, it is parsed as
JSON or as an ``.npz`` with ``allow_pickle=False`` (nothing is unpickled), every value the views
compute with is checked for its type, and a checkpoint is read from a file named here inside the
session's folder, never after the uploaded name.  Every refusal is a ValueError with a reason.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.upload import SessionFolder, check_size, display_name, max_upload_bytes, megabytes
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


NUMBER_FIELDS = ("energy", "error", "variance", "acceptance", "r_hat", "tau", "grad_norm", "v_score", "seconds")


def _number(value: Any, what: str, optional: bool = False) -> float | None:
    """A JSON number as float (None, and NaN when not ``optional``, for a missing value); else ValueError."""
    if value is None:
        return None if optional else float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is {type(value).__name__} {str(value)[:40]!r}, not a number")
    return float(value)


def _record(d: Any, i: int) -> Any:
    """One StepRecord from an exported dict, every field checked for its type."""
    from nqs_core.driver import StepRecord

    if not isinstance(d, dict):
        raise ValueError(f"history entry {i} is not an object")
    step = d.get("step", i)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"history entry {i}: step {str(step)[:20]!r} is not a step number")
    values = {k: _number(d.get(k), f"history entry {i}: {k}") for k in NUMBER_FIELDS}
    for k in ("marshall_agreement", "sign_agreement", "fidelity"):
        values[k] = _number(d.get(k), f"history entry {i}: {k}", optional=True)
    te = d.get("translation_eigenvalue")
    if te is not None:
        if not isinstance(te, (list, tuple)) or len(te) != 2:
            raise ValueError(f"history entry {i}: translation_eigenvalue is not a pair (re, im)")
        te = (_number(te[0], f"history entry {i}: translation_eigenvalue"),
              _number(te[1], f"history entry {i}: translation_eigenvalue"))
    return StepRecord(step=step, translation_eigenvalue=te, **values)


def _records(dicts: Any) -> list[Any]:
    if not isinstance(dicts, list):
        raise ValueError("its history is not a list of steps")
    return [_record(d, i) for i, d in enumerate(dicts)]


def _settings(d: Any) -> RunSettings:
    """RunSettings from an exported dict, validated (SettingsError, a ValueError, names the setting)."""
    if not isinstance(d, dict):
        raise ValueError("its settings are not an object")
    try:
        settings = RunSettings.from_dict(d)
    except TypeError as err:  # a value of the wrong kind where the dataclass expects another
        raise ValueError(f"its settings cannot be read: {err}") from None
    return settings.validate()


REFERENCE_NUMBERS = ("energy", "energy_per_site", "E", "e0", "value")
SUMMARY_NUMBERS = ("final_energy", "final_error", "relative_error")


def _mapping(value: Any, what: str, numbers: tuple[str, ...]) -> dict | None:
    """A loaded reference or summary: an object whose number fields are numbers (or absent)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"its {what} is not an object")
    for key in numbers:
        _number(value.get(key), f"its {what}'s {key}", optional=True)
    return value


def _reference(value: Any) -> dict | None:
    """A loaded reference; the per-sector energies the momentum view draws are checked too."""
    ref = _mapping(value, "reference", REFERENCE_NUMBERS)
    if ref is None:
        return None
    sectors = ref.get("sector_energies")
    if sectors is not None:
        if not isinstance(sectors, list) or not all(isinstance(s, dict) for s in sectors):
            raise ValueError("its reference's sector energies are not a list of objects")
        for s in sectors:
            _number(s.get("energy"), "a sector energy")
            k = s.get("k_over_pi")
            if not isinstance(k, list) or not k or len(k) > 2:
                raise ValueError("a sector's momentum is not a list of one or two numbers")
            for x in k:
                _number(x, "a sector's momentum")
    ground = ref.get("ground_momentum_over_pi")
    if ground is not None:
        if not isinstance(ground, list) or not ground or len(ground) > 2:
            raise ValueError("its reference's ground-state momentum is not a list of one or two numbers")
        for x in ground:
            _number(x, "the ground-state momentum")
    return ref


def parse_run_json(text: str) -> tuple[RunSettings, list[Any], dict | None, dict | None]:
    """Inverse of :func:`run_json`; raises ValueError with a readable reason."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not a JSON file: {err}") from err
    except RecursionError:
        raise ValueError("not an exported NQS Lab run (its JSON is nested too deeply)") from None
    if not isinstance(data, dict) or "settings" not in data or "history" not in data:
        raise ValueError("not an exported NQS Lab run (needs 'settings' and 'history')")
    return (_settings(data["settings"]), _records(data["history"]), _reference(data.get("reference")),
            _mapping(data.get("summary"), "summary", SUMMARY_NUMBERS))


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


def _check_archive(filename: str, data: bytes, limit: int) -> None:
    """An .npz must hold plain arrays that unpack to at most ``limit`` bytes (no zip bomb)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"{display_name(filename)} is not a readable .npz archive ({err})") from None
    unpacked = sum(i.file_size for i in infos)
    if unpacked > limit:
        raise ValueError(f"{display_name(filename)} unpacks to {megabytes(unpacked)}, more than the "
                         f"{megabytes(limit)} this server accepts for a loaded run (NQS_MAX_UPLOAD_MB)")


def _read_checkpoint(filename: str, data: bytes, folder: SessionFolder | Path | None) -> Any:
    """The engine's checkpoint from uploaded bytes, written to a file named here inside ``folder``
    (the session's; a private temporary folder when None) and deleted after reading."""
    from nqs_core.checkpoint import load_checkpoint

    if folder is None:
        with tempfile.TemporaryDirectory(prefix="nqs-load-") as private:
            return _read_checkpoint(filename, data, Path(private))
    if isinstance(folder, SessionFolder):
        path = folder.write(data, ".npz")
    else:
        path = Path(tempfile.mkstemp(suffix=".npz", prefix="upload-", dir=folder)[1])
        path.write_bytes(data)
    try:
        try:
            return load_checkpoint(path)
        except ValueError as err:
            if "allow_pickle" in str(err):
                raise ValueError(f"{display_name(filename)} holds pickled Python objects, which are never "
                                 "loaded here (a checkpoint holds plain arrays only)") from None
            text = str(err).replace("resume: ", "").replace(repr(str(path)), display_name(filename))
            raise ValueError(text.replace(str(path), display_name(filename))) from None
        except (KeyError, TypeError, AttributeError) as err:  # a readable archive without the checkpoint's fields
            raise ValueError(f"{display_name(filename)} is not an NQS Lab checkpoint (missing or wrong {err})") from None
    finally:
        path.unlink(missing_ok=True)


def load_run_file(filename: str, data: bytes, pictures: bool = True,
                  folder: SessionFolder | Path | None = None) -> LoadedRun:
    """Read an exported run: the JSON of :func:`run_json` or an engine checkpoint (``.npz``).

    ``filename`` is the name the browser sent: shown in messages, never used as a path; a
    checkpoint is read from a file inside ``folder`` (the session's).  Raises ValueError naming
    what is wrong with the file (too large, not JSON or .npz, a value of the wrong type).
    """
    name, limit = display_name(filename), max_upload_bytes()
    if not data:
        raise ValueError(f"{name} is empty")
    check_size(filename, len(data), limit)
    if zipfile.is_zipfile(io.BytesIO(data)):
        _check_archive(filename, data, limit)
        ckpt = _read_checkpoint(filename, data, folder)
        settings = _settings(ckpt.settings)
        phase = ckpt.extra.get("phase", "") if isinstance(ckpt.extra, dict) else ""
        loaded = LoadedRun(kind="checkpoint", settings=settings, history=_records(ckpt.history), phase=str(phase))
        if pictures:
            try:
                loaded.samples, loaded.extra = checkpoint_pictures(settings, ckpt)
            except (TypeError, KeyError, IndexError) as err:  # arrays of another shape than the settings need
                raise ValueError(f"{name}: its arrays do not fit its settings ({type(err).__name__}: {err})") from None
        return loaded
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{name} is neither a run (JSON) nor a checkpoint (.npz)") from None
    settings, history, reference, summary = parse_run_json(text)
    return LoadedRun(kind="json", settings=settings, history=history, reference=reference, summary=summary,
                     phase=str((summary or {}).get("phase", "")))


__all__ = ["HISTORY_FIELDS", "LoadedRun", "history_csv", "history_rows", "load_run_file", "parse_run_json",
           "run_json", "checkpoint_pictures"]
