"""The physical problem of a run: its lattice and Hamiltonian, built from ``RunSettings``.

Below the engine (``nqs_core.vmc``), so that the references, the run's reference lookup and the
app can build the Hamiltonian of a run without importing the VMC layer.
"""

from __future__ import annotations

from nqs_core.hamiltonians import Hamiltonian, make_hamiltonian
from nqs_core.lattice import Lattice, make_lattice
from nqs_core.settings import RunSettings


def build_problem(settings: RunSettings) -> tuple[Lattice, Hamiltonian]:
    """Lattice and Hamiltonian for ``settings``."""
    lattice = make_lattice(settings.lattice, settings.L, settings.bc)
    ham = make_hamiltonian(settings.hamiltonian, lattice, J=settings.J, J1=settings.J1, J2=settings.J2, h=settings.h)
    return lattice, ham
