"""Batches cut into cache-sized chunks.

On a CPU a network pass over tens of thousands of configurations streams every intermediate
through main memory; cut into chunks of ~1k spins (``CHUNK_SITES``) the intermediates stay in
the core's cache.  Measured (CPU time of one XLA thread, J1-J2 ConvNeXt local energies over the
compacted connected configurations of 1024 samples): 4×4 0.45 s in one pass, 0.17 s in chunks of
1024 configurations, 0.11 s in chunks of 64; 6×6 0.94 s in chunks of 512, 0.52 s in chunks of 16.
The per-sample Jacobian (vmapped reverse passes, 1024 samples of the 4×4): 0.12–0.23 s (wall) in
one pass, 0.05 s in chunks of 32–64.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

CHUNK_SITES = {"cpu": 1 << 10}  # spins per network call, per backend
ACCELERATOR_CHUNK_SITES = 1 << 22  # GPUs/TPUs want large batches; this only bounds the memory


def chunk_size(n_sites: int, per_config: int = 1) -> int:
    """Configurations per chunk: the largest power of two ≤ ``CHUNK_SITES / (n_sites · per_config)``
    (at least 8) for the default backend; ``per_config`` counts the copies a computation keeps per
    configuration."""
    sites = CHUNK_SITES.get(jax.default_backend(), ACCELERATOR_CHUNK_SITES)
    return max(8, 1 << int(np.floor(np.log2(max(sites / max(n_sites * per_config, 1), 1)))))


def map_in_chunks(fn: Callable[[jax.Array], Any], x: jax.Array, chunk: int) -> Any:
    """fn(x) for a batch x (leading axis), computed in chunks of ``chunk`` with ``lax.map``; fn's
    outputs (any pytree) have the batch as their leading axis.  The last chunk is padded with
    copies of x[0] and the padding is cut off again."""
    n = x.shape[0]
    if n <= chunk:
        return fn(x)
    k = -(-n // chunk)
    pad = k * chunk - n
    xp = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, *x.shape[1:]))]) if pad else x
    out = jax.lax.map(fn, xp.reshape(k, chunk, *x.shape[1:]))
    return jax.tree.map(lambda y: y.reshape(k * chunk, *y.shape[2:])[:n], out)
