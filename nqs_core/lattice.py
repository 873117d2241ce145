"""Lattices: the chain of L sites and the L×L square, periodic or open.

Conventions (DESIGN.md §2): sites are numbered row-major, ``site = x + L*y`` on the square.
A translation by a lattice vector r acts on configurations as ``shift(σ, r)_i = σ_{x_i + r}``
(``sigma[..., perm]`` with ``perm = lattice.translations[t]``), so that the momentum-projected
state Ψ^(k)(σ) = (1/|T|) Σ_t e^{−ik·r_t} Ψ(shift(σ, r_t)) obeys Ψ^(k)(shift(σ, a)) = e^{ik·a} Ψ^(k)(σ).
Allowed momenta are k = 2πn/L per axis (periodic axes only).

Point group (periodic lattices, about site 0): an orthogonal integer matrix g acts on configurations as
``(gσ)_i = σ_{g x_i}`` (``sigma[..., perm]`` with ``perm = lattice.point_group(...)[e]``), the same
convention as the translations.  On the square C4v = {R^n, R^n M : n = 0..3} with the 90° rotation
R: (x, y) → (−y, x) and the mirror M: (x, y) → (−x, y) (``"full"``; ``"rotations"`` is C4 = {R^n}); on the
chain the reflection x → −x (``"full"``).  Since g T_a g⁻¹ = T_{ga}, g maps momentum k to gk: a point-group
projection keeps a momentum-k state in sector k only when gk ≡ k for every g (``point_group_problem``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from itertools import product

import numpy as np

KINDS = ("chain", "square")
BOUNDARIES = ("periodic", "open")
POINT_GROUPS = ("none", "rotations", "full")  # none; C4 (square only); C4v on the square, the reflection on a chain

_R90 = np.array([[0, -1], [1, 0]])
_MIRROR = np.array([[-1, 0], [0, 1]])


@dataclass(frozen=True)
class Lattice:
    """A chain (``kind="chain"``, L sites) or square (``kind="square"``, L×L sites) lattice."""

    kind: str
    L: int
    pbc: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"lattice must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if not isinstance(self.L, (int, np.integer)) or self.L < 2:
            raise ValueError(f"L must be an integer ≥ 2; got {self.L!r}")

    # ----- geometry ---------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return 1 if self.kind == "chain" else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.L,) * self.dim

    @property
    def n_sites(self) -> int:
        return self.L**self.dim

    @property
    def boundary(self) -> str:
        return "periodic" if self.pbc else "open"

    @cached_property
    def coords(self) -> np.ndarray:
        """(N, d) integer coordinates; site index = x + L*y."""
        if self.dim == 1:
            return np.arange(self.L)[:, None]
        y, x = np.divmod(np.arange(self.n_sites), self.L)
        return np.stack([x, y], axis=1)

    def site(self, coord: np.ndarray) -> np.ndarray:
        """Site index of integer coordinates (..., d), wrapped periodically."""
        c = np.mod(np.asarray(coord), self.L)
        return c[..., 0] if self.dim == 1 else c[..., 0] + self.L * c[..., 1]

    def _bonds(self, vectors: list[tuple[int, ...]]) -> np.ndarray:
        out = set()
        for v in vectors:
            target = self.coords + np.array(v)
            inside = np.all((target >= 0) & (target < self.L), axis=1)
            for i in range(self.n_sites):
                if not (self.pbc or inside[i]):
                    continue
                j = int(self.site(target[i]))
                if i != j:
                    out.add((min(i, j), max(i, j)))
        return np.array(sorted(out), dtype=np.int32).reshape(-1, 2)

    @cached_property
    def bonds(self) -> np.ndarray:
        """(n_bonds, 2) nearest-neighbour pairs i < j, each pair once (as NetKet's graphs)."""
        return self._bonds([(1,)] if self.dim == 1 else [(1, 0), (0, 1)])

    @cached_property
    def next_bonds(self) -> np.ndarray:
        """(n, 2) next-nearest-neighbour pairs: distance 2 on the chain, the diagonals on the square."""
        return self._bonds([(2,)] if self.dim == 1 else [(1, 1), (1, -1)])

    @cached_property
    def is_bipartite(self) -> bool:
        return (not self.pbc) or self.L % 2 == 0

    @cached_property
    def sublattice(self) -> np.ndarray:
        """(N,) 0 for sublattice A (even coordinate sum), 1 for B."""
        return (self.coords.sum(axis=1) % 2).astype(np.int32)

    # ----- symmetry ---------------------------------------------------------------------
    @cached_property
    def displacements(self) -> np.ndarray:
        """(|T|, d) translation vectors r_t (all of them if periodic, only r = 0 if open)."""
        if not self.pbc:
            return np.zeros((1, self.dim), dtype=np.int32)
        return np.array(list(product(range(self.L), repeat=self.dim)), dtype=np.int32)[:, ::-1]

    @cached_property
    def translations(self) -> np.ndarray:
        """(|T|, N) permutations: ``sigma[..., translations[t]]`` is shift(σ, r_t), i.e. σ_{x + r_t}."""
        return np.stack([self.site(self.coords + r) for r in self.displacements]).astype(np.int32)

    def unit_translations(self) -> np.ndarray:
        """(d, N) permutations for one step along each axis (shift(σ, e_a))."""
        eye = np.eye(self.dim, dtype=np.int32)
        return np.stack([self.site(self.coords + e) for e in eye]).astype(np.int32)

    def momenta(self) -> np.ndarray:
        """(n_k, d) allowed momenta k = 2πn/L per axis, n = 0..L-1 (only k = 0 if open)."""
        if not self.pbc:
            return np.zeros((1, self.dim))
        n = np.array(list(product(range(self.L), repeat=self.dim)))[:, ::-1]
        return 2 * np.pi * n / self.L

    def momentum_index(self, k_over_pi: tuple[float, ...] | list[float]) -> np.ndarray:
        """Validate k given in units of π (e.g. (1,) for k = π) and return it in radians."""
        k = np.atleast_1d(np.asarray(k_over_pi, dtype=float))
        if k.shape != (self.dim,):
            raise ValueError(f"k needs {self.dim} component(s) on a {self.kind}; got {list(k)}")
        n = k * self.L / 2
        allowed = ", ".join(f"{2 * m / self.L:g}" for m in range(self.L))
        if not self.pbc and np.any(k != 0):
            raise ValueError("k must be 0 with open boundaries (no translation symmetry)")
        if np.any(np.abs(n - np.round(n)) > 1e-9):
            raise ValueError(f"k must be a multiple of 2/L in units of π per axis (L = {self.L}: {allowed}); got {list(k)}")
        return np.pi * (np.mod(np.round(n), self.L) * 2 / self.L)

    def point_group_matrices(self, group: str) -> np.ndarray:
        """(|G|, d, d) integer matrices of the point group about site 0 (module docstring): ``"none"`` the
        identity alone; ``"rotations"`` R^n (square only); ``"full"`` R^n and R^n M on the square, ±1 on the chain.
        ValueError (naming ``point_group``) where the group does not exist (see ``point_group_problem``)."""
        problem = self.point_group_problem(group)
        if problem:
            raise ValueError(problem)
        if group == "none":
            return np.eye(self.dim, dtype=np.int32)[None]
        if self.dim == 1:
            return np.array([[[1]], [[-1]]], dtype=np.int32)
        rotations = [np.linalg.matrix_power(_R90, n) for n in range(4)]
        mirrored = [r @ _MIRROR for r in rotations] if group == "full" else []
        return np.stack(rotations + mirrored).astype(np.int32)

    def point_group(self, group: str) -> np.ndarray:
        """(|G|, N) permutations: ``sigma[..., point_group(group)[e]]`` is g_e σ, i.e. σ_{g_e x_i}."""
        return np.stack([self.site(self.coords @ g.T) for g in self.point_group_matrices(group)]).astype(np.int32)

    def point_group_problem(self, group: str, k_over_pi: tuple[float, ...] | None = None) -> str | None:
        """Why ``point_group=group`` does not apply here (with momentum ``k_over_pi``, units of π), or None.

        The group is taken about a site of the periodic lattice (open boundaries: refused); ``rotations``
        needs the square; with a momentum projection every g must map k onto itself modulo 2π (square:
        k = (0,0) or (π,π); chain: k = 0 or π), else the point-group sum would mix momentum sectors."""
        if group not in POINT_GROUPS:
            return f"point_group must be one of {', '.join(POINT_GROUPS)}; got {group!r}"
        if group == "none":
            return None
        if not self.pbc:
            return (f"point_group={group} needs periodic boundaries (the group is taken about a site of the "
                    f"periodic lattice); use point_group=none with open boundaries")
        if group == "rotations" and self.dim == 1:
            return ("point_group=rotations needs a square lattice; a chain's point group is its reflection: "
                    "point_group=full")
        if k_over_pi is None:
            return None
        k = np.atleast_1d(np.asarray(k_over_pi, dtype=float))
        mats = self.point_group_matrices(group) if k.shape == (self.dim,) else []
        if any(np.any(np.abs(np.mod(g @ k - k + 1.0, 2.0) - 1.0) > 1e-9) for g in mats):
            allowed = "0 or 1 (k = π)" if self.dim == 1 else "0,0 or 1,1 (k = (π,π))"
            return (f"point_group={group} maps momentum k to gk: it keeps only k = {allowed} in its sector; got k = "
                    f"{','.join(f'{x:g}' for x in k)} (use point_group=none there)")
        return None

    def describe(self) -> str:
        size = f"{self.L}" if self.dim == 1 else f"{self.L}×{self.L}"
        return f"{self.boundary} {self.kind} {size}"


def make_lattice(kind: str, L: int, bc: str = "periodic") -> Lattice:
    """Build a lattice from user-facing settings, with messages that name the setting."""
    if bc not in BOUNDARIES:
        raise ValueError(f"bc must be one of {', '.join(BOUNDARIES)}; got {bc!r}")
    return Lattice(kind, int(L), bc == "periodic")


def momentum_text(k_over_pi: tuple[float, ...] | list[float], separator: str = ", ") -> str:
    """A momentum given in units of π as people write it: ``π``, ``0``, ``π/2``, ``2π/3``; ``(π, 0)``
    on the square (components reduced to [0, 2π))."""
    def one(x: float) -> str:
        f = Fraction(float(x) % 2.0).limit_denominator(64)
        if f == 0:
            return "0"
        num = "" if f.numerator == 1 else str(f.numerator)
        return f"{num}π" if f.denominator == 1 else f"{num}π/{f.denominator}"

    parts = [one(x) for x in k_over_pi]
    return parts[0] if len(parts) == 1 else "(" + separator.join(parts) + ")"
