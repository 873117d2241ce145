"""Gradients, natural-gradient preconditioners (SR, MinSR) and the optax transformations.

All parameters are treated as REAL: a complex leaf w contributes (Re w, Im w) to the vector θ.
One formulation then serves holomorphic and non-holomorphic networks.  With normalised sample
weights p_s (1/N_s for Monte Carlo, |ψ|²/Z for exact enumeration), ⟨·⟩ = Σ_s p_s(·) and

    O_k(σ) = ∂ log ψ(σ)/∂θ_k (complex),   ΔO = O − ⟨O⟩,   ΔE = E_loc − ⟨E_loc⟩,
    gradient   g_k = ∂E/∂θ_k = 2 Re⟨ΔO_k* ΔE⟩,
    SR         S = Re⟨ΔO†ΔO⟩,   d = (S + λI)⁻¹ g,
    MinSR      Ō = √p ΔO stacked as [Re Ō; Im Ō] (2N_s × N_p), ε̄ = 2√p ΔE stacked likewise,
               d = Ōᵀ(ŌŌᵀ + λI)⁻¹ ε̄   (Chen & Heyl, Nat. Phys. 2024),

so that ŌᵀŌ = S and Ōᵀε̄ = g: by the push-through identity SR and MinSR give the same d for
every λ > 0.  The direction d (g itself for sgd/adam/adamw) is fed to an optax transformation
and the update is θ ← θ − η_t·tx(d).  Scale convention: d = (S + λ)⁻¹ g is NetKet's (3.23:
gradient 2F, SR solves S x = 2F), so a learning rate means the same in both; in the language of
DESIGN.md §3 (δθ = −η'(S + λ)⁻¹F with F = g/2) the imaginary-time step is η' = 2η.  The engine
divides d by the Hamiltonian's energy scale (its largest |coupling|, 1 for J = 1 and h ≤ 1), so one
learning rate means the same imaginary-time step at every field: at h = 10 the raw step was 10×
larger and the TFIM chain stalled at 1.7e-2.

Precision: O and the products Ō†Ō (or ŌŌ†) are formed in the network's precision (float32 or
float64; in float32 the product is ~2× faster); the shift and the Cholesky solve are float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nqs_core.chunking import chunk_size, map_in_chunks
from nqs_core.devices import per_device

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]


# ----- real parameter vector ---------------------------------------------------------------
@dataclass(frozen=True)
class RealRavel:
    """θ ↔ parameter pytree.  Layout: θ = (Re of all complex leaves, Im of all complex leaves,
    all real leaves), each block in tree order, so that for an all-complex pytree with flat
    complex vector w, θ = (Re w, Im w).  Static (hashable) layout."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]

    @classmethod
    def of(cls, params: PyTree) -> "RealRavel":
        leaves, treedef = jax.tree_util.tree_flatten(params)
        return cls(treedef, tuple(tuple(x.shape) for x in leaves), tuple(jnp.dtype(x.dtype) for x in leaves))

    def _is_complex(self) -> list[bool]:
        return [bool(jnp.issubdtype(d, jnp.complexfloating)) for d in self.dtypes]

    @property
    def real_dtype(self):
        return jnp.result_type(*(jnp.finfo(d).dtype for d in self.dtypes))

    @property
    def part_shapes(self) -> list[tuple[int, ...]]:
        """The shapes of ``parts``, in θ's order."""
        cx = self._is_complex()
        complex_shapes = [s for s, c in zip(self.shapes, cx) if c]
        return complex_shapes + complex_shapes + [s for s, c in zip(self.shapes, cx) if not c]

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.part_shapes)

    @property
    def all_complex(self) -> bool:
        return all(self._is_complex())

    def parts(self, params: PyTree) -> list[jax.Array]:
        """The real arrays whose flattened concatenation is θ, in θ's order (leaves keep their shapes)."""
        leaves = jax.tree_util.tree_leaves(params)
        cx = self._is_complex()
        out = [x.real for x, c in zip(leaves, cx) if c] + [x.imag for x, c in zip(leaves, cx) if c]
        return out + [x for x, c in zip(leaves, cx) if not c]

    def from_parts(self, parts: list[jax.Array]) -> PyTree:
        """The parameter pytree of ``parts`` (the inverse of ``parts``)."""
        cx = self._is_complex()
        nc = sum(cx)
        re, im, real = iter(parts[:nc]), iter(parts[nc:2 * nc]), iter(parts[2 * nc:])
        leaves = [(next(re) + 1j * next(im) if c else next(real)).astype(dtype) for c, dtype in zip(cx, self.dtypes)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def concat(self, parts: list[jax.Array]) -> jax.Array:
        """θ from its parts (or from their cotangents: a real vector in θ's order)."""
        return jnp.concatenate([jnp.ravel(p).astype(self.real_dtype) for p in parts])

    def ravel(self, params: PyTree) -> jax.Array:
        return self.concat(self.parts(params))

    def unravel(self, theta: jax.Array) -> PyTree:
        shapes = self.part_shapes
        ends = np.cumsum([math.prod(s) for s in shapes])[:-1]
        return self.from_parts([p.reshape(s) for p, s in zip(jnp.split(theta, ends), shapes)])


# ----- log-derivatives ---------------------------------------------------------------------
def jacobian_holomorphic(apply: ApplyFn, params: PyTree, sigma: jax.Array, chunk: int | None = None) -> jax.Array:
    """O_c (N_s, N_c) complex: ∂ log ψ(σ_s)/∂w_k for the flat complex parameter vector w of a
    holomorphic network (all leaves complex), one reverse pass per sample, in cache-sized chunks."""
    def rows(p, x):
        def one(s):
            g = jax.grad(lambda q: apply(q, s[None])[0], holomorphic=True)(p)
            return jnp.concatenate([leaf.reshape(-1) for leaf in jax.tree_util.tree_leaves(g)])

        return map_in_chunks(jax.vmap(one), x, chunk or jacobian_chunk(sigma.shape[1]))

    return per_device(rows, (False, True))(params, sigma)


def jacobian_chunk(n_sites: int) -> int:
    """Samples per chunk of a Jacobian: the network pass's chunk (measured: 1024 samples of the 4×4
    ConvNeXt in 0.12–0.23 s unchunked, 0.05 s in chunks of 32–64)."""
    return chunk_size(n_sites)


def jacobian(apply: ApplyFn, params: PyTree, sigma: jax.Array, holomorphic: bool = False,
             chunk: int | None = None) -> jax.Array:
    """O (N_s, N_p) complex: O_sk = ∂ log ψ(σ_s)/∂θ_k for the real parameter vector θ (RealRavel).

    Holomorphic networks need one reverse pass per sample (∂/∂Re w = O_w, ∂/∂Im w = i O_w);
    otherwise the real and imaginary parts of log ψ are differentiated separately.  Computed in
    chunks of ``chunk`` samples (default ``jacobian_chunk``), each device on its own samples
    (``devices.per_device``).
    """
    rr = RealRavel.of(params)
    if holomorphic and rr.all_complex:
        o_c = jacobian_holomorphic(apply, params, sigma, chunk)
        return jnp.concatenate([o_c, 1j * o_c], axis=1)

    def row(parts, s):
        # one forward pass, then the reverse pass twice: for real θ the cotangent 1 pulls back ∂Re log ψ and
        # −i pulls back ∂Im log ψ.  20 % faster than jacrev's reverse pass vmapped over the pair (Re, Im)
        # (ConvNeXt J1-J2 4×4, 512 samples, one CPU device: 19.6 against 24 ms).  Differentiated with respect
        # to θ's parts, not θ: the pullback of θ cut by slices added every leaf's gradient into a zero vector of
        # all of θ, per sample (4×4 ConvNeXt, 1024 samples, one device: 53 → 43 ms).
        lp, pull = jax.vjp(lambda ps: apply(rr.from_parts(ps), s[None])[0], parts)
        one = jnp.ones_like(lp)
        return rr.concat(pull(one)[0]) + 1j * rr.concat(pull(-1j * one)[0])

    def rows(parts, x):
        def block(xs):
            return jax.vmap(row, in_axes=(None, 0))(parts, xs)

        return map_in_chunks(block, x, chunk or jacobian_chunk(sigma.shape[1]))

    return per_device(rows, (False, True))(rr.parts(params), sigma)


def centred(x: jax.Array, weights: jax.Array) -> jax.Array:
    """x − ⟨x⟩ along axis 0 with normalised weights."""
    return x - jnp.tensordot(weights, x, axes=(0, 0))


def gradient_from_jacobian(o: jax.Array, e_loc: jax.Array, weights: jax.Array) -> jax.Array:
    """g = 2 Re⟨ΔO* ΔE⟩ (N_p,), real."""
    de = centred(e_loc, weights)
    return 2.0 * jnp.real(jnp.conj(centred(o, weights)).T @ (weights * de))


def gradient_vjp(apply: ApplyFn, params: PyTree, sigma: jax.Array, e_loc: jax.Array,
                 weights: jax.Array) -> jax.Array:
    """g = 2 Re⟨O* ΔE⟩ (ΔE centred, so ⟨O⟩ drops out) by one reverse pass over the batch."""
    rr = RealRavel.of(params)
    theta = rr.ravel(params)
    de = centred(e_loc, weights)
    _, vjp = jax.vjp(lambda th: apply(rr.unravel(th), sigma).astype(e_loc.dtype), theta)
    # JAX's vjp of a real→complex map with cotangent c is Re Σ_s c_s ∂f_s/∂θ (no conjugation).
    (g,) = vjp(jnp.conj(weights * de))
    return 2.0 * g


# ----- natural-gradient directions ---------------------------------------------------------
GRAM_BLOCK = 256  # rows per block of ``gram``: narrower blocks multiply too slowly (measured: 4 blocks of 218 best)


def gram(b: jax.Array) -> jax.Array:
    """b bᵀ for b (P, R), computing only the blocks on and above the diagonal (a BLAS syrk in XLA ops).

    The rows are cut into ⌊P/``GRAM_BLOCK``⌋ blocks (at least 1); block row i is one product
    b_i[b_i … b_last]ᵀ, and the blocks below the diagonal are the transposes of those above, so k blocks cost
    (k+1)/2k of the full product.  Measured on the 4×4 ConvNeXt's S (872 × 872 from 2048 rows, float64,
    2 cores): 96 ms full, 71 ms in 4 blocks.  Exact: every entry is the same dot product as in b bᵀ.  Both operands
    contract their minor axis and every block is a slice of contiguous rows, so XLA copies nothing to
    feed the products (as bᵀ's column blocks, the 4×4 ConvNeXt's SR spent 36 of its 62 ms on copies)."""
    p = b.shape[0]
    k = max(1, p // GRAM_BLOCK)
    if k == 1:
        return b @ b.T
    edges = np.linspace(0, p, k + 1).astype(int)
    rows = [b[edges[i]:edges[i + 1]] @ b[edges[i]:].T for i in range(k)]  # block row i, columns ≥ edge i
    upper = {(i, j): rows[i][:, edges[j] - edges[i]:edges[j + 1] - edges[i]] for i in range(k) for j in range(i, k)}
    return jnp.block([[upper[i, j] if j >= i else upper[j, i].T for j in range(k)] for i in range(k)])


def _scaled(o: jax.Array, e_loc: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """ō = √p ΔO in O's (the network's) precision and ε = 2√p ΔE: S = Re ō†ō, g = Re ō†ε."""
    root = jnp.sqrt(weights)
    return (root[:, None] * centred(o, weights)).astype(o.dtype), 2.0 * root * centred(e_loc, weights)


def _stacked(o: jax.Array, e_loc: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """ō, b = [Re ō; Im ō]ᵀ (N_p, 2N_s) and ε (``_scaled``): S = b bᵀ, g = b [Re ε; Im ε]."""
    ob, eb = _scaled(o, e_loc, weights)
    return ob, jnp.concatenate([ob.real.T, ob.imag.T], axis=1), eb


def _shift(mat_diag_mean: jax.Array, diag_shift: jax.Array) -> jax.Array:
    """λ, floored at 1e-10·mean diag so that λ = 0 stays solvable (pseudo-inverse-like)."""
    return jnp.maximum(diag_shift, 1e-10 * mat_diag_mean)


def sr_dense(o: jax.Array, e_loc: jax.Array, weights: jax.Array, diag_shift: jax.Array,
             product_dtype: Any = None) -> jax.Array:
    """d = (S + λI)⁻¹ g with S = Re⟨ΔO†ΔO⟩, g = 2 Re⟨ΔO* ΔE⟩, by Cholesky.  The product S = b bᵀ in
    ``product_dtype`` (default: O's) after centring in O's precision, the solve in float64.

    A product in a lower precision than b's is redone in b's when the solve fails: its rounding, relative
    to the largest entries of S, can exceed λ when one sample's O is far larger than the others' (a
    configuration near a node of ψ), and S + λI is then no longer positive definite (the 6×6 J1-J2
    ConvNeXt in mixed precision stopped on a NaN at step 387, docs/results/research_recipes.md)."""
    _, b, eb = _stacked(o, e_loc, weights)
    f = (b @ jnp.concatenate([eb.real, eb.imag]).astype(b.dtype)).astype(jnp.float64)

    def solve(product: Any) -> jax.Array:
        s = gram(b.astype(product)).astype(jnp.float64)
        lam = _shift(jnp.mean(jnp.diag(s)), diag_shift)
        c = jax.scipy.linalg.cho_factor(s + lam * jnp.eye(s.shape[0], dtype=s.dtype))
        return jax.scipy.linalg.cho_solve(c, f)

    product = b.dtype if product_dtype is None else jnp.dtype(product_dtype)
    d = solve(product)
    if product == b.dtype:
        return d
    return jax.lax.cond(jnp.all(jnp.isfinite(d)), lambda: d, lambda: solve(b.dtype))


def sr_dense_holomorphic(o_c: jax.Array, e_loc: jax.Array, weights: jax.Array, diag_shift: jax.Array) -> jax.Array:
    """The same d as ``sr_dense`` for a holomorphic network, from the complex Jacobian O_c
    (N_s, N_c) only: with θ = (Re w, Im w), S = [[Re S_c, −Im S_c], [Im S_c, Re S_c]] and
    g = 2(Re F_c, Im F_c), F_c = ⟨ΔO_c* ΔE⟩, so d = (Re δ, Im δ) with (S_c + λ)δ = 2F_c, solved by a
    complex Cholesky (half the flops of the real 2N_c system).  S_c = Ō_c†Ō_c is built from real products
    (Re S_c = [Re Ō; Im Ō]ᵀ[Re Ō; Im Ō], Im S_c = M − Mᵀ with M = Re Ōᵀ Im Ō): 3/4 of the
    work of a complex product, and XLA's real GEMM is about 2× faster than its complex one."""
    ob, b, eb = _stacked(o_c, e_loc, weights)
    s_re = gram(b).astype(jnp.float64)  # products in the network's precision, the solve in float64
    m = (ob.real.T @ ob.imag).astype(jnp.float64)
    s_c = jax.lax.complex(s_re, m - m.T)
    f_c = (jnp.conj(ob).T @ eb.astype(ob.dtype)).astype(jnp.complex128)  # 2F_c
    lam = _shift(jnp.mean(jnp.diag(s_re)), diag_shift)
    c = jax.scipy.linalg.cho_factor(s_c + lam * jnp.eye(s_c.shape[0], dtype=s_c.dtype))
    delta = jax.scipy.linalg.cho_solve(c, f_c)  # complex Cholesky: half the flops of the real 2N_c system
    return jnp.concatenate([delta.real, delta.imag])


def sr_from_moments(second: jax.Array, mean: jax.Array, force: jax.Array, diag_shift: jax.Array) -> jax.Array:
    """The ``sr_dense_holomorphic`` direction from the moments of a holomorphic network's O_c:
    ``second`` = ⟨O_c* O_cᵀ⟩, ``mean`` = ⟨O_c⟩, ``force`` = ⟨O_c* ΔE⟩ = F_c (e.g. from
    ``RBM.holomorphic_moments``).  S_c = ⟨O_c* O_cᵀ⟩ − ⟨O_c⟩*⟨O_c⟩ᵀ; (S_c + λ)δ = 2F_c; d = (Re δ, Im δ).
    The subtraction costs precision only relative to |⟨O⟩|² ε, far below the shift λ."""
    s_c = second - jnp.outer(jnp.conj(mean), mean)
    s_c = 0.5 * (s_c + jnp.conj(s_c.T))  # exactly Hermitian
    lam = _shift(jnp.mean(jnp.real(jnp.diag(s_c))), diag_shift)
    c = jax.scipy.linalg.cho_factor(s_c + lam * jnp.eye(s_c.shape[0], dtype=s_c.dtype))
    delta = jax.scipy.linalg.cho_solve(c, 2.0 * force)
    return jnp.concatenate([delta.real, delta.imag])


def minsr(o: jax.Array, e_loc: jax.Array, weights: jax.Array, diag_shift: jax.Array) -> jax.Array:
    """d = Ōᵀ(ŌŌᵀ + λI)⁻¹ ε̄ in sample space (2N_s × 2N_s), Ō = [Re; Im] of √p ΔO, ε̄ = [Re; Im] of 2√p ΔE."""
    ob, eb = _scaled(o, e_loc, weights)
    a = jnp.concatenate([ob.real, ob.imag], axis=0)  # (2N_s, N_p)
    eps = jnp.concatenate([eb.real, eb.imag])
    t = gram(a).astype(jnp.float64)  # the product in the network's precision, the solve in float64
    lam = _shift(jnp.mean(jnp.diag(t)) * t.shape[0] / a.shape[1], diag_shift)
    c = jax.scipy.linalg.cho_factor(t + lam * jnp.eye(t.shape[0], dtype=t.dtype))
    return a.T.astype(jnp.float64) @ jax.scipy.linalg.cho_solve(c, eps.astype(jnp.float64))


def sr_cg(apply: ApplyFn, params: PyTree, sigma: jax.Array, e_loc: jax.Array, weights: jax.Array,
          diag_shift: jax.Array, tol: float = 1e-10, maxiter: int = 200, x0: jax.Array | None = None) -> jax.Array:
    """d = (S + λI)⁻¹ g by conjugate gradients with matrix-free S v = Re⟨ΔO* (ΔO v)⟩,
    O v by a forward (jvp) pass and ΔO† w by a reverse (vjp) pass over the batch."""
    rr = RealRavel.of(params)
    theta = rr.ravel(params)
    f = lambda th: apply(rr.unravel(th), sigma).astype(e_loc.dtype)
    _, jvp_fn = jax.linearize(f, theta)
    _, vjp_fn = jax.vjp(f, theta)
    de = centred(e_loc, weights)
    (force,) = vjp_fn(jnp.conj(2.0 * weights * de))  # g = 2 Re Σ p O* ΔE

    def s_times(v):
        ov = jvp_fn(v)
        dov = ov - jnp.sum(weights * ov)
        (sv,) = vjp_fn(jnp.conj(weights * dov))
        return sv + diag_shift * v

    d, _ = jax.scipy.sparse.linalg.cg(s_times, force, x0=x0, tol=tol, maxiter=maxiter)
    return d


def trust_region_scale(d: jax.Array, g: jax.Array, diag_shift: jax.Array, eta: jax.Array,
                       max_step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(factor ≤ 1 that shortens the step η·d to Fubini–Study length at most ``max_step``, the length
    of η·d before it).

    A step δθ changes the normalised state by the length ℓ = √(δθᵀ S δθ) (S: the quantum geometric
    tensor).  For a direction solved from (S + λ)d = g, dᵀSd = dᵀg − λ‖d‖², so ℓ(η·d) needs no
    product with S.  Bounding ℓ is the natural gradient's trust region, the norm constraint of the
    FermiNet's KFAC (Pfau et al., Phys. Rev. Research 2, 033429 (2020)) and of SPRING (Goldshlager,
    Abrahamsen & Lin, J. Comput. Phys. 2024).  ``max_step`` = inf: factor 1 (no bound)."""
    length = eta * jnp.sqrt(jnp.maximum(d @ g - diag_shift * (d @ d), 0.0))
    return jnp.where(length > max_step, max_step / length, 1.0), length


# ----- optax transformations and schedules -------------------------------------------------
def transformation(optimizer: str, momentum: jax.Array | float = 0.0) -> optax.GradientTransformation:
    """The optax transformation applied to the direction (before the learning rate):
    sgd/sr/minsr: momentum trace (plain when momentum = 0); adam: scale_by_adam;
    adamw: scale_by_adam + decoupled weight decay 1e-4 (optax.adamw's default)."""
    if optimizer in ("sgd", "sr", "minsr"):
        return optax.trace(decay=momentum)
    if optimizer == "adam":
        return optax.scale_by_adam()
    if optimizer == "adamw":
        return optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(1e-4))
    raise ValueError(f"optimizer must be one of sgd, adam, adamw, sr, minsr; got {optimizer!r}")


def learning_rate(schedule: str, lr: jax.Array, step: jax.Array, total_steps: jax.Array) -> jax.Array:
    """η_t: constant, or cosine decay to 0 over ``total_steps`` (optax.cosine_decay_schedule
    with alpha = 0, written out so that lr and the step count stay run-time values)."""
    if schedule == "constant":
        return jnp.asarray(lr)
    if schedule == "cosine":
        t = jnp.minimum(step, total_steps) / jnp.maximum(total_steps, 1)
        return lr * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
    raise ValueError(f"schedule must be one of constant, cosine; got {schedule!r}")


def optimizer_chain(optimizer: str, schedule: str) -> Callable[..., optax.GradientTransformation]:
    """The optax chain applied to a preconditioned direction d: the optimizer's transformation
    (``transformation``), then the learning rate and its schedule (``learning_rate``), so that
    θ ← θ + chain(d) = θ − η_t·tx(d).  Wrapped in ``optax.inject_hyperparams``: lr,
    momentum and total_steps live in the optimizer state as run-time values (``with_hyperparameters``),
    so one compiled step serves every value.  Call the result with the three to get the chain."""
    def make(lr, momentum, total_steps):
        eta = lambda count: learning_rate(schedule, lr, count, total_steps)  # noqa: E731
        return optax.chain(transformation(optimizer, momentum), optax.scale_by_learning_rate(eta))

    return optax.inject_hyperparams(make, static_args=())


def with_hyperparameters(opt_state: Any, **values: jax.Array) -> Any:
    """``opt_state`` of an ``optimizer_chain`` with new run-time hyperparameters (dtypes kept)."""
    hp = dict(opt_state.hyperparams)
    for k, v in values.items():
        hp[k] = jnp.asarray(v, dtype=jnp.asarray(hp[k]).dtype)
    return opt_state._replace(hyperparams=hp)


__all__ = ["RealRavel", "gram", "jacobian", "gradient_from_jacobian", "gradient_vjp", "sr_dense",
           "sr_dense_holomorphic", "sr_from_moments", "minsr", "sr_cg", "transformation", "learning_rate",
           "trust_region_scale",
           "jacobian_holomorphic", "optimizer_chain", "with_hyperparameters"]
