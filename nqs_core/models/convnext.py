"""Translationally-symmetric ConvNeXt NQS (Nutakki, Shokry & Vicentini, arXiv:2505.03466; DESIGN.md §4).

For σ ∈ {±1}^N on a chain (patch = s sites) or an L×L square (patch = s×s sites), s | L:

1. Patch embedding (a stride-s convolution):  h^μ_r = Σ_x W^μ_x σ_{r,x}   (r: patch, x: site in it).
2. ``depth`` residual blocks with circular padding (commute with patch translations):
       h ← h + V·GELU(W·LayerNorm(DepthwiseConv_k(h)))      (W: F → eF, V: eF → F, e = expansion)
3. Complex readout after a final LayerNorm, pooled over patches as in the factored ViT
   (Viteritti, Rende & Becca, PRL 130, 236401 (2023)), z_α = (A + iB)·Σ_r h_r + (a + ib), α = 1..F:
       log φ_k(σ) = Σ_{r,x} (a_x + ib_x) σ_{r,x} + Σ_α log cosh z_α  [+ log Σ_r e^{−ik·r} e^{c_r}]
   The first term is a patch-level visible bias (as in the RBM): with b_x = ±π/2 on the A sites of
   a patch it is the Marshall sign, so the sign structure is one linear step away (DESIGN.md §4.4:
   the sublattice-aware patch embedding lets the network learn the sign without a prior).
   The bracket (c_r = complex linear "momentum head") is present only when some phase e^{−ik·r}
   over patch positions r ∈ sℤ^d differs from 1; then φ_k(shift(σ, s·a)) = e^{ik·s·a} φ_k(σ).
   Without it (k·s ≡ 0 mod 2π, e.g. k = 0) the readout is the invariant Σ log cosh alone.
   (Pooling before the log cosh costs F instead of P·F complex transcendentals per evaluation,
   which dominated the CPU time of the unpooled form.)
4. Projection over the s^d intra-patch shifts u (DESIGN.md §2 restricted to the coset
   representatives; the patch translations are already carried by φ_k):
       Ψ^(k)(σ) = (1/s^d) Σ_u e^{−ik·u} φ_k(shift(σ, u)),
   which equals the full (1/|T|) Σ_t e^{−ik·r_t} φ_k(shift(σ, r_t)): Ψ^(k) has momentum k exactly.

Parameters are real (``param_dtype`` float32 or float64); only the readout is complex, built from
two real maps A and B, so the output log Ψ is complex64 / complex128.  With open boundaries the
convolutions are zero-padded and there is no projection (k must be 0).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from nqs_core.lattice import Lattice
from nqs_core.models.log_cosh import log_cosh, sum_log_cosh  # noqa: F401  (log_cosh re-exported)
from nqs_core.models.symmetry import log_sum_exp, marshall_momentum, phases, shift_permutation

DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "mixed": jnp.float64}
LAYER_NORM_EPS = 1e-6  # flax.linen.LayerNorm's default
PHASE_STD = 0.5  # initial spread of the visible phase bias (visible_bias_init)


def visible_bias_init(phase_std: float, amplitude_std: float = 0.1) -> Any:
    """Initialiser of the visible bias (s^d, 2) = [a_x, b_x]: a_x ~ N(0, amplitude_std²), b_x ~ N(0, phase_std²).

    Why the phase starts wider than the amplitude: near log ψ = const the state is (in Sᶻ = 0) the fully
    symmetric member of the ferromagnetic multiplet, an eigenstate of every Heisenberg-type H.  At any
    real positive ψ, E_loc is real and the energy gradient along every phase parameter vanishes
    (g = 2 Re⟨ΔO*ΔE⟩ with O = i∂φ), so the phase grows only in proportion to where it starts, while
    the staggered amplitude bias has a gradient from the first step, towards the Néel states.  With
    b_x of 0.1 rad, seeds of the J1-J2 4×4 run lost that race: |ψ|² moved onto the Néel states
    (acceptance 0.00–0.05, E ≈ −4 against −8.46) before the sign structure formed.  With 0.5 rad all ten
    seeds kept acceptance ≥ 0.11 (docs/results/research_recipes.md, "Where the early collapse comes from")."""
    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float64) -> jnp.ndarray:
        # each column exactly flax's normal(std) of one draw (a product with a (2,) scale differs in the last
        # bit, and the runs measured in docs/results/ would no longer reproduce)
        amplitude = nn.initializers.normal(amplitude_std)(key, shape, dtype)
        phase = nn.initializers.normal(phase_std)(key, shape, dtype)
        return jnp.stack([amplitude[:, 0], phase[:, 1]], axis=1)

    return init


def _expand(v: jnp.ndarray, ndim: int) -> jnp.ndarray:
    """A per-channel vector (C,) shaped to broadcast against a channels-first (C, ...) array."""
    return v.reshape(v.shape + (1,) * (ndim - 1))


class ChannelDense(nn.Module):
    """``flax.linen.Dense`` (same parameter names, shapes and initialisers) acting on axis 0 of a
    channels-first array (C_in, ...) → (C_out, ...)."""

    features: int
    use_bias: bool = True
    kernel_init: Any = nn.initializers.lecun_normal()
    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", self.kernel_init, (x.shape[0], self.features), self.param_dtype)
        y = jnp.einsum("io,i...->o...", kernel, x)
        if self.use_bias:
            y = y + _expand(self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype), y.ndim)
        return y


class ChannelNorm(nn.Module):
    """``flax.linen.LayerNorm`` over axis 0 of a channels-first array (same parameters):
    (x − mean)/√(var + ε)·scale + bias, mean and var over the channels."""

    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = x.shape[0]
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        xc = x - jnp.mean(x, axis=0, keepdims=True)
        inv = jax.lax.rsqrt(jnp.mean(xc * xc, axis=0, keepdims=True) + LAYER_NORM_EPS)
        return xc * inv * _expand(scale, x.ndim) + _expand(bias, x.ndim)


class DepthwiseConv(nn.Module):
    """Depthwise convolution over the patch grid: out_r^μ = b^μ + Σ_j w_j^μ h_{r+j−c}^μ, j ∈ {0..k−1}^d,
    c = (k−1)//2 per axis (Flax "SAME" alignment).  Circular: indices wrap (commutes with patch
    translations); otherwise zero-padded.  Channels-first input (F, *grid, ...); written as a sum of
    shifted copies (on CPU much faster than XLA's grouped convolution, and its gradient too)."""

    features: int
    kernel: int
    dim: int
    circular: bool = True
    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
        k, d = self.kernel, self.dim
        init = nn.initializers.normal(1.0 / np.sqrt(k**d))
        w = self.param("kernel", init, (k,) * d + (self.features,), self.param_dtype)
        b = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        c = (k - 1) // 2
        axes = tuple(range(1, 1 + d))
        grid = h.shape[1:1 + d]
        if not self.circular:
            hp = jnp.pad(h, [(0, 0)] + [(c, k - 1 - c)] * d + [(0, 0)] * (h.ndim - 1 - d))
        out = _expand(b, h.ndim)
        for j in np.ndindex(*(k,) * d):
            if self.circular:
                shifted = jnp.roll(h, tuple(c - o for o in j), axis=axes)
            else:
                shifted = hp[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(j, grid))]
            out = out + _expand(w[j], h.ndim) * shifted
        return out


class ConvNeXt(nn.Module):
    """ConvNeXt NQS with exact momentum k (``k_over_pi``, units of π); ``apply(params, σ (B,N))`` → log Ψ (B,)."""

    lattice: Lattice
    depth: int = 2
    features: int = 8
    patch: int = 2
    kernel: int = 3
    expansion: int = 2
    k_over_pi: tuple[float, ...] | None = None  # None: k = 0
    param_dtype: Any = jnp.float64
    phase_std: float = PHASE_STD  # initial spread of the visible phase bias b_x (radians; see visible_bias_init)

    # ----- geometry (static, NumPy) -----------------------------------------------------
    @property
    def grid(self) -> tuple[int, ...]:
        return (self.lattice.L // self.patch,) * self.lattice.dim

    @property
    def k(self) -> tuple[float, ...]:
        return (0.0,) * self.lattice.dim if self.k_over_pi is None else tuple(self.k_over_pi)

    def patch_phases(self) -> np.ndarray:
        """−k·r for the patch positions r = s·(p_x[, p_y]) in the order of the flattened grid."""
        g = self.lattice.L // self.patch
        if self.lattice.dim == 1:
            r = np.arange(g)[:, None] * self.patch
        else:  # grid axes are (p_y, p_x), flattened row-major; r = (x, y)
            py, px = np.divmod(np.arange(g * g), g)
            r = np.stack([px, py], axis=1) * self.patch
        return phases(self.lattice, r, self.k)

    def has_momentum_head(self) -> bool:
        return bool(np.any(np.abs(np.exp(1j * self.patch_phases()) - 1) > 1e-9))

    def intra_patch_shifts(self) -> np.ndarray:
        """(s^d, d) displacements u ∈ {0..s−1}^d (only u = 0 with open boundaries)."""
        if not self.lattice.pbc:
            return np.zeros((1, self.lattice.dim), dtype=np.int32)
        u = np.stack(np.meshgrid(*[np.arange(self.patch)] * self.lattice.dim, indexing="ij"), -1)
        return u.reshape(-1, self.lattice.dim)[:, ::-1].astype(np.int32)

    @classmethod
    def from_settings(cls, settings: Any, lattice: Lattice) -> "ConvNeXt":
        """Same as the module-level ``from_settings``."""
        return from_settings(settings, lattice)

    def with_momentum(self, k_over_pi: tuple[float, ...]) -> "ConvNeXt":
        """The same architecture at momentum k (used by ``symmetry.project``)."""
        return self.clone(k_over_pi=tuple(float(x) for x in k_over_pi))

    def check(self) -> None:
        """ValueError naming the setting when the geometry does not fit."""
        L = self.lattice.L
        if self.patch < 1 or L % self.patch:
            allowed = ", ".join(str(p) for p in range(1, L + 1) if L % p == 0)
            raise ValueError(f"patch must divide L = {L} (allowed: {allowed}); got {self.patch}")
        if not 1 <= self.kernel <= L // self.patch:
            raise ValueError(f"kernel must be between 1 and the patch grid L/patch = {L // self.patch}; got {self.kernel}")
        if self.depth < 1 or self.features < 1 or self.expansion < 1:
            raise ValueError("depth, features and expansion must be ≥ 1")
        if self.param_dtype not in (jnp.float32, jnp.float64):
            raise ValueError(f"param_dtype must be float32 or float64; got {self.param_dtype!r}")
        self.lattice.momentum_index(self.k)

    def gather_index(self, shifts: np.ndarray) -> np.ndarray:
        """(s^d, *grid, U) site indices: entry [x, r, u] is the site whose spin is site x of patch r
        in shift(σ, u_u), so ``σᵀ[index]`` is every shifted configuration cut into patches at once."""
        s, L, g = self.patch, self.lattice.L, self.lattice.L // self.patch
        if self.lattice.dim == 1:
            site = (np.arange(g)[None, :] * s + np.arange(s)[:, None])  # [x, p]
        else:  # site = x + L*y, y = p_y s + u_y, x = p_x s + u_x; in-patch index u_y s + u_x
            site = np.arange(L * L).reshape(g, s, g, s).transpose(1, 3, 0, 2).reshape(s * s, g, g)
        perms = np.stack([shift_permutation(self.lattice, u) for u in shifts])  # (U, N)
        return np.moveaxis(perms[:, site], 0, -1).astype(np.int32)

    # ----- layers -----------------------------------------------------------------------
    def setup(self) -> None:
        self.check()
        d, F, dt = self.lattice.dim, self.features, self.param_dtype
        self.embed = ChannelDense(F, use_bias=False, param_dtype=dt, name="patch_embedding")
        self.convs = [DepthwiseConv(F, self.kernel, d, self.lattice.pbc, dt, name=f"dwconv_{i}")
                      for i in range(self.depth)]
        self.norms = [ChannelNorm(dt, name=f"norm_{i}") for i in range(self.depth)]
        self.ups = [ChannelDense(self.expansion * F, param_dtype=dt, name=f"expand_{i}") for i in range(self.depth)]
        self.downs = [ChannelDense(F, param_dtype=dt, name=f"contract_{i}") for i in range(self.depth)]
        self.final_norm = ChannelNorm(dt, name="final_norm")
        # small readout weights: log Ψ starts nearly flat (the default scale gives |Ψ| spread over
        # ~e^30 on 16 sites, and Metropolis chains then stall)
        self.readout = ChannelDense(2 * F, kernel_init=nn.initializers.normal(0.1 / np.sqrt(F)), param_dtype=dt,
                                    name="readout")  # [Re z, Im z]
        # patch-level visible bias: log φ += Σ_r Σ_x (a_x + i b_x) σ_{r,x}; with b_x = ±π/2 on the
        # A sites of a patch it is exactly the Marshall sign e^{iπ N↑_A} (up to a global phase)
        self.visible = self.param("visible_bias", visible_bias_init(self.phase_std), (self.patch**d, 2), dt)
        if self.has_momentum_head():
            self.momentum_head = ChannelDense(2, kernel_init=nn.initializers.normal(1.0 / np.sqrt(F)), param_dtype=dt,
                                              name="momentum_head")

    # ----- forward (channels first: the batch is the minor axis, so every layer vectorises over it)
    def _patches(self, sigma: jnp.ndarray, shifts: np.ndarray) -> jnp.ndarray:
        """(B, N) → (s^d, *grid, U, B): the patches of every shifted configuration shift(σ, u)."""
        x = jnp.asarray(sigma).astype(self.param_dtype).T
        return x[jnp.asarray(self.gather_index(shifts))]

    def _encode(self, x: jnp.ndarray) -> jnp.ndarray:
        """Patch embedding and residual blocks on channels-first patches: (s^d, *grid, ...) → (F, *grid, ...)."""
        h = self.embed(x)
        for conv, norm, up, down in zip(self.convs, self.norms, self.ups, self.downs):
            h = h + down(nn.gelu(up(norm(conv(h)))))
        return h

    def _log_amplitudes(self, x: jnp.ndarray) -> jnp.ndarray:
        """log φ_k for channels-first patches x (s^d, *grid, U, B): the readout, (U, B) complex."""
        d = self.lattice.dim
        grid_axes = tuple(range(1, 1 + d))
        h = self.final_norm(self._encode(x))  # (F, *grid, U, B)
        z = self.readout(jnp.sum(h, axis=grid_axes))  # (2F, U, B)
        F = self.features
        z = jax.lax.complex(z[:F], z[F:])
        linear = jnp.einsum("xc,xub->cub", self.visible, jnp.sum(x, axis=grid_axes))
        out = sum_log_cosh(jnp.moveaxis(z, 0, -1)) + jax.lax.complex(linear[0], linear[1])
        if self.has_momentum_head():
            c = self.momentum_head(h)  # (2, *grid, U, B)
            ph = jnp.asarray(self.patch_phases().reshape(self.grid + (1, 1)), dtype=c.dtype)
            terms = jax.lax.complex(c[0], c[1] + ph)
            out = out + log_sum_exp(terms.reshape(-1, *terms.shape[d:]), axis=0)
        return out

    def encode(self, sigma: jnp.ndarray) -> jnp.ndarray:
        """Patch embedding and residual blocks: (B, N) → (B, *grid, F), equivariant under patch shifts."""
        h = self._encode(self._patches(sigma, np.zeros((1, self.lattice.dim), np.int32)))[..., 0, :]
        return jnp.moveaxis(h, (0, h.ndim - 1), (h.ndim - 1, 0))

    def log_amplitude(self, sigma: jnp.ndarray) -> jnp.ndarray:
        """log φ_k(σ): the readout before the intra-patch projection, (B,) complex."""
        return self._log_amplitudes(self._patches(sigma, np.zeros((1, self.lattice.dim), np.int32)))[0]

    def __call__(self, sigma: jnp.ndarray) -> jnp.ndarray:
        """Ψ^(k)(σ) = (1/s^d) Σ_u e^{−ik·u} φ_k(shift(σ, u)): all shifts in one channels-first pass."""
        shifts = self.intra_patch_shifts()
        out = self._log_amplitudes(self._patches(sigma, shifts))  # (U, B)
        if len(shifts) == 1:
            return out[0]
        ph = jnp.asarray(phases(self.lattice, shifts, self.k), dtype=out.real.dtype)
        return log_sum_exp(out + 1j * ph[:, None], axis=0) - float(np.log(len(shifts)))


def from_settings(settings: Any, lattice: Lattice) -> nn.Module:
    """The ConvNeXt of a RunSettings (depth, features, patch, kernel, precision, k, sign).

    Its momentum is ``settings.k`` (k = 0 when None).  With ``sign="marshall"`` the prior applied
    around this network carries the momentum ``marshall_momentum(lattice)`` (π on chains of
    L = 4n+2), so the network is built at k − k_Marshall and prior × network has momentum k.
    """
    k = tuple(settings.k) if settings.k is not None else (0.0,) * lattice.dim
    if getattr(settings, "sign", "none") == "marshall" and settings.k is not None:
        k = tuple(a - b for a, b in zip(k, marshall_momentum(lattice)))
    model = ConvNeXt(
        lattice=lattice,
        depth=int(settings.depth),
        features=int(settings.features),
        patch=int(settings.patch),
        kernel=int(settings.kernel_size),
        k_over_pi=tuple(float(x) for x in k),
        param_dtype=DTYPES[settings.precision],
    )
    model.check()
    return model
