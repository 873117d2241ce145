"""On-disk cache of computed references: one JSON file per setting, keyed by a hash of every setting.

Location: ``$NQS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/nqs-lab``, else ``~/.cache/nqs-lab``;
references live in its ``references/`` folder.  Writes are atomic (temporary file + rename), so
concurrent sessions never read half a file; a corrupt file counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CACHE_VERSION = 1  # bump when a method's results change meaning


def cache_dir() -> Path:
    """The user cache directory of NQS Lab (not created here)."""
    if os.environ.get("NQS_CACHE_DIR"):
        return Path(os.environ["NQS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nqs-lab"


def canonical_key(key: dict[str, Any]) -> str:
    """Stable text of a key: sorted JSON with floats written by repr (so 0.1 and 0.10 agree)."""
    return json.dumps({"cache_version": CACHE_VERSION, **key}, sort_keys=True, separators=(",", ":"))


def cache_path(key: dict[str, Any], suffix: str = ".json") -> Path:
    digest = hashlib.sha256(canonical_key(key).encode()).hexdigest()[:32]
    return cache_dir() / "references" / f"{digest}{suffix}"


def load(key: dict[str, Any]) -> dict[str, Any] | None:
    """The cached result for ``key``, or None (missing, unreadable, or stored under another key)."""
    path = cache_path(key)
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    if stored.get("key") != json.loads(canonical_key(key)):
        return None
    return stored.get("result")


def store(key: dict[str, Any], result: dict[str, Any]) -> Path:
    """Write ``result`` for ``key`` atomically; returns the file written."""
    path = cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"key": json.loads(canonical_key(key)), "result": result}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
