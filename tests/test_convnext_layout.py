"""The channels-first ConvNeXt forward equals the straightforward batch-first form of the same
formula (``tests/convnext_reference.py``, the module as first written) on the same parameters.

Both forms run in one compiled program per geometry (run eagerly, the two forwards compiled their
~800 primitives one by one)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import nqs_core  # noqa: F401  (enables x64)
from nqs_core.lattice import make_lattice
from nqs_core.models.convnext import ConvNeXt
from tests.convnext_reference import ConvNeXt as ReferenceConvNeXt
from tests.test_convnext import init, random_configs


@pytest.mark.parametrize("kind,L,bc,patch,kernel,k", [
    ("square", 4, "periodic", 2, 2, (0.0, 0.0)), ("square", 4, "periodic", 2, 2, (1.0, 0.5)),
    ("square", 6, "periodic", 2, 3, (2 / 3, 1 / 3)), ("square", 6, "periodic", 3, 2, (0.0, 0.0)),
    ("chain", 12, "periodic", 3, 4, (0.5,)), ("chain", 8, "open", 2, 3, (0.0,)), ("square", 4, "open", 2, 2, (0.0, 0.0)),
])
def test_channels_first_forward_equals_reference(kind, L, bc, patch, kernel, k):
    lat = make_lattice(kind, L, bc)
    fields = dict(lattice=lat, depth=2, features=5, patch=patch, kernel=kernel, expansion=2, k_over_pi=k)
    model, reference = ConvNeXt(**fields), ReferenceConvNeXt(**fields)
    params = init(model, lat.n_sites, seed=3)
    assert jax.tree.structure(params) == jax.tree.structure(init(reference, lat.n_sites, seed=3))
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, init(reference, lat.n_sites, seed=3))
    sigma = random_configs(lat.n_sites, 64, seed=4, sz_zero=False)

    @jax.jit
    def both(p, s):
        return (model.apply(p, s), reference.apply(p, s),
                model.apply(p, s, method=ConvNeXt.encode), reference.apply(p, s, method=ReferenceConvNeXt.encode))

    got, want, enc, enc_want = map(np.asarray, both(params, sigma))
    scale = np.max(want.real)  # compare ψ on the scale of the largest |ψ| (projections can cancel to ~0)
    np.testing.assert_allclose(np.exp(got - scale), np.exp(want - scale), atol=1e-11)
    np.testing.assert_allclose(enc, enc_want, atol=1e-12)
