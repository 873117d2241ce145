"""An exact state vector on sorted basis codes, wrapped as a Flax model (shared by the tests)."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


class TableState(nn.Module):
    """log ψ(σ) read from a fixed vector on sorted basis codes (an exact state as a 'model')."""

    codes: tuple[int, ...]
    values: tuple[complex, ...]

    def __call__(self, sigma):
        codes = jnp.asarray(np.asarray(self.codes, dtype=np.int64))
        bits = (jnp.asarray(sigma) > 0).astype(jnp.int64)
        code = bits @ (jnp.int64(1) << jnp.arange(sigma.shape[-1], dtype=jnp.int64))
        idx = jnp.clip(jnp.searchsorted(codes, code), 0, len(self.codes) - 1)
        vals = jnp.asarray(np.asarray(self.values, dtype=np.complex128))
        return jnp.where(codes[idx] == code, jnp.log(vals[idx] + 0j), -jnp.inf + 0j)


def table(codes, vector) -> TableState:
    return TableState(tuple(int(c) for c in codes), tuple(complex(v) for v in vector))
