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

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from nqs_core.lattice import Lattice
from nqs_core.models.symmetry import _project, log_sum_exp, marshall_momentum, phases, shift_permutation

DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def log_cosh(z: jnp.ndarray) -> jnp.ndarray:
    """log cosh z for complex z, stable for large |Re z| (cosh is even: fold Re z ≥ 0)."""
    z = jnp.where(z.real < 0, -z, z)
    return z + jnp.log1p(jnp.exp(-2.0 * z)) - jnp.log(2.0).astype(z.real.dtype)


class DepthwiseConv(nn.Module):
    """Depthwise convolution over the patch grid: out_r^μ = b^μ + Σ_j w_j^μ h_{r+j−c}^μ, j ∈ {0..k−1}^d,
    c = (k−1)//2 per axis (Flax "SAME" alignment).  Circular: indices wrap (commutes with patch
    translations); otherwise zero-padded.  Written as a sum of shifted copies: on CPU this is much
    faster than XLA's grouped convolution, and its gradient too."""

    features: int
    kernel: int
    dim: int
    circular: bool = True
    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, h: jnp.ndarray) -> jnp.ndarray:  # h: (B, *grid, F)
        k, d = self.kernel, self.dim
        init = nn.initializers.normal(1.0 / np.sqrt(k**d))
        w = self.param("kernel", init, (k,) * d + (self.features,), self.param_dtype)
        b = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        c = (k - 1) // 2
        axes = tuple(range(1, 1 + d))
        if not self.circular:
            pad = [(0, 0)] + [(c, k - 1 - c)] * d + [(0, 0)]
            hp = jnp.pad(h, pad)
        out = b
        for j in np.ndindex(*(k,) * d):
            if self.circular:
                shifted = jnp.roll(h, tuple(c - o for o in j), axis=axes)
            else:
                shifted = hp[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(j, h.shape[1:1 + d]))]
            out = out + w[j] * shifted
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

    # ----- layers -----------------------------------------------------------------------
    def setup(self) -> None:
        self.check()
        d, F, dt = self.lattice.dim, self.features, self.param_dtype
        kw = dict(dtype=dt, param_dtype=dt)
        self.embed = nn.Dense(F, use_bias=False, name="patch_embedding", **kw)
        self.convs = [DepthwiseConv(F, self.kernel, d, self.lattice.pbc, dt, name=f"dwconv_{i}")
                      for i in range(self.depth)]
        self.norms = [nn.LayerNorm(name=f"norm_{i}", **kw) for i in range(self.depth)]
        self.ups = [nn.Dense(self.expansion * F, name=f"expand_{i}", **kw) for i in range(self.depth)]
        self.downs = [nn.Dense(F, name=f"contract_{i}", **kw) for i in range(self.depth)]
        self.final_norm = nn.LayerNorm(name="final_norm", **kw)
        # small readout weights: log Ψ starts nearly flat (the default scale gives |Ψ| spread over
        # ~e^30 on 16 sites, and Metropolis chains then stall)
        self.readout = nn.Dense(2 * F, name="readout", kernel_init=nn.initializers.normal(0.1 / np.sqrt(F)),
                                **kw)  # [Re z, Im z]
        # patch-level visible bias: log φ += Σ_r Σ_x (a_x + i b_x) σ_{r,x}; with b_x = ±π/2 on the
        # A sites of a patch it is exactly the Marshall sign e^{iπ N↑_A} (up to a global phase)
        self.visible = self.param("visible_bias", nn.initializers.normal(0.1), (self.patch**d, 2), dt)
        if self.has_momentum_head():
            self.momentum_head = nn.Dense(2, name="momentum_head", kernel_init=nn.initializers.normal(1.0 / np.sqrt(F)), **kw)

    # ----- forward ----------------------------------------------------------------------
    def patches(self, sigma: jnp.ndarray) -> jnp.ndarray:
        """(B, N) → (B, *grid, s^d): the sites of each patch (grid axes (p,) or (p_y, p_x))."""
        b, s, L = sigma.shape[0], self.patch, self.lattice.L
        if self.lattice.dim == 1:
            return sigma.reshape(b, L // s, s)
        x = sigma.reshape(b, L // s, s, L // s, s)  # site = x + L*y → [b, p_y, u_y, p_x, u_x]
        return x.transpose(0, 1, 3, 2, 4).reshape(b, L // s, L // s, s * s)

    def encode(self, sigma: jnp.ndarray) -> jnp.ndarray:
        """Patch embedding and residual blocks: (B, N) → (B, *grid, F), equivariant under patch shifts."""
        h = self.embed(self.patches(jnp.asarray(sigma).astype(self.param_dtype)))
        for conv, norm, up, down in zip(self.convs, self.norms, self.ups, self.downs):
            h = h + down(nn.gelu(up(norm(conv(h)))))
        return h

    def log_amplitude(self, sigma: jnp.ndarray) -> jnp.ndarray:
        """log φ_k(σ): the readout before the intra-patch projection, (B,) complex."""
        x = self.patches(jnp.asarray(sigma).astype(self.param_dtype))
        linear = jnp.einsum("b...x,xc->bc", x, self.visible)
        h = self.final_norm(self.encode(sigma))
        h = h.reshape(h.shape[0], -1, h.shape[-1])  # (B, P, F)
        re, im = jnp.split(self.readout(jnp.sum(h, axis=1)), 2, axis=-1)
        out = jnp.sum(log_cosh(re + 1j * im), axis=-1) + linear[:, 0] + 1j * linear[:, 1]
        if self.has_momentum_head():
            c = self.momentum_head(h)
            terms = c[..., 0] + 1j * (c[..., 1] + jnp.asarray(self.patch_phases(), dtype=c.dtype))
            out = out + log_sum_exp(terms, axis=1)
        return out

    def __call__(self, sigma: jnp.ndarray) -> jnp.ndarray:
        shifts = self.intra_patch_shifts()
        if len(shifts) == 1:
            return self.log_amplitude(sigma)
        perms = np.stack([shift_permutation(self.lattice, u) for u in shifts])
        return _project(self.log_amplitude, sigma, perms, phases(self.lattice, shifts, self.k))


def from_settings(settings: Any, lattice: Lattice) -> nn.Module:
    """The ConvNeXt of a RunSettings (depth, features, patch, kernel, dtype, k, sign).

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
        kernel=int(settings.kernel),
        k_over_pi=tuple(float(x) for x in k),
        param_dtype=DTYPES[settings.dtype],
    )
    model.check()
    return model
