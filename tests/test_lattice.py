"""Lattice geometry, sublattices, translations and momenta."""

import numpy as np
import pytest

from nqs_core.lattice import make_lattice


@pytest.mark.parametrize("kind,L,bc,n_nn,n_nnn", [
    ("chain", 8, "periodic", 8, 8), ("chain", 8, "open", 7, 6),
    ("square", 4, "periodic", 32, 32), ("square", 4, "open", 24, 18), ("square", 6, "periodic", 72, 72),
])
def test_bond_counts(kind, L, bc, n_nn, n_nnn):
    lat = make_lattice(kind, L, bc)
    assert len(lat.bonds) == n_nn and len(lat.next_bonds) == n_nnn
    assert np.all(lat.bonds[:, 0] < lat.bonds[:, 1])


@pytest.mark.parametrize("kind,L", [("chain", 10), ("square", 4)])
def test_nearest_neighbours_are_on_opposite_sublattices(kind, L):
    lat = make_lattice(kind, L)
    assert np.all(lat.sublattice[lat.bonds[:, 0]] != lat.sublattice[lat.bonds[:, 1]])
    assert np.all(lat.sublattice[lat.next_bonds[:, 0]] == lat.sublattice[lat.next_bonds[:, 1]])


@pytest.mark.parametrize("kind,L", [("chain", 6), ("square", 3)])
def test_translations_form_the_group_and_preserve_bonds(kind, L):
    lat = make_lattice(kind, L)
    T, r = lat.translations, lat.displacements
    assert len(T) == lat.n_sites and len({tuple(p) for p in T}) == len(T)
    bondset = {tuple(b) for b in lat.bonds}
    for t in range(len(T)):
        # shift(σ, r)_i = σ_{x_i + r}
        np.testing.assert_array_equal(lat.coords[T[t]], np.mod(lat.coords + r[t], L))
        moved = {tuple(sorted((T[t][i], T[t][j]))) for i, j in lat.bonds}
        assert moved == bondset


def test_momenta_and_validation():
    lat = make_lattice("square", 4)
    assert len(lat.momenta()) == 16
    np.testing.assert_allclose(lat.momentum_index([1, 0.5]), [np.pi, np.pi / 2])
    with pytest.raises(ValueError, match="multiple of 2/L"):
        make_lattice("chain", 6).momentum_index([0.5])
    with pytest.raises(ValueError, match="L must be"):
        make_lattice("chain", 1)
    with pytest.raises(ValueError, match="bc must be"):
        make_lattice("chain", 4, "twisted")
