"""Momentum projection of any wavefunction (DESIGN.md §2, docs/ARCHITECTURE.md conventions).

    Ψ^(k)(σ) = (1/|T|) Σ_{t∈T} e^{−ik·r_t} Ψ(shift(σ, r_t)),   shift(σ, r)_i = σ_{x_i + r},

so that Ψ^(k)(shift(σ, a)) = e^{ik·a} Ψ^(k)(σ).  Sums of amplitudes are done on complex
log-amplitudes with a log-sum-exp (``log_sum_exp``), stable for amplitudes that span many orders
of magnitude.  ``project`` is the constructor ``make_model`` calls: a model that can restrict
itself to momentum k more cheaply (the ConvNeXt, via ``with_momentum``) does so; any other model
is wrapped in ``MomentumProjection`` (|T| evaluations of the base per configuration).

Point-group projection onto the trivial irrep A1 (``PointGroupProjection``, setting ``point_group``):

    Ψ_P(σ) = (1/|G|) Σ_{g∈G} Ψ(gσ),   (gσ)_i = σ_{g x_i}   (``Lattice.point_group``, about site 0),

as in Choo, Carleo, Regnault & Neupert, PRL 121, 167204 (2018), Choo, Neupert & Carleo, PRB 100,
125124 (2019) and the group-convolutional networks of Roth & MacDonald (arXiv:2104.05085; NetKet's
symmetric models), here as a wrapper around any model, outermost (base → Marshall prior → momentum →
point group).  Ψ_P(hσ) = Ψ_P(σ) for every h ∈ G.  Composed with the momentum projection it is the
projection onto the space group's A1 at k when gk ≡ k for all g (k = 0, or (π,π) on the square, π on the
chain), where the two projectors commute (``Lattice.point_group_problem`` refuses other k).  The wrapped
model's parameters stay where they were (``nn.share_scope``) and start from the same values: the projected
and unprojected models share one parameter tree, so a state trained without the projection can be
continued with it.  Cost: |G| base evaluations per configuration.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from nqs_core.lattice import Lattice
from nqs_core.models.fast_path import has_fast_path


def log_sum_exp(log_terms: jnp.ndarray, axis: int = -1) -> jnp.ndarray:
    """log Σ exp(a) over ``axis`` for complex a, shifted by the largest real part.

    An exact cancellation (Σ = 0, e.g. a configuration with a translation period that forbids
    momentum k) returns log of the smallest positive float instead of −∞, with finite gradients.
    """
    a = jnp.asarray(log_terms)
    if not jnp.iscomplexobj(a):
        a = a.astype(jnp.result_type(a.dtype, jnp.complex64))
    m = jnp.max(a.real, axis=axis, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    total = jnp.sum(jnp.exp(a - m), axis=axis)
    zero = total == 0
    safe = jnp.where(zero, jnp.ones_like(total), total)
    floor = jnp.log(jnp.finfo(a.real.dtype).tiny).astype(a.dtype)
    return jnp.where(zero, floor, jnp.log(safe)) + jnp.squeeze(m, axis=axis)


def marshall_momentum(lattice: Lattice) -> tuple[float, ...]:
    """Momentum (units of π) carried by the Marshall sign (−1)^{N↑ on A} in the Sᶻ = 0 sector.

    A translation by an odd vector exchanges the sublattices, N↑_A → N/2 − N↑_A, multiplying the
    sign by (−1)^{N/2}; even vectors leave it unchanged.  So the sign has momentum π per axis
    when N/2 is odd (chains of L = 4n+2), else 0 (chains of 4n, every even L×L square).
    """
    if not lattice.pbc or lattice.L % 2:
        return (0.0,) * lattice.dim
    return (float(lattice.n_sites // 2 % 2),) * lattice.dim


def phases(lattice: Lattice, displacements: np.ndarray, k_over_pi: tuple[float, ...]) -> np.ndarray:
    """−k·r for each displacement r (rows of ``displacements``), k validated by ``momentum_index``."""
    k = lattice.momentum_index(k_over_pi)
    return -(np.asarray(displacements, dtype=float) @ k)


def shift_permutation(lattice: Lattice, r: np.ndarray | tuple[int, ...]) -> np.ndarray:
    """(N,) permutation p with ``sigma[..., p]`` = shift(σ, r), i.e. σ_{x_i + r}."""
    return np.asarray(lattice.site(lattice.coords + np.asarray(r)), dtype=np.int32)


class MomentumProjection(nn.Module):
    """Ψ^(k)(σ) = (1/|T|) Σ_t e^{−ik·r_t} Ψ_base(shift(σ, r_t)) for any Flax base model.

    ``k_over_pi``: momentum in units of π (``(1,)`` is k = π on a chain).  The base's parameters
    live under the name ``base``.
    """

    base: nn.Module
    lattice: Lattice
    k_over_pi: tuple[float, ...]

    @property
    def holomorphic(self) -> bool:
        """A log-sum-exp of holomorphic log-amplitudes is holomorphic."""
        return bool(getattr(self.base, "holomorphic", False))

    @classmethod
    def from_settings(cls, model: nn.Module, settings: Any, lattice: Lattice) -> nn.Module:
        """``settings.k`` applied to ``model`` (the output of base → Marshall prior), as ``make_model`` does.

        A ConvNeXt is already an exact momentum eigenstate (``convnext.from_settings`` builds it at
        k − k_Marshall under the prior, and the Marshall sign has momentum k_Marshall in the
        Sᶻ = 0 sector where Heisenberg and J1-J2 are sampled), so it is returned unchanged;
        anything else goes through ``project``.
        """
        base = getattr(model, "base", None) if hasattr(model, "sublattice_a") else None
        sz_zero = getattr(settings, "hamiltonian", None) in ("heisenberg", "j1j2")
        if base is not None and hasattr(base, "with_momentum") and sz_zero:
            return model
        return project(model, lattice, tuple(settings.k))

    @property
    def has_flip_ratios(self) -> bool:
        return has_fast_path(self.base, "flip_ratios")

    def _orbit(self) -> tuple[np.ndarray, np.ndarray]:
        """(translations (T, N) as permutations, their phases −k·r_t)."""
        return np.asarray(self.lattice.translations), phases(self.lattice, self.lattice.displacements, self.k_over_pi)

    @nn.compact
    def __call__(self, sigma: jnp.ndarray) -> jnp.ndarray:
        return _project(self.base, sigma, *self._orbit())

    def flip_ratios(self, sigma: jax.Array, sites: np.ndarray) -> jax.Array:
        """Ψ^(k)(σ^(m))/Ψ^(k)(σ) (B, M) from the base's own fast ratios (:func:`_projected_flip_ratios`).  The
        talk preset ``chain-18-k-pi`` (RBM, Marshall prior, 18 translations, 512 samples; one CPU device, idle 2
        cores): local energies 85 → 20 ms, the whole step 259 → 180 ms."""
        return _projected_flip_ratios(self.base, sigma, sites, *self._orbit())


# configurations per call of the base's flip ratios through a projection: chain-18-k-pi (256 samples per device,
# 18 translations) compiled its step in 11-13 s with a call per translation, 6.4-8.3 s in one call and 7.1-7.8 s in
# calls of 2048, which also kept its speed (10.5-11 it/s; one call: 5 % slower, intermediates past the L2 cache)
RATIO_BATCH = 2048


def _projected_flip_ratios(base: nn.Module, sigma: jax.Array, sites: np.ndarray, perms: np.ndarray,
                           phase: np.ndarray) -> jax.Array:
    """Ψ_P(σ^(m))/Ψ_P(σ) (B, M) of Ψ_P(σ) ∝ Σ_t e^{iφ_t} Ψ(p_t σ) from ``base``'s own fast ratios, σ^(m) = σ with
    ``sites[m]`` flipped:

        Ψ_P(σ^(m))/Ψ_P(σ) = Σ_t w_t(σ) Ψ(p_tσ^(m))/Ψ(p_tσ),  w_t = e^{iφ_t}Ψ(p_tσ) / Σ_t' e^{iφ_t'}Ψ(p_t'σ),

    and p_tσ^(m) is p_tσ with the sites p_t⁻¹(sites[m]) flipped ((p_tσ)_i = σ_{perms[t, i]}).  One base pass
    per symmetry element for the weights and |T| fast ratios, instead of a projected network pass (|T| base
    passes) per connected configuration.  Where the elements map the rows of ``sites`` onto one another (the
    bonds or sites of a Hamiltonian on its own lattice, :func:`_image_rows`), the |T| ratios come from calls of
    the base's fast path on the p_tσ at ``sites`` itself (``RATIO_BATCH`` configurations a call), then
    reordered; otherwise from one call per element."""
    inverse = np.argsort(perms, axis=1)
    b, n = sigma.shape
    t = perms.shape[0]
    shifted = sigma[:, perms]  # (B, T, N): p_tσ
    terms = base(shifted.reshape(b * t, n)).reshape(b, t).astype(jnp.complex128) + 1j * phase
    weights = jnp.exp(terms - log_sum_exp(terms, axis=1)[:, None])  # (B, T)
    sites = np.asarray(sites)
    rows = _image_rows(sites, inverse)
    if rows is None:
        return sum(weights[:, i, None] * base.flip_ratios(shifted[:, i], inverse[i][sites]) for i in range(t))
    group = max(1, RATIO_BATCH // b)  # elements per call: at most RATIO_BATCH configurations
    ratios = jnp.concatenate([base.flip_ratios(shifted[:, i:i + group].reshape(-1, n), sites).reshape(b, -1, len(sites))
                              for i in range(0, t, group)], axis=1)  # (B, T, M): p_tσ with sites[m] flipped
    return jnp.einsum("bt,btm->bm", weights, ratios[:, np.arange(t)[:, None], rows])


def _image_rows(sites: np.ndarray, inverse: np.ndarray) -> np.ndarray | None:
    """(T, M) indices r with set(sites[r[t, m]]) = set(inverse[t][sites[m]]): flipping ``sites[m]`` of σ flips
    ``sites[r[t, m]]`` of p_tσ.  None when some image is not a row of ``sites``."""
    index = {frozenset(row): m for m, row in enumerate(sites.tolist())}
    rows = [[index.get(frozenset(inv[row].tolist())) for row in sites] for inv in inverse]
    return None if any(r is None for image in rows for r in image) else np.asarray(rows)


def _project(fn, sigma: jnp.ndarray, perms: np.ndarray, phase: np.ndarray) -> jnp.ndarray:
    """log[(1/n) Σ_t e^{iφ_t} Ψ(σ[..., perms[t]])] for (B, N) σ; ``fn`` maps (M, N) → (M,) log Ψ."""
    sigma = jnp.asarray(sigma)
    b, n = sigma.shape
    t = perms.shape[0]
    shifted = sigma[:, jnp.asarray(perms)].reshape(b * t, n)
    log_psi = fn(shifted).reshape(b, t)
    terms = log_psi + 1j * jnp.asarray(phase, dtype=log_psi.real.dtype)
    return log_sum_exp(terms, axis=1) - float(np.log(t))


def project(base: nn.Module, lattice: Lattice, k_over_pi: tuple[float, ...]) -> nn.Module:
    """The base model restricted to momentum k (units of π); ValueError names ``k`` if not allowed.

    Models with a ``with_momentum(k_over_pi)`` method (the ConvNeXt: phases over patches plus the
    sum over intra-patch shifts) return their own exact, cheaper projection; others are wrapped.
    """
    k = tuple(float(x) for x in np.atleast_1d(np.asarray(k_over_pi, dtype=float)))
    lattice.momentum_index(k)
    if hasattr(base, "with_momentum"):
        return base.with_momentum(k)
    return MomentumProjection(base=base, lattice=lattice, k_over_pi=k)


class PointGroupProjection(nn.Module):
    """Ψ_P(σ) = (1/|G|) Σ_{g∈G} Ψ(gσ): the model ``wrapped`` projected onto the trivial irrep A1 of the point
    group ``group`` (``"rotations"``: C4; ``"full"``: C4v on the square, the reflection on a chain) of ``lattice``.

    The wrapped model's parameters are this module's own (``nn.share_scope``): ``apply`` takes the same
    parameter tree as ``wrapped.apply``.  (The field is not called ``base``: the wrappers it may hold, the
    Marshall prior and ``MomentumProjection``, have a child of that name, which would collide in the shared
    scope.)  The wrapped model's flip ratios pass through (:func:`_projected_flip_ratios`, as for the momentum
    projection); its ``holomorphic_moments`` do not: they do not hold for the sum over g.
    """

    wrapped: nn.Module
    lattice: Lattice
    group: str

    @property
    def holomorphic(self) -> bool:
        """A log-sum-exp of holomorphic log-amplitudes is holomorphic."""
        return bool(getattr(self.wrapped, "holomorphic", False))

    @property
    def has_flip_ratios(self) -> bool:
        return has_fast_path(self.wrapped, "flip_ratios")

    @property
    def has_holomorphic_moments(self) -> bool:
        return False

    def setup(self) -> None:
        nn.share_scope(self, self.wrapped)

    @nn.nowrap
    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's own initial variables: one key gives the same parameters with and without the
        projection (in the shared scope Flax would otherwise draw the grandchildren of a wrapped Marshall prior or
        momentum projection from other keys), so a seed starts from one state whatever ``point_group`` is."""
        if kwargs.get("method") is not None:
            return super().init(rngs, *args, **kwargs)
        return self.wrapped.init(rngs, *args, **kwargs)

    def _orbit(self) -> tuple[np.ndarray, np.ndarray]:
        """(the group's elements (|G|, N) as permutations, their phases: all 0 for the trivial irrep)."""
        perms = self.lattice.point_group(self.group)
        return perms, np.zeros(len(perms))

    def __call__(self, sigma: jnp.ndarray) -> jnp.ndarray:
        return _project(self.wrapped, sigma, *self._orbit())

    def flip_ratios(self, sigma: jax.Array, sites: np.ndarray) -> jax.Array:
        """Ψ_P(σ^(m))/Ψ_P(σ) (B, M) from the wrapped model's own fast ratios (:func:`_projected_flip_ratios`)."""
        return _projected_flip_ratios(self.wrapped, sigma, sites, *self._orbit())


def project_point_group(model: nn.Module, lattice: Lattice, group: str,
                        k_over_pi: tuple[float, ...] | None = None) -> nn.Module:
    """``model`` projected onto A1 of the point group ``group`` (one of ``lattice.POINT_GROUPS``); ``"none"`` returns
    ``model`` itself.  ValueError (naming ``point_group``) where the group does not apply: open boundaries,
    rotations on a chain, a momentum ``k_over_pi`` that the group does not map onto itself."""
    problem = lattice.point_group_problem(group, k_over_pi)
    if problem:
        raise ValueError(problem)
    if group == "none":
        return model
    return PointGroupProjection(wrapped=model, lattice=lattice, group=group)
