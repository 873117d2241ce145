"""What the lab shows about a state besides its energy: momentum sector, S(q) and sign structure.

All functions take ``log_psi_fn(params, σ (B, N)) -> log ψ (B,)`` (e.g. ``model.apply``), the
parameters, configurations and the lattice (docs/ARCHITECTURE.md conventions):

* ``translation_eigenvalues``: ⟨ψ(shift(σ, e_a))/ψ(σ)⟩_{σ~|ψ|²} = e^{ik_a} for a state of momentum k
  (DESIGN.md §2), one per lattice axis; ``momentum_from_eigenvalues`` turns them into k/π.
* ``structure_factor``: S(q) = (1/N) Σ_ij e^{iq·(r_i−r_j)} ⟨σᶻ_iσᶻ_j⟩/4 = ⟨|Σ_i e^{iq·r_i} σ_i|²⟩/(4N)
  on the allowed momenta q (``lattice.momenta()``).
* ``marshall_agreement``: fraction of sampled σ whose sign of Re(e^{−iφ}ψ(σ)) equals the Marshall
  sign (−1)^{N↑ on A}, maximised over the global phase φ.
* ``fidelity`` and ``sign_agreement`` against an exact state vector ψ₀ on the enumerated basis
  (``nqs_core.basis`` ordering): |⟨ψ₀|ψ⟩|²/(⟨ψ₀|ψ₀⟩⟨ψ|ψ⟩) and Σ_σ |ψ₀(σ)|² [sign ψ(σ) = sign ψ₀(σ)]
  (normalised weights), the latter maximised over a global phase of ψ.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.basis import basis_codes, decode
from nqs_core.lattice import Lattice
from nqs_core.models.sign import up_spins_on_a

LogPsiFn = Callable[..., jnp.ndarray]


# ----- momentum sector ----------------------------------------------------------------------
def translation_eigenvalues(log_psi_fn: LogPsiFn, params, samples: jnp.ndarray, lattice: Lattice) -> jnp.ndarray:
    """(d,) complex: ⟨ψ(shift(σ, e_a))/ψ(σ)⟩ over the samples σ ~ |ψ|², a = x (, y).  Jittable."""
    samples = jnp.asarray(samples)
    log_psi = log_psi_fn(params, samples)
    return jnp.stack([translation_eigenvalue(log_psi_fn, params, samples, log_psi, perm)
                      for perm in lattice.unit_translations()])


def translation_eigenvalue(log_psi_fn: LogPsiFn, params, samples: jnp.ndarray, log_psi: jnp.ndarray,
                           perm: np.ndarray) -> jnp.ndarray:
    """complex128 ⟨ψ(σ[perm])/ψ(σ)⟩ = ⟨exp(log ψ(σ[perm]) − log ψ(σ))⟩ over samples σ ~ |ψ|² with their
    ``log_psi``; for ``perm`` a unit translation this is e^{ik_a} for a state of momentum k.  Jittable."""
    shifted = log_psi_fn(params, samples[:, jnp.asarray(perm)])
    return jnp.mean(jnp.exp((shifted - log_psi).astype(jnp.complex128)))


def momentum_from_eigenvalues(eigenvalues: np.ndarray) -> np.ndarray:
    """k/π in [0, 2) per axis from translation eigenvalues e^{ik_a} (the phase of each)."""
    return np.mod(np.angle(np.asarray(eigenvalues)) / np.pi, 2.0)


def k_over_pi(eigenvalue: complex) -> float:
    """k/π in (−1, 1] of one translation eigenvalue e^{ik} (the lab's labels): at k = π a rounding-level
    imaginary part of either sign must not turn the label from +1 into −1."""
    k = float(np.angle(eigenvalue)) / np.pi
    return 1.0 if k <= -1.0 + 1e-6 else k


def nearest_allowed_momentum(eigenvalues: np.ndarray, lattice: Lattice) -> tuple[float, ...]:
    """The allowed k/π (multiples of 2/L per axis) closest to the phases of ``eigenvalues``."""
    k = momentum_from_eigenvalues(eigenvalues)
    n = np.mod(np.round(k * lattice.L / 2), lattice.L)
    return tuple(float(x) for x in 2 * n / lattice.L)


# ----- static structure factor --------------------------------------------------------------
def structure_factor(samples: jnp.ndarray, lattice: Lattice, weights: jnp.ndarray | None = None) -> tuple[np.ndarray, jnp.ndarray]:
    """(q (n_q, d), S(q) (n_q,)) with S(q) = ⟨|Σ_i e^{iq·r_i} σ_i|²⟩/(4N) over the allowed q.

    ``samples`` are drawn from |ψ|² (plain average) or, with ``weights`` (e.g. |ψ₀(σ)|² on the
    whole basis), averaged with those weights (normalised here).  Jittable in ``samples``.
    """
    q = lattice.momenta()
    sigma = jnp.asarray(samples).astype(jnp.float64)
    phase = jnp.asarray(np.exp(1j * q @ lattice.coords.T.astype(float)))  # (n_q, N)
    amp = sigma @ phase.T  # (B, n_q): Σ_i e^{iq·r_i} σ_i
    power = jnp.abs(amp) ** 2 / (4 * lattice.n_sites)
    if weights is None:
        return q, jnp.mean(power, axis=0)
    w = jnp.asarray(weights, dtype=jnp.float64)
    return q, (w / jnp.sum(w)) @ power


# ----- sign structure -----------------------------------------------------------------------
def best_half_plane(angles, weights=None):
    """max over φ of the (weighted) fraction of angles θ with cos(θ − φ) > 0, i.e. inside an open
    half circle.  Exact (sort, then a sliding window over the doubled circle).  NumPy in, NumPy out
    (the exact observer: no compilation per shape); otherwise JAX, jittable (the VMC step)."""
    xp = np if isinstance(angles, np.ndarray) else jnp
    theta = xp.mod(xp.asarray(angles, dtype=float), 2 * np.pi)
    w = xp.ones_like(theta) if weights is None else xp.asarray(weights, dtype=theta.dtype)
    order = xp.argsort(theta)
    theta, w = theta[order], w[order]
    ext = xp.concatenate([theta, theta + 2 * np.pi])
    cum = xp.concatenate([xp.zeros(1, w.dtype), xp.cumsum(xp.concatenate([w, w]))])
    # window [θ_i, θ_i + π): the optimum can always be taken with an angle on its closed edge
    end = xp.searchsorted(ext, theta + np.pi - 1e-12, side="left")
    start = xp.arange(theta.shape[0])
    return xp.max(cum[end] - cum[start]) / xp.sum(w)


def marshall_phase(samples: jnp.ndarray, lattice: Lattice) -> jnp.ndarray:
    """π N↑_A(σ): the phase of the Marshall sign (−1)^{N↑ on A}, A = ``lattice.sublattice == 0``
    (``models.sign.up_spins_on_a``, the count the Marshall prior uses)."""
    return jnp.pi * up_spins_on_a(samples, lattice.sublattice == 0).astype(float)


def marshall_agreement(log_psi_fn: LogPsiFn, params, samples: jnp.ndarray, lattice: Lattice) -> jnp.ndarray:
    """Fraction of samples with sign Re(e^{−iφ}ψ(σ)) = (−1)^{N↑_A(σ)}, maximised over φ.  Jittable."""
    theta = jnp.imag(log_psi_fn(params, jnp.asarray(samples))) - marshall_phase(samples, lattice)
    return best_half_plane(theta)


# ----- against an exact state ---------------------------------------------------------------
def log_psi_on_basis(apply: Callable[..., jnp.ndarray], params, configs: np.ndarray, batch: int = 4096) -> np.ndarray:
    """log ψ (complex128) of every configuration in ``configs`` (M, N), in batches of a fixed size
    (the last one padded), so a jitted ``apply`` compiles once."""
    configs = np.asarray(configs)
    m = len(configs)
    batch = max(1, min(batch, m))
    out = []
    for i in range(0, m, batch):
        chunk = configs[i : i + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        out.append(np.asarray(apply(params, chunk)))
    return np.concatenate(out)[:m].astype(np.complex128)


def amplitudes(log_psi: np.ndarray) -> np.ndarray:
    """ψ = exp(log ψ − max Re log ψ) as complex128 (unnormalised; ψ = 0 where log ψ is not finite)."""
    log_psi = np.asarray(log_psi, dtype=np.complex128)
    re = log_psi.real
    finite = np.isfinite(re)
    return np.nan_to_num(np.exp(log_psi - (np.max(re[finite]) if finite.any() else 0.0)))


def compare_with_exact(log_psi: np.ndarray, psi0: np.ndarray) -> tuple[float, float]:
    """(fidelity, sign agreement) of ψ = exp(log ψ) on a whole basis against the exact ψ₀ on it:
    F = |⟨ψ₀|ψ⟩|²/(⟨ψ₀|ψ₀⟩⟨ψ|ψ⟩) and S = max_φ Σ_σ |ψ₀(σ)|² [Re(e^{−iφ}ψ(σ)ψ₀*(σ)) > 0] / Σ|ψ₀|²."""
    psi0 = np.asarray(psi0).astype(np.complex128)
    psi = amplitudes(log_psi)
    norm = np.vdot(psi0, psi0).real * np.vdot(psi, psi).real
    fid = float(abs(np.vdot(psi0, psi)) ** 2 / norm) if norm > 0 else 0.0
    weight = np.abs(psi0) ** 2
    keep = (weight > 0) & (np.abs(psi) > 0)
    if not keep.any():
        return fid, 0.0
    theta = np.angle(psi[keep] * np.conj(psi0[keep]))
    sign = best_half_plane(theta, weight[keep]) * float(weight[keep].sum() / weight.sum())
    return fid, float(sign)


def variational_energy(log_psi: np.ndarray, hamiltonian: Any) -> float:
    """⟨ψ|H|ψ⟩/⟨ψ|ψ⟩ of ψ = exp(log ψ) given on a whole basis, H its (sparse) matrix on that basis
    (``basis.sparse_matrix``): the energy of the state itself, free of Monte Carlo noise."""
    psi = amplitudes(log_psi)
    norm = np.vdot(psi, psi).real
    return float(np.vdot(psi, hamiltonian @ psi).real / norm) if norm > 0 else math.nan


def _log_psi_on_basis(log_psi_fn: LogPsiFn, params, psi0: np.ndarray, lattice: Lattice,
                      codes: np.ndarray | None, batch: int) -> np.ndarray:
    """log ψ on the basis of ψ₀ (default: Sᶻ = 0 if ``len(psi0)`` is its size, else the full space)."""
    n = lattice.n_sites
    if codes is None:
        codes = basis_codes(n, sz_zero=len(psi0) != 2**n)
    if len(codes) != len(psi0):
        raise ValueError(f"psi0 has {len(psi0)} entries but the basis has {len(codes)} states")
    return log_psi_on_basis(jax.jit(log_psi_fn), params, decode(codes, n), batch)


def fidelity(log_psi_fn: LogPsiFn, params, psi0: np.ndarray, lattice: Lattice,
             codes: np.ndarray | None = None, batch: int = 4096) -> float:
    """|⟨ψ₀|ψ⟩|² / (⟨ψ₀|ψ₀⟩⟨ψ|ψ⟩) with ψ evaluated on every basis state (default basis: Sᶻ = 0
    if ``len(psi0)`` is its size, else the full space; pass ``codes`` otherwise)."""
    return compare_with_exact(_log_psi_on_basis(log_psi_fn, params, psi0, lattice, codes, batch), psi0)[0]


def sign_agreement(log_psi_fn: LogPsiFn, params, psi0: np.ndarray, lattice: Lattice,
                   codes: np.ndarray | None = None, batch: int = 4096) -> float:
    """Σ_σ |ψ₀(σ)|² [sign Re(e^{−iφ}ψ(σ)ψ₀*(σ)) > 0] / Σ|ψ₀|², maximised over the global phase φ.

    For real ψ₀ and a ψ real up to one phase this is the weighted agreement of sign ψ with sign ψ₀.
    """
    return compare_with_exact(_log_psi_on_basis(log_psi_fn, params, psi0, lattice, codes, batch), psi0)[1]
