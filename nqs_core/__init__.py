"""nqs_core: the JAX engine of NQS Lab (lattices, Hamiltonians, neural quantum states, VMC).

Precision: 64-bit types are enabled in JAX at import (``jax_enable_x64``) so that float64 /
complex128 are available; each model and run chooses its own dtype explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)

from nqs_core.lattice import Lattice, make_lattice  # noqa: E402
from nqs_core.hamiltonians import Hamiltonian, make_hamiltonian  # noqa: E402

__all__ = ["Lattice", "make_lattice", "Hamiltonian", "make_hamiltonian"]
__version__ = "0.1.0"
