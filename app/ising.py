"""Classical 2D Ising model H = −J Σ⟨ij⟩ s_i s_j (J = 1, periodic L×L) by Metropolis, checkerboard.

One sweep updates the two sublattices of the checkerboard in turn; on one sublattice all sites
are independent given the other, so each half-sweep is a vectorised Metropolis step with
acceptance min(1, e^{−ΔE/T}), ΔE = 2 s_i Σ_{j∈∂i} s_j.  Onsager's critical temperature is
T_c = 2 / ln(1 + √2) ≈ 2.269.
"""

from __future__ import annotations

import numpy as np

T_CRITICAL = 2.0 / np.log(1.0 + np.sqrt(2.0))


class IsingLattice:
    """An L×L periodic Ising lattice with its own NumPy random generator."""

    def __init__(self, L: int = 64, T: float = T_CRITICAL, seed: int = 0, hot: bool = True):
        if L < 2 or L % 2:
            raise ValueError(f"L must be an even integer ≥ 2 for the checkerboard update; got {L}")
        if not T > 0:
            raise ValueError(f"T must be > 0; got {T}")
        self.L, self.T = L, float(T)
        self.rng = np.random.default_rng(seed)
        self.spins = (self.rng.choice([-1, 1], size=(L, L)) if hot else np.ones((L, L))).astype(np.int8)
        y, x = np.indices((L, L))
        self._masks = [((x + y) % 2 == c) for c in (0, 1)]
        self.sweeps = 0

    def neighbour_sum(self) -> np.ndarray:
        s = self.spins.astype(np.int32)
        return np.roll(s, 1, 0) + np.roll(s, -1, 0) + np.roll(s, 1, 1) + np.roll(s, -1, 1)

    def sweep(self, n: int = 1) -> np.ndarray:
        """n Metropolis sweeps at temperature T; returns the lattice (L, L) of ±1."""
        for _ in range(n):
            for mask in self._masks:
                dE = 2 * self.spins * self.neighbour_sum()
                accept = mask & (self.rng.random(self.spins.shape) < np.exp(-np.maximum(dE, 0) / self.T))
                self.spins = np.where(accept, -self.spins, self.spins).astype(np.int8)
            self.sweeps += 1
        return self.spins

    def magnetization(self) -> float:
        """m = (1/N) Σ s_i."""
        return float(self.spins.mean())

    def energy_per_site(self) -> float:
        """e = −(1/N) Σ⟨ij⟩ s_i s_j (each bond once)."""
        s = self.spins.astype(np.int32)
        return float(-(s * (np.roll(s, 1, 0) + np.roll(s, 1, 1))).mean())
