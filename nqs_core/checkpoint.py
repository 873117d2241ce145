"""One-file checkpoints of a VMC run: parameters, optimizer state, sampler state (incl. the PRNG
key), the step counter, the settings and the history.

Format (version 1): a NumPy ``.npz`` archive (no pickles) holding every leaf of the flattened
VMC state as ``leaf_00000 …`` and one JSON document ``meta`` with the format name and version,
the settings, the key path, shape and dtype of every leaf, the history (a list of StepRecord
dicts) and free-form extras.  Typed PRNG keys are stored as their raw key data plus the name of
their implementation.  A state is restored into the tree structure of a freshly initialised
state of the same settings (``restore_state(checkpoint, vmc.init())``), so no class is ever
unpickled, and a mismatch (other settings, other engine version) is a clear error instead of a
silently wrong run.  Writes are atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import jax
import numpy as np

from nqs_core.devices import is_prng_key, to_host

FORMAT = "nqs-lab-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """The contents of a checkpoint file."""

    settings: dict[str, Any]
    leaves: list[np.ndarray]
    leaf_info: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    @property
    def step(self) -> int:
        """Number of completed steps (length of the history)."""
        return len(self.history)


def _flatten(state: Any) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    with_path, _ = jax.tree_util.tree_flatten_with_path(state)
    leaves, info = [], []
    for path, leaf in with_path:
        entry: dict[str, Any] = {"path": jax.tree_util.keystr(path)}
        if is_prng_key(leaf):
            entry["key_impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        arr = to_host(leaf)
        entry["shape"] = list(arr.shape)
        entry["dtype"] = arr.dtype.str
        leaves.append(arr)
        info.append(entry)
    return leaves, info


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def save_checkpoint(
    path: str | os.PathLike[str],
    state: Any,
    settings: dict[str, Any],
    history: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``state`` (any pytree of arrays), settings and history to ``path`` atomically.

    With several JAX processes every process must call this (gathering the sharded chains is a
    collective); only process 0 writes the file.
    """
    path = Path(path)
    leaves, info = _flatten(state)
    if jax.process_index() != 0:
        return path
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "settings": settings,
        "leaves": info,
        "history": history,
        "extra": extra or {},
    }
    arrays = {f"leaf_{i:05d}": a for i, a in enumerate(leaves)}
    arrays["meta"] = np.array(json.dumps(meta, default=_json_default))
    return write_atomically(path, lambda f: np.savez(f, **arrays))


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> Path:
    """``write(f)`` into a temporary file in ``path``'s folder (made if missing), then ``os.replace`` it
    onto ``path``: a reader sees the old file or the new one, never half of it."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; ValueError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"resume: no checkpoint file at {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"resume: cannot read checkpoint {str(path)!r}: not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"resume: {str(path)!r} is not an NQS Lab checkpoint")
            if meta.get("version") != VERSION:
                raise ValueError(f"resume: checkpoint format version {meta.get('version')} is not supported "
                                 f"(this version reads {VERSION})")
            leaves = [np.array(data[f"leaf_{i:05d}"]) for i in range(len(meta["leaves"]))]
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"resume: cannot read checkpoint {str(path)!r}: {err}") from None
    except Exception as err:  # zipfile.BadZipFile and friends
        if isinstance(err, ValueError):
            raise
        raise ValueError(f"resume: cannot read checkpoint {str(path)!r}: {err}") from None
    return Checkpoint(settings=meta["settings"], leaves=leaves, leaf_info=meta["leaves"],
                      history=meta["history"], extra=meta.get("extra", {}), version=meta["version"])


def restore_state(checkpoint: Checkpoint, template: Any) -> Any:
    """The checkpointed state, in the tree structure of ``template`` (a fresh ``vmc.init()``).

    Checks every leaf's key path, shape and dtype against the template.
    """
    with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
    if len(with_path) != len(checkpoint.leaves):
        raise ValueError(f"resume: the checkpoint holds {len(checkpoint.leaves)} arrays but these settings "
                         f"need {len(with_path)}; it was written for a different model or optimizer")
    out = []
    for (path, ref), arr, info in zip(with_path, checkpoint.leaves, checkpoint.leaf_info):
        name = jax.tree_util.keystr(path)
        if info["path"] != name:
            raise ValueError(f"resume: checkpoint array {info['path']} does not match {name} of these settings")
        ref_data = jax.random.key_data(ref) if is_prng_key(ref) else ref
        if tuple(arr.shape) != tuple(ref_data.shape) or np.dtype(arr.dtype) != np.dtype(ref_data.dtype):
            raise ValueError(f"resume: checkpoint array {name} has shape {tuple(arr.shape)} {arr.dtype}, these "
                             f"settings need {tuple(ref_data.shape)} {np.dtype(ref_data.dtype)}")
        if is_prng_key(ref):
            out.append(jax.random.wrap_key_data(arr, impl=info.get("key_impl") or jax.random.key_impl(ref)))
        else:
            out.append(jax.numpy.asarray(arr))
    return jax.tree_util.tree_unflatten(treedef, out)
