"""Closed forms (Bethe ansatz, TFIM free fermions, Majumdar–Ghosh) against exact diagonalisation."""

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from nqs_core import make_hamiltonian, make_lattice
from nqs_core.basis import sparse_matrix
from nqs_core.references.closed_forms import (
    bethe_rapidities,
    closed_form,
    heisenberg_chain_bethe,
    tfim_chain_open,
    tfim_chain_periodic,
)
from nqs_core.references.ed import exact_diagonalization


def plain_ground_energy(ham) -> float:
    """Lowest eigenvalue of the plain sparse matrix (no symmetry used)."""
    H = sparse_matrix(ham)
    if H.shape[0] < 600:
        return float(np.linalg.eigvalsh(H.toarray())[0])
    return float(sla.eigsh(H, k=1, which="SA", v0=np.ones(H.shape[0]))[0][0])


@pytest.mark.parametrize("L", range(4, 21, 2))
def test_bethe_ansatz_equals_ed(L):
    ham = make_hamiltonian("heisenberg", make_lattice("chain", L))
    energy, formula = closed_form(ham)
    assert "Bethe" in formula
    assert energy == pytest.approx(exact_diagonalization(ham, want_vector=False).energy, abs=1e-10)
    if L <= 12:
        assert energy == pytest.approx(plain_ground_energy(ham), abs=1e-10)


def test_bethe_scales_with_J_and_two_site_ring():
    assert heisenberg_chain_bethe(10, 2.5) == pytest.approx(2.5 * heisenberg_chain_bethe(10), rel=1e-14)
    ham = make_hamiltonian("heisenberg", make_lattice("chain", 2), J=1.3)  # one bond: singlet −3J/4
    assert closed_form(ham)[0] == pytest.approx(-0.75 * 1.3, abs=1e-14)


def test_bethe_large_L_approaches_hulthen_with_finite_size_correction():
    """E/N = 1/4 − ln 2 − π²/(12 L²) + O(1/(L² ln³L)) (Hulthén 1938; conformal correction with v = π/2)."""
    L = 200
    e = heisenberg_chain_bethe(L) / L
    assert e == pytest.approx(0.25 - np.log(2) - np.pi**2 / (12 * L**2), abs=1e-7)
    lam = bethe_rapidities(L)
    assert np.all(np.diff(lam) > 0) and np.allclose(lam, -lam[::-1], atol=1e-12)  # ordered, symmetric


@pytest.mark.parametrize("L,J,h", [
    (4, 1.0, 0.4), (7, 1.0, 0.4), (4, 1.0, 1.0), (7, 1.0, 1.0), (3, 1.0, 2.5), (8, 1.0, 2.5),
    (3, -1.0, 0.7), (7, -1.0, 0.7), (4, -1.0, 0.7), (5, 0.6, -1.3), (7, -0.8, -0.5), (6, 1.0, 0.0),
])
def test_tfim_periodic_free_fermions_equal_ed(L, J, h):
    ham = make_hamiltonian("tfim", make_lattice("chain", L), J=J, h=h)
    energy, formula = closed_form(ham)
    assert "free fermions" in formula
    assert energy == pytest.approx(plain_ground_energy(ham), abs=1e-10)


@pytest.mark.parametrize("L,h", [(12, 0.5), (12, 1.0), (13, 1.7)])
def test_tfim_periodic_free_fermions_equal_momentum_ed(L, h):
    ham = make_hamiltonian("tfim", make_lattice("chain", L), h=h)
    assert tfim_chain_periodic(L, 1.0, h) == pytest.approx(exact_diagonalization(ham, want_vector=False).energy, abs=1e-10)


@pytest.mark.parametrize("L,J,h", [(2, 1.0, 0.5), (5, 1.0, 0.5), (10, 1.0, 0.5), (10, 1.0, 1.0), (9, 1.0, 3.0),
                                    (7, -0.7, 1.2)])
def test_tfim_open_free_fermions_equal_ed(L, J, h):
    ham = make_hamiltonian("tfim", make_lattice("chain", L, "open"), J=J, h=h)
    assert tfim_chain_open(L, J, h) == pytest.approx(plain_ground_energy(ham), abs=1e-10)


def test_tfim_thermodynamic_limit_at_criticality():
    """Critical TFIM chain: E/N → −4/π (Pfeuty 1970); the finite-size correction at L = 400 is ~1e-6."""
    assert tfim_chain_periodic(400, 1.0, 1.0) / 400 == pytest.approx(-4 / np.pi, abs=1e-5)


@pytest.mark.parametrize("L", [6, 8, 12])
def test_majumdar_ghosh_equals_ed(L):
    ham = make_hamiltonian("j1j2", make_lattice("chain", L), J1=1.0, J2=0.5)
    energy, formula = closed_form(ham)
    assert "Majumdar" in formula and energy == pytest.approx(-0.375 * L)
    assert energy == pytest.approx(exact_diagonalization(ham, want_vector=False).energy, abs=1e-10)


def test_no_closed_form_where_none_applies():
    assert closed_form(make_hamiltonian("j1j2", make_lattice("chain", 10), J2=0.3)) is None
    assert closed_form(make_hamiltonian("heisenberg", make_lattice("chain", 10, "open"))) is None
    assert closed_form(make_hamiltonian("heisenberg", make_lattice("square", 4))) is None
    # the 4-site ring lists each next-nearest pair once: Majumdar–Ghosh does not apply
    assert closed_form(make_hamiltonian("j1j2", make_lattice("chain", 4), J2=0.5)) is None
