"""Whether a model offers a fast path (``flip_ratios``, ``holomorphic_moments``): one test for the engine
and for the wrappers (Marshall prior, momentum projection) that pass their base's fast paths through."""

from __future__ import annotations

import flax.linen as nn


def has_fast_path(model: nn.Module, method: str) -> bool:
    """Whether ``model`` offers the fast path ``method``; a wrapper answers through ``has_<method>``, since
    it defines the method whether or not its base network supports it."""
    return bool(getattr(model, f"has_{method}", callable(getattr(type(model), method, None))))


__all__ = ["has_fast_path"]
