"""Spin-1/2 lattice Hamiltonians in DESIGN.md §2 conventions, with padded connected elements.

* Heisenberg: H = J Σ_⟨ij⟩ S_i·S_j, S = σ/2 (spin operators, not Pauli matrices).
* J1-J2:      H = J1 Σ_⟨ij⟩ S_i·S_j + J2 Σ_⟨⟨ij⟩⟩ S_i·S_j.
* TFIM:       H = −J Σ_⟨ij⟩ σᶻ_i σᶻ_j − h Σ_i σˣ_i (Pauli matrices; Carleo & Troyer 2017).

With S_i·S_j = ¼σᶻ_iσᶻ_j + ½(S⁺_iS⁻_j + S⁻_iS⁺_j), a bond contributes J/4 σ_iσ_j to the diagonal and
J/2 to the configuration with σ_i, σ_j exchanged when they differ.  ``connected`` returns a
fixed number of connected configurations per input (one per bond, or one per site for the
TFIM); padded entries carry matrix element 0 and σ' = σ, so one compiled function serves
every step:  E_loc(σ) = diag(σ) + Σ_m mel_m(σ) ψ(σ'_m)/ψ(σ).

The couplings can be run-time values: the matrix elements are linear in them, and only the structure
(bonds, which spins a connected configuration flips) fixes shapes.  ``matrix_elements(σ, couplings)``
takes ``runtime_couplings()`` of any Hamiltonian with this one's structure as (traced) arrays, so the
engine compiles one step per structure (``structure()``: every coupling nonzero, no bond or flip left
out) and is called with any couplings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.lattice import Lattice

HAMILTONIANS = ("heisenberg", "j1j2", "tfim")
COUPLINGS = {"heisenberg": ("J",), "j1j2": ("J1", "J2"), "tfim": ("J", "h")}  # the user-facing names
COUPLING_ALIASES = {"j1j2": ("J",)}  # J is accepted for J1
RUNTIME_COUPLINGS = ("J", "J2", "h")  # the fields of ``Hamiltonian`` that ``runtime_couplings`` carries
Couplings = Mapping[str, jax.Array]
CONVENTIONS = {
    "heisenberg": "H = J Σ⟨ij⟩ S_i·S_j (spin-1/2 operators S = σ/2)",
    "j1j2": "H = J1 Σ⟨ij⟩ S_i·S_j + J2 Σ⟨⟨ij⟩⟩ S_i·S_j (spin-1/2 operators S = σ/2)",
    "tfim": "H = −J Σ⟨ij⟩ σᶻ_i σᶻ_j − h Σ_i σˣ_i (Pauli matrices)",
}


@dataclass(frozen=True)
class Hamiltonian:
    """One of the three models on a lattice.  ``J`` is J (Heisenberg, TFIM) or J1 (J1-J2)."""

    name: str
    lattice: Lattice
    J: float = 1.0
    J2: float = 0.0
    h: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in HAMILTONIANS:
            raise ValueError(f"hamiltonian must be one of {', '.join(HAMILTONIANS)}; got {self.name!r}")
        for label, value in self.coupling_items():
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"{label} must be a finite number; got {value!r}")

    # ----- description ------------------------------------------------------------------
    def coupling_items(self) -> list[tuple[str, float]]:
        """The couplings that define this model, with their user-facing names."""
        if self.name == "heisenberg":
            return [("J", self.J)]
        if self.name == "j1j2":
            return [("J1", self.J), ("J2", self.J2)]
        return [("J", self.J), ("h", self.h)]

    @property
    def couplings(self) -> dict[str, float]:
        return dict(self.coupling_items())

    def energy_scale(self, couplings: Couplings | None = None) -> jax.Array:
        """The largest |coupling| (1 when all vanish): the unit in which the VMC step measures the
        gradient, so that one learning rate means one imaginary-time step at every field or J.
        ``couplings``: run-time values (``runtime_couplings``), by default this one's."""
        g = self.runtime_couplings() if couplings is None else couplings
        scale = jnp.max(jnp.abs(jnp.stack([jnp.asarray(g[k], jnp.float64) for k in RUNTIME_COUPLINGS])))
        return jnp.where(scale > 0, scale, 1.0)

    def runtime_couplings(self) -> dict[str, jax.Array]:
        """J, J2 and h as float64 scalars (those a model lacks are 0): the run-time values of
        ``matrix_elements``, ``energy_scale`` and ``norm_bound``."""
        return {name: jnp.asarray(float(getattr(self, name)), jnp.float64) for name in RUNTIME_COUPLINGS}

    def structure(self) -> "Hamiltonian":
        """This model with every coupling 1: the same bonds and flips whatever the couplings (J1-J2
        keeps its next-nearest bonds at J2 = 0, the TFIM its field flips at h = 0)."""
        return replace(self, J=1.0, J2=1.0 if self.name == "j1j2" else 0.0, h=1.0 if self.is_ising else 0.0)

    @property
    def convention(self) -> str:
        return CONVENTIONS[self.name]

    @property
    def is_ising(self) -> bool:
        """The transverse-field Ising model H = −J Σ σᶻσᶻ − h Σ σˣ (Pauli matrices); otherwise an S·S
        exchange model (``exchange_bonds``)."""
        return self.name == "tfim"

    @property
    def conserves_sz(self) -> bool:
        """Heisenberg and J1-J2 commute with total Sᶻ: their ground states live in Sᶻ = 0."""
        return not self.is_ising

    @property
    def field(self) -> float:
        """The transverse field h of −h Σ σˣ (0 for the exchange models)."""
        return float(self.h) if self.is_ising else 0.0

    @property
    def nn_coupling(self) -> float:
        """The nearest-neighbour coupling: J of J Σ S·S, J1 of the J1-J2 model, J of −J Σ σᶻσᶻ."""
        return float(self.J)

    @property
    def next_coupling(self) -> float:
        """The next-nearest-neighbour exchange J2 (0 unless J1-J2): H ⊃ J2 Σ⟨⟨ij⟩⟩ S_i·S_j."""
        return float(self.J2) if self.name == "j1j2" else 0.0

    @property
    def basis(self) -> str:
        """The space the ground state is searched in: "Sᶻ = 0" (if ``conserves_sz``) or "full space"."""
        return "Sᶻ = 0" if self.conserves_sz else "full space"

    @property
    def ising_bonds(self) -> tuple[np.ndarray, np.ndarray]:
        """(bonds (nb, 2), couplings (nb,)) of the −J_b σᶻ_iσᶻ_j terms of the TFIM (J_b = J)."""
        if not self.is_ising:
            raise AttributeError(f"{self.name} has no Ising bonds")
        return self.lattice.bonds, np.full(len(self.lattice.bonds), float(self.J))

    def describe(self) -> str:
        c = ", ".join(f"{k}={v:g}" for k, v in self.coupling_items())
        return f"{self.name} ({c}) on the {self.lattice.describe()}"

    # ----- structure --------------------------------------------------------------------
    @cached_property
    def exchange_bonds(self) -> tuple[np.ndarray, np.ndarray]:
        """(bonds (nb, 2), couplings (nb,)) of the S·S terms (Heisenberg, J1-J2)."""
        lat = self.lattice
        if self.name == "heisenberg":
            return lat.bonds, np.full(len(lat.bonds), float(self.J))
        if self.name == "j1j2":
            nn = lat.next_bonds if self.J2 != 0 else np.zeros((0, 2), np.int32)
            bonds = np.concatenate([lat.bonds, nn])
            return bonds, np.concatenate([np.full(len(lat.bonds), float(self.J)), np.full(len(nn), float(self.J2))])
        raise AttributeError("the TFIM has no exchange bonds")

    @property
    def max_conn(self) -> int:
        """Number of (padded) connected configurations per input configuration."""
        if self.is_ising:
            return self.lattice.n_sites if self.h != 0 else 0
        return len(self.exchange_bonds[0])

    @cached_property
    def flip_sites(self) -> np.ndarray:
        """(M, K) int32: connected configuration m is σ with the spins at ``flip_sites[m]`` flipped
        (where its matrix element is nonzero): the two ends of bond m for the S·S terms (a swap of
        unequal spins), site m for the TFIM field.  M = ``max_conn``."""
        if self.name == "tfim":
            return np.arange(self.lattice.n_sites, dtype=np.int32)[:, None][: self.max_conn]
        return np.asarray(self.exchange_bonds[0], dtype=np.int32).reshape(-1, 2)

    @cached_property
    def flip_signs(self) -> np.ndarray:
        """(M, N) int8: −1 at the sites connected configuration m flips, +1 elsewhere."""
        out = np.ones((self.max_conn, self.lattice.n_sites), np.int8)
        out[np.arange(self.max_conn)[:, None], self.flip_sites] = -1
        return out

    def norm_bound(self, couplings: Couplings | None = None) -> jax.Array:
        """An upper bound on the operator norm ‖H‖ by the triangle inequality: ¾|J_b| per S·S bond
        (S_i·S_j has the eigenvalues ¼ and −¾), |J| per σᶻσᶻ bond and |h| per site (TFIM).  Every
        state has |⟨H⟩| ≤ ‖H‖, so an estimated energy far outside it means the run broke down."""
        g = self.runtime_couplings() if couplings is None else couplings
        if self.is_ising:
            return jnp.abs(g["J"]) * len(self.lattice.bonds) + jnp.abs(g["h"]) * self.lattice.n_sites
        return 0.75 * jnp.sum(jnp.abs(self._bond_couplings(g)))

    # ----- the jittable kernels ---------------------------------------------------------
    def _bond_couplings(self, g: Couplings) -> jax.Array:
        """(nb,) coupling of each exchange bond: J, or J1 (= J) on the nearest and J2 on the next bonds."""
        n_bonds, n_nearest = len(self.exchange_bonds[0]), len(self.lattice.bonds)
        nearest = jnp.asarray(np.arange(n_bonds) < n_nearest)
        return jnp.where(nearest, g["J"], g["J2"]).astype(jnp.float64)

    def matrix_elements(self, sigma: jnp.ndarray, couplings: Couplings | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(diag (B,), mels (B, M)) float64 for σ (B, N) with entries ±1: H_σσ and H_σσ'_m, where
        σ'_m = σ · ``flip_signs[m]``; mels_m = 0 where that configuration is not connected (a bond
        of equal spins, a coupling that is 0).  ``couplings``: run-time values (``runtime_couplings``
        of a Hamiltonian with this structure), by default this one's.  Pure and shape-static."""
        g = self.runtime_couplings() if couplings is None else couplings
        s = jnp.asarray(sigma).astype(jnp.float64)
        if self.is_ising:
            b = self.lattice.bonds
            diag = -g["J"] * jnp.sum(s[:, b[:, 0]] * s[:, b[:, 1]], axis=1)
            return diag, jnp.full((s.shape[0], self.max_conn), 1.0, dtype=jnp.float64) * -g["h"]
        bonds = self.exchange_bonds[0]
        coup = self._bond_couplings(g)
        si, sj = s[:, bonds[:, 0]], s[:, bonds[:, 1]]  # (B, nb)
        diag = jnp.sum(0.25 * coup * si * sj, axis=1)
        return diag, jnp.where(si != sj, 0.5 * coup, 0.0)

    def connected(self, sigma: jnp.ndarray, couplings: Couplings | None = None) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """For σ of shape (B, N) with entries ±1, return (diag (B,), σ' (B, M, N), mels (B, M)).

        Pure and shape-static (M = ``max_conn``); padded entries (mel 0) carry σ' = σ.  Matrix
        elements are float64 (the Hamiltonians are real); σ' has σ's dtype.
        """
        sigma = jnp.asarray(sigma)
        diag, mels = self.matrix_elements(sigma, couplings)
        flips = jnp.asarray(self.flip_signs, dtype=sigma.dtype)[None]  # (1, M, N)
        sigma_p = jnp.where((mels != 0)[:, :, None], sigma[:, None, :] * flips, sigma[:, None, :])
        return diag, sigma_p, mels


def make_hamiltonian(
    name: str,
    lattice: Lattice,
    *,
    J: float | None = None,
    J1: float | None = None,
    J2: float | None = None,
    h: float | None = None,
) -> Hamiltonian:
    """Build a Hamiltonian from user-facing settings (J1 is an alias of J for the J1-J2 model).

    Defaults: J = J1 = 1, J2 = 0.5 (the maximally frustrated point), h = 1 (the critical point).
    """
    if name not in HAMILTONIANS:
        raise ValueError(f"hamiltonian must be one of {', '.join(HAMILTONIANS)}; got {name!r}")
    if name == "j1j2":
        j1 = J1 if J1 is not None else (J if J is not None else 1.0)
        return Hamiltonian(name, lattice, J=float(j1), J2=float(0.5 if J2 is None else J2))
    j = float(1.0 if J is None else J)
    if name == "tfim":
        return Hamiltonian(name, lattice, J=j, h=float(1.0 if h is None else h))
    return Hamiltonian(name, lattice, J=j)
