"""JAX's persistent compilation cache in a user cache folder, so a second process starts fast.

The folder is ``$NQS_CACHE_DIR/jax`` when ``NQS_CACHE_DIR`` is set, otherwise
``$XDG_CACHE_HOME/nqs-lab/jax`` (``~/.cache/nqs-lab/jax`` by default).  Setting
``NQS_COMPILE_CACHE=0`` turns the cache off (e.g. to measure cold compilation).  Every
compiled program is cached (no minimum compile time), because the lab's steps compile
in seconds on a CPU and that is exactly the wait a user notices.

Processes whose JAX runtime is laid out differently keep their programs apart, in a subfolder
named by :func:`runtime_layout`: JAX's cache key leaves out the host platform's device count
(``--xla_force_host_platform_device_count``, ``jax_num_cpu_devices``: ``devices.split_cpu_into_cores``)
and does not see ``jax.distributed``, so a program compiled for 2 host devices, or in one process of a
distributed run, would otherwise be found under the same key by a plain one-device process (and the
reverse), whose runtime was never built for it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax

_enabled_dir: Path | None = None


def cache_dir() -> Path:
    """The folder that holds the compiled programs (not created here)."""
    root = os.environ.get("NQS_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "jax"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "nqs-lab" / "jax"


def runtime_layout() -> str:
    """The subfolder for this process's runtime: ``""`` (one process, one host device), ``host-devices-N``
    (``XLA_FLAGS=--xla_force_host_platform_device_count=N`` or ``jax_num_cpu_devices = N``), ``distributed``
    (``NQS_DISTRIBUTED=1``), or both."""
    from nqs_core.devices import distributed_requested  # local: devices imports JAX's sharding modules

    parts = []
    forced = re.findall(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    count = int(forced[-1]) if forced else jax.config.jax_num_cpu_devices
    if count > 1:
        parts.append(f"host-devices-{count}")
    if distributed_requested():
        parts.append("distributed")
    return "-".join(parts)


def enable_compile_cache(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at ``path`` (default :func:`cache_dir`), in the subfolder
    :func:`runtime_layout` names when that is not empty.

    Returns the folder in use, or None when disabled by ``NQS_COMPILE_CACHE=0`` or when the
    folder cannot be created (a read-only home must not stop a run).  Idempotent.
    """
    global _enabled_dir
    if os.environ.get("NQS_COMPILE_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    folder = (Path(path).expanduser() if path is not None else cache_dir()) / runtime_layout()
    if _enabled_dir == folder:
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _enabled_dir = folder
    return folder
