"""Spreading a run over every visible JAX device: a 1-D mesh over the Markov chains.

The chains (and so the samples, local energies and the rows of the SR matrices) are split over
a 1-D ``jax.sharding.Mesh`` of devices along the axis ``"chains"``; parameters and optimizer
state are replicated.  The driver places the VMC state with :func:`place_state` and compiles
the step with these shardings, and XLA's sharding propagation turns the sample means inside
the step into all-reduces.  On one device the placement is a no-op.

Per-sample work whose shapes depend on the data (the compacted local energies, the Jacobian in
chunks) is not left to sharding propagation, which would gather the samples onto every device:
:func:`per_device` runs it with ``jax.shard_map`` on each device's own samples, under the mesh the
engine's step traces with (``jax.sharding.use_abstract_mesh``).

One CPU, several devices: :func:`split_cpu_into_cores` makes XLA's host platform one device per core
(``jax_num_cpu_devices``) before JAX starts, so the chains' halves run on both cores of a 2-core
machine (issue 8: the ConvNeXt 4×4 step 3.7 → 5.9 steps/s).  ``NQS_CPU_DEVICES=N`` chooses N (1 turns
it off); an ``XLA_FLAGS`` device count or a distributed run is left as it is.

Several machines: set ``NQS_DISTRIBUTED=1`` to call ``jax.distributed.initialize()`` before
the first computation.  Its arguments come from ``NQS_COORDINATOR_ADDRESS`` (host:port of
process 0), ``NQS_NUM_PROCESSES`` and ``NQS_PROCESS_ID`` when set, otherwise from JAX's own
detection (Slurm, Open MPI, TPU pods, or ``JAX_COORDINATOR_ADDRESS``).  ``jax.devices()`` is
then global, and the same mesh spans every process.
"""

from __future__ import annotations

import os
from typing import Any, Callable

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


def start_devices() -> None:
    """At a process's entry (``nqs run``/``sweep``/``warm``, a run worker), before anything computes: one CPU
    device per core (:func:`split_cpu_into_cores`), then ``jax.distributed`` where asked
    (:func:`initialize_distributed`).  Not inside ``driver.run``: a server's threads keep the devices it has."""
    split_cpu_into_cores()
    initialize_distributed()


def split_cpu_into_cores() -> None:
    """One CPU device per core (``NQS_CPU_DEVICES`` overrides), if JAX has not started its backends yet.

    Call before the first computation (:func:`start_devices` does).  Left alone: a device count set
    elsewhere (``XLA_FLAGS``, a distributed run), or a process where JAX computes already (its devices stay).
    """
    if distributed_requested() or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    text = os.environ.get("NQS_CPU_DEVICES", "").strip()
    try:
        n = int(text) if text else len(os.sched_getaffinity(0))
        if n < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"NQS_CPU_DEVICES must be a whole number of devices ≥ 1; got {text!r}") from None
    if n > 1 and jax.config.jax_num_cpu_devices != n:
        try:
            jax.config.update("jax_num_cpu_devices", n)
        except RuntimeError:  # the backends are up: this process keeps the devices it has
            pass


def per_device(fn: Callable[..., Any], split: tuple[bool, ...]) -> Callable[..., Any]:
    """``fn`` run by each device of the tracing mesh on its own share of the samples (``jax.shard_map``):
    argument i split along its leading (sample) axis where ``split[i]``, else the same on every device
    (pass the parameters as arguments: a sharded array closed over does not enter ``shard_map``);
    the output is split along its leading axis.  Without a mesh of several devices: ``fn`` itself."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or CHAIN_AXIS not in mesh.axis_names or mesh.shape[CHAIN_AXIS] == 1:
        return fn
    specs = tuple(PartitionSpec(CHAIN_AXIS) if s else PartitionSpec() for s in split)
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(CHAIN_AXIS), check_vma=False)


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
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf  # placed already (Engine.init_state places its state)
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
