"""Order parameters and momentum of a VMC state, from fresh samples, with errors from independent chains.

``state_observables(engine, settings, state)`` draws ``eval_samples`` (else ``samples``) fresh samples
from the state's chains with the engine's sampler (the chains' state is not advanced) and measures,
each per chain and then averaged, with the error of the mean std/√C over the C independent chains:

* TFIM: ``magnetisation`` ⟨|Σσᶻ|⟩/N and ``sigma_x`` ⟨σˣ⟩ (site average, ψ(σ^i)/ψ(σ) ratios), from
  ``nqs_core.correlations``;
* ``correlation_map``: ⟨σᶻ_0σᶻ_r⟩ (TFIM, all samples) or ⟨S_0·S_r⟩ (S·S models, from ``CORRELATION_SAMPLES``
  of them) on the lattice (``correlations.by_displacement``), with ``correlation_map_error``;
* S·S models: ``structure_factor`` S(q) on every allowed q and its peak (``observables.structure_factor``),
  and the ``marshall_agreement`` of the samples' signs on bipartite lattices;
* periodic lattices: ``translation_eigenvalues`` ⟨ψ(T_aσ)/ψ(σ)⟩ per axis and the ``measured_momentum`` k/π.

The sampling and measuring function is compiled once per engine and sample count.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.correlations import by_displacement, magnetisation, sigma_x, spin_correlations, zz_correlations
from nqs_core.observables import (
    best_half_plane,
    marshall_phase,
    nearest_allowed_momentum,
    structure_factor,
    translation_eigenvalues,
)
from nqs_core.settings import RunSettings
from nqs_core.vmc import Engine

CORRELATION_SAMPLES = 1024  # samples (over all chains) for ⟨S_i·S_j⟩: one network pass per pair and sample


@functools.lru_cache(maxsize=16)
def measure_fn(engine: Engine, per_chain: int):
    """jit(params, sampler_state) -> dict of per-chain (C, …) measurements and whole-batch scalars."""
    lattice, model = engine.lattice, engine.model
    n = lattice.n_sites
    ising = engine.hamiltonian.is_ising

    @jax.jit
    def fn(params: Any, sampler_state: Any) -> dict[str, jax.Array]:
        _, sigma, lp, _ = engine.sampler.sample(lambda x: model.apply(params, x), sampler_state, per_chain)
        out: dict[str, jax.Array] = {}
        if ising:
            out["magnetisation"] = jax.vmap(magnetisation)(sigma)
            out["sigma_x"] = jax.vmap(lambda s, l: sigma_x(model.apply, params, s, l).mean())(sigma, lp)
            out["correlations"] = jax.vmap(zz_correlations)(sigma)
        else:
            k = max(1, min(per_chain, CORRELATION_SAMPLES // sigma.shape[0]))  # N(N−1)/2 network passes each
            out["correlations"] = jax.vmap(lambda s, l: spin_correlations(model.apply, params, s, l))(sigma[:, :k], lp[:, :k])
            out["structure_factor"] = jax.vmap(lambda s: structure_factor(s, lattice)[1])(sigma)
            if lattice.is_bipartite:
                theta = jnp.imag(lp.reshape(-1)) - marshall_phase(sigma.reshape(-1, n), lattice)
                out["marshall_agreement"] = best_half_plane(theta)
        if lattice.pbc:
            out["translation_eigenvalues"] = translation_eigenvalues(model.apply, params, sigma.reshape(-1, n), lattice)
        return out

    return fn


def _mean_error(per_chain: np.ndarray) -> tuple[float, float | None]:
    """Mean over chains and its error std/√C (None for a single chain)."""
    x = np.asarray(per_chain, dtype=float)
    err = float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None
    return float(np.mean(x)), err


def state_observables(engine: Engine, settings: RunSettings, state: Any) -> dict[str, Any]:
    """The module docstring's observables of ``state`` (a ``VMCState``), JSON-ready."""
    n_samples = settings.eval_samples or settings.samples
    per_chain = max(1, -(-n_samples // settings.chains))
    raw = {k: np.asarray(v) for k, v in measure_fn(engine, per_chain)(state.params, state.sampler).items()}
    out: dict[str, Any] = {"samples": per_chain * settings.chains}
    for key in ("magnetisation", "sigma_x"):
        if key in raw:
            out[key], out[f"{key}_error"] = _mean_error(raw[key])
    if "structure_factor" in raw:
        q_over_pi = [[round(float(x) / np.pi, 12) for x in k] for k in engine.lattice.momenta()]
        per = raw["structure_factor"]
        stats = [_mean_error(per[:, i]) for i in range(per.shape[1])]
        peak = int(np.argmax([m for m, _ in stats]))
        out["structure_factor"] = {"q_over_pi": q_over_pi, "values": [m for m, _ in stats],
                                   "errors": [e for _, e in stats],
                                   "peak": {"q_over_pi": q_over_pi[peak], "value": stats[peak][0], "error": stats[peak][1]}}
    maps = np.array([by_displacement(c, engine.lattice) for c in raw["correlations"]])  # (C, …lattice shape)
    stats = [_mean_error(maps[(slice(None),) + idx]) for idx in np.ndindex(*maps.shape[1:])]
    out["correlation_map"] = np.array([m for m, _ in stats]).reshape(maps.shape[1:]).tolist()
    out["correlation_map_error"] = np.array([np.nan if e is None else e for _, e in stats]).reshape(maps.shape[1:]).tolist()
    if "marshall_agreement" in raw:
        out["marshall_agreement"] = float(raw["marshall_agreement"])
    if "translation_eigenvalues" in raw:
        z = raw["translation_eigenvalues"]
        out["translation_eigenvalues"] = [[float(v.real), float(v.imag)] for v in z]
        out["measured_momentum"] = list(nearest_allowed_momentum(z, engine.lattice))
    return out
