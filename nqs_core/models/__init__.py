"""Wavefunction models: ``make_model(settings, lattice)`` builds base network → Marshall prior →
momentum projection → point-group projection (outermost, only with ``point_group`` set), as fixed in
docs/ARCHITECTURE.md.

Every model is a Flax module with ``model.apply(params, σ (B, N)) -> log ψ (B,)`` complex.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from nqs_core.lattice import Lattice
from nqs_core.models.fast_path import has_fast_path  # noqa: F401  (re-exported)
from nqs_core.models.jastrow import Jastrow
from nqs_core.models.rbm import RBM
from nqs_core.models.sign import MarshallSign

if TYPE_CHECKING:
    from nqs_core.settings import RunSettings

PARAM_DTYPES = {"float32": jnp.complex64, "float64": jnp.complex128, "mixed": jnp.complex128}

__all__ = ["RBM", "Jastrow", "MarshallSign", "make_model", "make_forward", "param_dtype", "is_holomorphic",
           "has_fast_path"]


def param_dtype(settings: "RunSettings"):
    """complex64 for precision float32, complex128 for float64 and mixed (``RunSettings.precision``)."""
    if settings.precision not in PARAM_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(PARAM_DTYPES)}; got {settings.dtype!r}")
    return PARAM_DTYPES[settings.precision]


def is_holomorphic(model: nn.Module) -> bool:
    """True when log ψ is a holomorphic function of complex parameters (enables a cheaper Jacobian)."""
    return bool(getattr(model, "holomorphic", False))


def _base_model(settings: "RunSettings", lattice: Lattice) -> nn.Module:
    dtype = param_dtype(settings)
    if settings.model == "rbm":
        return RBM(alpha=settings.alpha, param_dtype=dtype)
    if settings.model == "jastrow":
        return Jastrow(param_dtype=dtype)
    if settings.model == "convnext":
        try:
            from nqs_core.models.convnext import ConvNeXt  # local: optional part, a missing one is a setting error
        except ImportError as e:  # pragma: no cover - depends on the ConvNeXt part being present
            raise ValueError(f"model=convnext is not available in this build ({e})") from e
        return ConvNeXt.from_settings(settings, lattice)
    raise ValueError(f"model must be one of rbm, jastrow, convnext; got {settings.model!r}")


def make_model(settings: "RunSettings", lattice: Lattice) -> nn.Module:
    """The wavefunction for ``settings`` on ``lattice``: base, then Marshall prior, then momentum projection,
    then the point-group projection (``point_group`` ≠ none; it shares the parameter tree of what it wraps)."""
    model = _base_model(settings, lattice)
    if settings.sign == "marshall":
        if not lattice.is_bipartite:
            raise ValueError("sign=marshall needs a bipartite lattice (even L when periodic)")
        model = MarshallSign(model, tuple(int(v == 0) for v in lattice.sublattice))
    elif settings.sign != "none":
        raise ValueError(f"sign must be one of none, marshall; got {settings.sign!r}")
    if settings.k is not None:
        try:
            from nqs_core.models.symmetry import MomentumProjection  # local: optional part (see above)
        except ImportError as e:  # pragma: no cover - depends on the symmetry part being present
            raise ValueError(f"momentum projection (setting k) is not available in this build ({e})") from e
        model = MomentumProjection.from_settings(model, settings, lattice)
    if settings.point_group != "none":
        from nqs_core.models.symmetry import project_point_group  # local, as above

        model = project_point_group(model, lattice, settings.point_group, settings.k)
    return model


def _single(params: Any) -> Any:
    """``params`` with float64 → float32 and complex128 → complex64 leaves."""
    narrow = {jnp.dtype(jnp.float64): jnp.float32, jnp.dtype(jnp.complex128): jnp.complex64}
    return jax.tree_util.tree_map(lambda x: x.astype(narrow.get(jnp.dtype(x.dtype), x.dtype)), params)


def make_forward(settings: "RunSettings", lattice: Lattice, model: nn.Module) -> Callable[[Any, jax.Array], jax.Array]:
    """``(params, σ) -> log ψ(σ)`` for the forward-only passes of a step (sampling, local energies):
    ``model.apply``, or in mixed precision the same network in float32
    arithmetic, from the float64 parameters rounded once per call (mixed precision as in
    Micikevicius et al., ICLR 2018: float32 passes, float64 master weights and updates; the Jacobian,
    gradient and linear solve use ``model`` itself)."""
    if settings.precision != "mixed":
        return model.apply
    fast = make_model(settings.replace(dtype="float32"), lattice)
    return lambda params, sigma: fast.apply(_single(params), sigma)
