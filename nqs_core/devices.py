"""Spreading a run over every visible JAX device: a 1-D mesh over the Markov chains.

The chains (and so the samples, local energies and the rows of the SR matrices) are split over
a 1-D ``jax.sharding.Mesh`` of devices along the axis ``"chains"``; parameters and optimizer
state are replicated.  The driver places the VMC state with :func:`place_state` and compiles
the step with these shardings, and XLA's sharding propagation turns the sample means inside
the step into all-reduces.  On one device the placement is a no-op.

Several machines: set ``NQS_DISTRIBUTED=1`` to call ``jax.distributed.initialize()`` before
the first computation.  Its arguments come from ``NQS_COORDINATOR_ADDRESS`` (host:port of
process 0), ``NQS_NUM_PROCESSES`` and ``NQS_PROCESS_ID`` when set, otherwise from JAX's own
detection (Slurm, Open MPI, TPU pods, or ``JAX_COORDINATOR_ADDRESS``).  ``jax.devices()`` is
then global, and the same mesh spans every process.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

CHAIN_AXIS = "chains"

_distributed_initialized = False


def distributed_requested() -> bool:
    """True when ``NQS_DISTRIBUTED`` asks for ``jax.distributed.initialize()``."""
    return os.environ.get("NQS_DISTRIBUTED", "").strip().lower() in ("1", "true", "yes", "on")


def initialize_distributed() -> bool:
    """Call ``jax.distributed.initialize()`` once if ``NQS_DISTRIBUTED=1``; return whether it ran.

    Must run before JAX computes anything (the CLI and :func:`nqs_core.driver.run` call it first).
    """
    global _distributed_initialized
    if _distributed_initialized or not distributed_requested():
        return _distributed_initialized
    kwargs: dict[str, Any] = {}
    if os.environ.get("NQS_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = os.environ["NQS_COORDINATOR_ADDRESS"]
    for env, name in (("NQS_NUM_PROCESSES", "num_processes"), ("NQS_PROCESS_ID", "process_id")):
        if os.environ.get(env):
            try:
                kwargs[name] = int(os.environ[env])
            except ValueError:
                raise ValueError(f"{env} must be an integer; got {os.environ[env]!r}") from None
    jax.distributed.initialize(**kwargs)
    _distributed_initialized = True
    return True


def usable_device_count(n_chains: int, n_devices: int | None = None) -> int:
    """The largest number of devices ≤ the visible count that divides the number of chains."""
    n = len(jax.devices()) if n_devices is None else n_devices
    return max(d for d in range(1, max(1, min(n, n_chains)) + 1) if n_chains % d == 0)


def chain_mesh(n_chains: int) -> Mesh:
    """A 1-D mesh (axis ``"chains"``) over as many devices as split the chains evenly."""
    devices = jax.devices()
    return Mesh(np.array(devices[: usable_device_count(n_chains, len(devices))]), (CHAIN_AXIS,))


def chain_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (chain or sample) axis split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(CHAIN_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same value on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def _names(path: tuple[Any, ...]) -> list[str]:
    out = []
    for entry in path:
        for attr in ("name", "key"):
            if hasattr(entry, attr):
                out.append(str(getattr(entry, attr)))
                break
    return out


def state_shardings(state: Any, n_chains: int, mesh: Mesh) -> Any:
    """A pytree of shardings for ``state``: per-chain arrays of the sampler split, the rest replicated.

    A leaf counts as per-chain when it lives under a ``sampler`` field of the state and its
    leading dimension is the number of chains (σ (C, N), per-chain keys, log ψ caches, …).
    """
    split, whole = chain_sharding(mesh), replicated(mesh)
    n_dev = mesh.devices.size

    def pick(path: tuple[Any, ...], leaf: Any) -> NamedSharding:
        shape = getattr(leaf, "shape", ())
        in_sampler = "sampler" in _names(path)
        if in_sampler and len(shape) >= 1 and shape[0] == n_chains and n_chains % n_dev == 0:
            return split
        return whole

    return jax.tree_util.tree_map_with_path(pick, state)


def is_prng_key(leaf: Any) -> bool:
    """Whether ``leaf`` is a typed PRNG key array (``jax.random.key``), which has no plain NumPy form."""
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def place_state(state: Any, shardings: Any) -> Any:
    """Put every leaf of ``state`` on its sharding.

    One process: ``jax.device_put``.  Several processes (``jax.distributed``): every process holds
    the same full state (same seed or the same checkpoint), and each builds its own shards with
    ``jax.make_array_from_callback``; PRNG keys (replicated) go through ``device_put``.
    """
    if jax.process_count() == 1:
        return jax.device_put(state, shardings)

    def put(leaf: Any, sharding: NamedSharding) -> Any:
        if is_prng_key(leaf):
            return jax.device_put(leaf, sharding)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(put, state, shardings)


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy of a (possibly sharded, possibly multi-process) array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def describe_devices(n_used: int) -> str:
    """E.g. ``"2 of 2 cpu devices"``."""
    devices = jax.devices()
    kinds = sorted({d.platform for d in devices})
    return f"{n_used} of {len(devices)} {'/'.join(kinds)} device{'s' if len(devices) != 1 else ''}"
