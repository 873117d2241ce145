"""One compiled VMC step for every value of the couplings: the couplings as run-time arrays.

The engine (``nqs_core.vmc.Engine``) bakes its Hamiltonian's couplings into the compiled step as
constants (``static_settings`` keeps J, J1, J2 and h), so a new coupling compiles a new step.  The
local energy is linear in the couplings, E_loc = Σ_c g_c E_loc^(c), and only the *structure* (bonds,
which spins a connected configuration flips, how many there are) fixes shapes.  ``CouplingHamiltonian``
keeps the structure of a template Hamiltonian and takes the coupling values as (traced) arrays:

* TFIM:         H_σσ = −J Σ_⟨ij⟩ σ_iσ_j,  H_σσ^i = −h  (σ^i: spin i flipped);
* S·S models:   H_σσ = Σ_b g_b σ_iσ_j/4,  H_σσ^{ij} = g_b/2 where σ_i ≠ σ_j, g_b = J (Heisenberg),
  J1 on nearest and J2 on next-nearest bonds (J1-J2);
* energy scale max_c |g_c| (1 when all vanish), the unit of the step's imaginary-time step, as in
  ``Hamiltonian.energy_scale``.

``RuntimeEngine`` wraps an ``Engine`` built for the template (placeholder couplings, all nonzero so
that every bond and flip exists) and binds the values inside the jitted functions, so the steps
and the evaluation compile once per static configuration and are then called with any couplings.
With the same couplings they compute what ``VMC(settings)`` computes (tests/test_sweep.py checks
the energies step by step).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.hamiltonians import COUPLINGS, Hamiltonian
from nqs_core.lattice import Lattice
from nqs_core.settings import RunSettings, schema
from nqs_core.vmc import Engine, VMCState, engine_for, static_settings

PLACEHOLDER = 1.0  # template value of every coupling: nonzero, so no bond or flip is left out
PyTree = Any


def coupling_values(settings: RunSettings) -> dict[str, float]:
    """The couplings of ``settings`` by their user-facing names, unset ones at the model's default
    (``settings.schema`` ``unset``): {"J", "h"} (TFIM), {"J"} (Heisenberg), {"J1", "J2"} (J1-J2)."""
    out = {}
    for name in COUPLINGS[settings.hamiltonian]:
        value = getattr(settings, name)
        if settings.hamiltonian == "j1j2" and name == "J1" and value is None:
            value = settings.J  # J is accepted for J1 (hamiltonians.COUPLING_ALIASES)
        out[name] = float(schema()[name].spec.unset if value is None else value)
    return out


def template_settings(settings: RunSettings) -> RunSettings:
    """``settings`` with every coupling at ``PLACEHOLDER`` and the run-time fields normalised: the
    key of the one compiled step shared by all couplings."""
    placeholders = {name: PLACEHOLDER for name in COUPLINGS[settings.hamiltonian]}
    if settings.hamiltonian == "j1j2":
        placeholders["J"] = None
    return static_settings(settings).replace(**placeholders)


@dataclass(frozen=True)
class CouplingHamiltonian:
    """The structure of ``template`` with coupling ``values`` (arrays; traced inside jit)."""

    template: Hamiltonian
    values: dict[str, jax.Array]

    lattice: Lattice = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lattice", self.template.lattice)

    # the structure (shapes) is the template's
    name = property(lambda self: self.template.name)
    is_ising = property(lambda self: self.template.is_ising)
    conserves_sz = property(lambda self: self.template.conserves_sz)
    convention = property(lambda self: self.template.convention)
    max_conn = property(lambda self: self.template.max_conn)
    flip_sites = property(lambda self: self.template.flip_sites)
    flip_signs = property(lambda self: self.template.flip_signs)

    @property
    def energy_scale(self) -> jax.Array:
        """max_c |g_c|, or 1 when every coupling vanishes (``Hamiltonian.energy_scale``)."""
        scale = jnp.max(jnp.abs(jnp.stack([jnp.asarray(v, jnp.float64) for v in self.values.values()])))
        return jnp.where(scale > 0, scale, 1.0)

    def bond_couplings(self) -> jax.Array:
        """(nb,) g_b of the template's exchange bonds: J, or J1 on the first len(lattice.bonds) and J2 after."""
        bonds, _ = self.template.exchange_bonds
        if self.name == "heisenberg":
            return jnp.full(len(bonds), 1.0) * self.values["J"]
        nearest = np.arange(len(bonds)) < len(self.lattice.bonds)
        return jnp.where(jnp.asarray(nearest), self.values["J1"], self.values["J2"]).astype(jnp.float64)

    def matrix_elements(self, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(diag (B,), mels (B, M)) as ``Hamiltonian.matrix_elements``, with the run-time couplings."""
        s = jnp.asarray(sigma).astype(jnp.float64)
        if self.is_ising:
            b = self.lattice.bonds
            diag = -self.values["J"] * jnp.sum(s[:, b[:, 0]] * s[:, b[:, 1]], axis=1)
            return diag, jnp.full((s.shape[0], self.max_conn), 1.0) * -self.values["h"]
        bonds, _ = self.template.exchange_bonds
        coup = self.bond_couplings()
        si, sj = s[:, bonds[:, 0]], s[:, bonds[:, 1]]
        diag = jnp.sum(0.25 * coup * si * sj, axis=1)
        return diag, jnp.where(si != sj, 0.5 * coup, 0.0)


class RuntimeEngine:
    """The template's ``Engine`` with couplings bound at call time: ``steps(state, hyper, couplings, n)``
    and ``evaluate(params, sampler_state, couplings, per_chain)`` each compile once."""

    def __init__(self, settings: RunSettings):
        self.template = template_settings(settings)
        self.engine: Engine = engine_for(self.template)
        self.names = tuple(COUPLINGS[settings.hamiltonian])

    def bind(self, couplings: dict[str, jax.Array]) -> Engine:
        """The engine with ``couplings`` in place of the template's Hamiltonian (call inside jit)."""
        return dataclasses.replace(self.engine, hamiltonian=CouplingHamiltonian(self.engine.hamiltonian, couplings))

    def couplings(self, values: dict[str, float]) -> dict[str, jax.Array]:
        """float64 scalars for every coupling name of the model."""
        return {name: jnp.asarray(float(values[name]), jnp.float64) for name in self.names}

    @functools.cached_property
    def steps(self):
        @functools.partial(jax.jit, static_argnums=3)
        def run(state: VMCState, hyper: dict[str, jax.Array], couplings: dict[str, jax.Array], n: int):
            return self.bind(couplings).multi_step(state, hyper, n)

        return run

    @functools.cached_property
    def evaluate(self):
        @functools.partial(jax.jit, static_argnums=3)
        def run(params: PyTree, sampler_state: Any, couplings: dict[str, jax.Array], per_chain: int):
            return self.bind(couplings).evaluate_fn(params, sampler_state, per_chain)

        return run

    def init(self, seed: int) -> VMCState:
        """The state ``VMC(settings).init()`` makes from ``seed`` (same keys, same split), with no weakly
        typed leaf (optax's injected step count is one), so the steps after the first reuse its compilation."""
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=x.dtype), self.engine.init_state(seed))


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _runtime_engine(template: RunSettings) -> RuntimeEngine:
    return RuntimeEngine(template)


def runtime_engine_for(settings: RunSettings) -> RuntimeEngine:
    """One ``RuntimeEngine`` (and so one compiled step) per static configuration, couplings excluded."""
    with _LOCK:
        return _runtime_engine(template_settings(settings))
