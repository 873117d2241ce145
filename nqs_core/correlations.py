"""Real-space spin correlations and the TFIM magnetisations, from samples or exact weights.

Every estimator averages a *local* value over configurations σ: drawn from |ψ|² (plain mean), or
the whole basis with ``weights`` ∝ |ψ(σ)|² (an exact expectation value, no sampling error).  For an
operator O, ⟨O⟩ = Σ_σ |ψ(σ)|² O_loc(σ)/Σ|ψ|² with O_loc(σ) = Σ_σ' O_σσ' ψ(σ')/ψ(σ) (DESIGN.md §3).

* ``zz_correlations``: ⟨σᶻ_iσᶻ_j⟩ (diagonal: σ_iσ_j).
* ``spin_correlations``: ⟨S_i·S_j⟩ with S = σ/2: (S_i·S_j)_loc = ¼σ_iσ_j + ½[σ_i ≠ σ_j] ψ(σ^{ij})/ψ(σ),
  σ^{ij} = σ with spins i and j exchanged; ⟨S_i·S_i⟩ = 3/4.
* ``magnetisation``: ⟨|Σ_i σᶻ_i|⟩/N, the TFIM order parameter on a finite lattice.
* ``sigma_x``: ⟨σˣ_i⟩ per site, (σˣ_i)_loc = ψ(σ^i)/ψ(σ), σ^i = σ with spin i flipped.
* ``by_displacement``: a correlation matrix C_ij as a map on the lattice, C(r) = (1/N) Σ_i C_{i, x_i+r}
  (periodic), or the row of the central site (open boundaries).

The network passes run one pair (or site) at a time over the whole batch (``lax.map``), so the
shapes are fixed and memory stays at one batch.  All functions are pure and jittable (the pair
lists are NumPy constants); ``log_psi_fn(params, σ (B, N)) -> log ψ (B,)`` is e.g. ``model.apply``.
Local values are complex; expectations of these Hermitian operators are real, so the real part is
returned.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.lattice import Lattice

PyTree = Any
LogPsiFn = Callable[[PyTree, jax.Array], jax.Array]


def normalised_weights(n_samples: int, weights: jax.Array | None = None) -> jax.Array:
    """(B,) float64 weights summing to 1: uniform 1/B for samples from |ψ|², else ``weights``/Σ."""
    if weights is None:
        return jnp.full((n_samples,), 1.0 / n_samples, dtype=jnp.float64)
    w = jnp.asarray(weights, dtype=jnp.float64)
    return w / jnp.sum(w)


def _mean(local: jax.Array, w: jax.Array) -> jax.Array:
    """Σ_b w_b local_b over the first axis, with local values of zero-weight rows ignored (they may be
    NaN where ψ(σ) = 0 on an enumerated basis)."""
    mask = (w > 0).reshape((-1,) + (1,) * (local.ndim - 1))
    return jnp.tensordot(w, jnp.where(mask, local, 0.0), axes=1)


def zz_correlations(samples: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """(N, N) float64 ⟨σᶻ_iσᶻ_j⟩ = Σ_σ w(σ) σ_iσ_j."""
    s = jnp.asarray(samples).astype(jnp.float64)
    w = normalised_weights(s.shape[0], weights)
    return (s * w[:, None]).T @ s


def magnetisation(samples: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """⟨|Σ_i σᶻ_i|⟩/N (float64): the TFIM order parameter (1 in the ordered limit h → 0; → 0 for h ≫ J)."""
    s = jnp.asarray(samples).astype(jnp.float64)
    w = normalised_weights(s.shape[0], weights)
    return jnp.sum(w * jnp.abs(jnp.sum(s, axis=1))) / s.shape[1]


def _log_psi(log_psi_fn: LogPsiFn, params: PyTree, sigma: jax.Array, log_psi: jax.Array | None) -> jax.Array:
    return (log_psi_fn(params, sigma) if log_psi is None else jnp.asarray(log_psi)).astype(jnp.complex128)


def flip_ratios(log_psi_fn: LogPsiFn, params: PyTree, samples: jax.Array, log_psi: jax.Array | None = None
                ) -> jax.Array:
    """(B, N) complex128 ψ(σ^i)/ψ(σ), σ^i = σ with spin i flipped (one network pass per site)."""
    sigma = jnp.asarray(samples)
    lp = _log_psi(log_psi_fn, params, sigma, log_psi)
    n = sigma.shape[1]

    def one(i: jax.Array) -> jax.Array:
        flipped = jnp.where(jnp.arange(n) == i, -sigma, sigma)
        return jnp.exp(log_psi_fn(params, flipped).astype(jnp.complex128) - lp)

    return jax.lax.map(one, jnp.arange(n)).T


def sigma_x(log_psi_fn: LogPsiFn, params: PyTree, samples: jax.Array, log_psi: jax.Array | None = None,
            weights: jax.Array | None = None) -> jax.Array:
    """(N,) float64 ⟨σˣ_i⟩ = Re Σ_σ w(σ) ψ(σ^i)/ψ(σ); its mean over sites is the transverse
    magnetisation, and for the TFIM E = −J Σ_⟨ij⟩ ⟨σᶻ_iσᶻ_j⟩ − h Σ_i ⟨σˣ_i⟩."""
    ratios = flip_ratios(log_psi_fn, params, samples, log_psi)
    return _mean(ratios, normalised_weights(ratios.shape[0], weights)).real


def state_log_psi(codes: np.ndarray, psi: np.ndarray) -> LogPsiFn:
    """A state vector ψ on sorted basis ``codes`` (``nqs_core.basis``) as ``log_psi_fn(params, σ)``:
    log ψ(σ) by binary search of code(σ) = Σ_i [σ_i = +1] 2^i (−inf outside the basis or where ψ = 0),
    so the estimators above evaluate the exact state (ED) exactly as they evaluate a network.  Jittable."""
    table = jnp.log(jnp.asarray(psi, dtype=jnp.complex128))
    sorted_codes = jnp.asarray(codes, dtype=jnp.int64)

    def log_psi_fn(params: PyTree, sigma: jax.Array) -> jax.Array:
        bits = (jnp.asarray(sigma) > 0).astype(jnp.int64)
        code = jnp.sum(bits << jnp.arange(bits.shape[-1], dtype=jnp.int64), axis=-1)
        idx = jnp.clip(jnp.searchsorted(sorted_codes, code), 0, len(codes) - 1)
        return jnp.where(sorted_codes[idx] == code, table[idx], -jnp.inf + 0j)

    return log_psi_fn


def all_pairs(n_sites: int) -> np.ndarray:
    """(N(N−1)/2, 2) int32 pairs i < j."""
    i, j = np.triu_indices(n_sites, k=1)
    return np.stack([i, j], axis=1).astype(np.int32)


def exchange_ratios(log_psi_fn: LogPsiFn, params: PyTree, samples: jax.Array, pairs: np.ndarray,
                    log_psi: jax.Array | None = None) -> jax.Array:
    """(B, P) complex128 [σ_i ≠ σ_j] ψ(σ^{ij})/ψ(σ) for each pair (i, j) (0 where σ_i = σ_j: the
    spin-flip part S⁺_iS⁻_j + S⁻_iS⁺_j annihilates equal spins)."""
    sigma = jnp.asarray(samples)
    lp = _log_psi(log_psi_fn, params, sigma, log_psi)
    cols = jnp.arange(sigma.shape[1])

    def one(pair: jax.Array) -> jax.Array:
        i, j = pair[0], pair[1]
        differ = sigma[:, i] != sigma[:, j]
        swapped = jnp.where(((cols == i) | (cols == j))[None, :] & differ[:, None], -sigma, sigma)
        ratio = jnp.exp(log_psi_fn(params, swapped).astype(jnp.complex128) - lp)
        return jnp.where(differ, ratio, 0.0)

    return jax.lax.map(one, jnp.asarray(pairs, dtype=jnp.int32)).T


def spin_correlation_pairs(log_psi_fn: LogPsiFn, params: PyTree, samples: jax.Array, pairs: np.ndarray,
                           log_psi: jax.Array | None = None, weights: jax.Array | None = None) -> jax.Array:
    """(P,) float64 ⟨S_i·S_j⟩ = ¼⟨σ_iσ_j⟩ + ½ Re⟨[σ_i ≠ σ_j] ψ(σ^{ij})/ψ(σ)⟩ for pairs i ≠ j."""
    sigma = jnp.asarray(samples)
    pairs = np.asarray(pairs, dtype=np.int32).reshape(-1, 2)
    w = normalised_weights(sigma.shape[0], weights)
    s = sigma.astype(jnp.float64)
    zz = 0.25 * s[:, pairs[:, 0]] * s[:, pairs[:, 1]]
    flip = 0.5 * exchange_ratios(log_psi_fn, params, sigma, pairs, log_psi)
    return _mean(zz + flip, w).real


def spin_correlations(log_psi_fn: LogPsiFn, params: PyTree, samples: jax.Array, log_psi: jax.Array | None = None,
                      weights: jax.Array | None = None) -> jax.Array:
    """(N, N) float64 ⟨S_i·S_j⟩ over all pairs (N(N−1)/2 network passes over the batch); diagonal 3/4.
    For a singlet Σ_ij ⟨S_i·S_j⟩ = ⟨S_tot²⟩ = 0; for the Heisenberg model J Σ_⟨ij⟩ ⟨S_i·S_j⟩ = E."""
    n = jnp.asarray(samples).shape[1]
    pairs = all_pairs(n)
    values = spin_correlation_pairs(log_psi_fn, params, samples, pairs, log_psi, weights)
    c = jnp.full((n, n), 0.75, dtype=jnp.float64)
    c = c.at[pairs[:, 0], pairs[:, 1]].set(values)
    return c.at[pairs[:, 1], pairs[:, 0]].set(values)


def by_displacement(matrix: np.ndarray, lattice: Lattice) -> np.ndarray:
    """C_ij as a map on the lattice (indexed [x] or [y, x] by the position of j): on a periodic lattice
    the translation average C(r) = (1/N) Σ_i C_{i, x_i+r} at position r (origin site 0); with open
    boundaries the row of the central site c (``lattice.L // 2`` per axis), C_{c, j}."""
    c = np.asarray(matrix, dtype=float)
    out = np.empty(lattice.shape[::-1])
    if lattice.pbc:
        for t, r in enumerate(lattice.displacements):
            out[tuple(r[::-1])] = np.mean(c[np.arange(lattice.n_sites), lattice.translations[t]])
        return out
    centre = int(lattice.site(np.full(lattice.dim, lattice.L // 2)))
    for j, x in enumerate(lattice.coords):
        out[tuple(x[::-1])] = c[centre, j]
    return out
