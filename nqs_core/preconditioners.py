"""Preconditioners: objects that turn the samples of one step into (g, d), the energy gradient
g = 2 Re⟨ΔO* ΔE⟩ and the direction d fed to the optax chain (``nqs_core.optimizers``).

Chosen once per engine by :func:`preconditioner_for` (never re-decided inside the step):

* ``Gradient``: d = g (one reverse pass over the batch); for sgd, adam, adamw;
* ``DenseSR``: d = (S + λ)⁻¹ g from the Jacobian (Sorella 1998; the real-parameter form);
* ``HolomorphicDenseSR``: the same d from the complex Jacobian of a holomorphic network;
* ``MomentsSR``: the same d from a model's own moments of O (the RBM: no Jacobian);
* ``CGSR``: the same d by matrix-free conjugate gradients (jvp/vjp, NetKet's default solver);
* ``MinSR``: d = Ōᵀ(ŌŌᵀ + λ)⁻¹ε̄ in sample space (Chen & Heyl, Nat. Phys. 2024).

Any of them composes with any optax transformation (e.g. SR + Adam): the engine applies
``optimizers.optimizer_chain`` to d.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from nqs_core.models import has_fast_path, is_holomorphic
from nqs_core.optimizers import (
    RealRavel,
    gradient_from_jacobian,
    gradient_vjp,
    jacobian,
    jacobian_holomorphic,
    minsr,
    sr_cg,
    sr_dense,
    sr_dense_holomorphic,
    sr_from_moments,
)

PyTree = Any


class Preconditioner(Protocol):
    """``(model, params, σ (B, N), E_loc (B,), weights (B,), λ) -> (g, d)``, real vectors over θ."""

    name: str

    def __call__(self, model: nn.Module, params: PyTree, sigma: jax.Array, e_loc: jax.Array,
                 weights: jax.Array, diag_shift: jax.Array) -> tuple[jax.Array, jax.Array]: ...


@dataclass(frozen=True)
class Gradient:
    name: str = "gradient"

    def __call__(self, model, params, sigma, e_loc, weights, diag_shift):
        g = gradient_vjp(model.apply, params, sigma, e_loc, weights)
        return g, g


@dataclass(frozen=True)
class DenseSR:
    product_dtype: Any = None  # float32: the S = O†O product in float32 (dtype="mixed"), else O's precision
    name: str = "dense SR"

    def __call__(self, model, params, sigma, e_loc, weights, diag_shift):
        o = jacobian(model.apply, params, sigma)
        return gradient_from_jacobian(o, e_loc, weights), sr_dense(o, e_loc, weights, diag_shift, self.product_dtype)


@dataclass(frozen=True)
class HolomorphicDenseSR:
    name: str = "dense SR (holomorphic)"

    def __call__(self, model, params, sigma, e_loc, weights, diag_shift):
        o_c = jacobian_holomorphic(model.apply, params, sigma)
        d = sr_dense_holomorphic(o_c, e_loc, weights, diag_shift)
        g_c = 2.0 * (jnp.conj(o_c - weights @ o_c).T @ (weights * (e_loc - weights @ e_loc)))
        return jnp.concatenate([g_c.real, g_c.imag]), d


@dataclass(frozen=True)
class MomentsSR:
    name: str = "dense SR (model moments)"

    def __call__(self, model, params, sigma, e_loc, weights, diag_shift):
        de = e_loc - weights @ e_loc
        second, mean, force = model.apply(params, sigma, weights, de, method="holomorphic_moments")
        return 2.0 * jnp.concatenate([force.real, force.imag]), sr_from_moments(second, mean, force, diag_shift)


@dataclass(frozen=True)
class CGSR:
    name: str = "SR by conjugate gradients"

    def __call__(self, model, params, sigma, e_loc, weights, diag_shift):
        return (gradient_vjp(model.apply, params, sigma, e_loc, weights),
                sr_cg(model.apply, params, sigma, e_loc, weights, diag_shift))


@dataclass(frozen=True)
class MinSR:
    holomorphic: bool = False
    name: str = "MinSR"

    def __call__(self, model, params, sigma, e_loc, weights, diag_shift):
        o = jacobian(model.apply, params, sigma, self.holomorphic)
        return gradient_from_jacobian(o, e_loc, weights), minsr(o, e_loc, weights, diag_shift)


def preconditioner_for(optimizer: str, sr_solver: str, model: nn.Module, ravel: RealRavel,
                       dtype: str = "float64") -> Preconditioner:
    """The preconditioner of an optimizer setting: sr/minsr precondition, sgd/adam/adamw do not;
    ``dtype`` "mixed" forms the dense SR product in float32."""
    holo = is_holomorphic(model) and ravel.all_complex
    if optimizer == "minsr":
        return MinSR(holo)
    if optimizer != "sr":
        return Gradient()
    if sr_solver == "cg":
        return CGSR()
    if holo and has_fast_path(model, "holomorphic_moments"):
        return MomentsSR()
    return HolomorphicDenseSR() if holo else DenseSR(jnp.float32 if dtype == "mixed" else None)
