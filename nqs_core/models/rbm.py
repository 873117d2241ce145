"""Complex restricted Boltzmann machine (Carleo & Troyer, Science 355, 602 (2017)).

log ψ(σ) = Σ_i a_i σ_i + Σ_j log cosh(θ_j),   θ_j = b_j + Σ_i W_ij σ_i,   j = 1..αN,
with complex a, b, W: a holomorphic function of its parameters.

``RBM.flip_ratios`` gives ψ(σ')/ψ(σ) for configurations σ' that differ from σ by a few flipped
spins (local energies of the Heisenberg and Ising models) without a network pass per σ'.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.models.log_cosh import log_cosh, sum_log_cosh  # noqa: F401  (log_cosh re-exported)


def flip_patterns(k: int) -> np.ndarray:
    """(P, K) float64, P = 2^(K−1): the relative signs r ∈ {±1}^K with r_0 = +1 of K flipped spins;
    row q has r_{i+1} = −1 where bit i of q is set."""
    n_pat = 2 ** (k - 1)
    return np.array([[1] + [1 - 2 * ((q >> i) & 1) for i in range(k - 1)] for q in range(n_pat)], np.float64)


def pattern_picker(x: jax.Array, sites: np.ndarray, s0: jax.Array):
    """``pick(t)``: (P, M, ...) -> (B, M, ...), the entry of the pattern of each (σ, m) (``flip_patterns``):
    index q with bit i set when σ_{k_{i+1}} = −σ_{k0}.  ``x`` (B, N) is σ, ``s0`` (B, M, 1) is σ_{k0}."""
    k = sites.shape[1]
    if k == 1:
        return lambda t: t[0][None]
    n_pat = 2 ** (k - 1)
    rel = x[:, sites[:, 1:]] * s0  # (B, M, K−1)
    q = jnp.sum(jnp.where(rel < 0, (1 << np.arange(k - 1)).astype(np.int32), 0), axis=-1)[:, :, None]

    def pick(t):
        out = t[n_pat - 1][None]
        for i in range(n_pat - 2, -1, -1):
            out = jnp.where(q == i, t[i][None], out)
        return out

    return pick


def product_and_condition(fr: jax.Array, fi: jax.Array, rel2: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(Re Π_j f_j, Im Π_j f_j, Σ_j rel2_j) over the last axis for f = fr + i fi, in one variadic
    reduction, so XLA fuses the factors into it instead of materialising (B, M, H) arrays."""

    def combine(x, y):
        (xr, xi, xc), (yr, yi, yc) = x, y
        return xr * yr - xi * yi, xr * yi + xi * yr, xc + yc

    zero = jnp.zeros((), fr.dtype)
    return jax.lax.reduce((fr, fi, rel2), (zero + 1, zero, zero), combine, (2,))


def within_tolerance(ratio: jax.Array, cond: jax.Array, n_hidden: int, atol: float) -> jax.Array:
    """Whether every ratio is finite and its rounding error is ≤ atol·max(1, |ratio|).

    Error of Π_j f_j ≲ 4ε|ratio| Σ_j s_j/|f_j| with s_j = |c_j| + |t s_j|; (Σ_j s_j/|f_j|)² ≤ H Σ_j s_j²/|f_j|²
    and s_j² ≤ 2(|c_j|² + |t s_j|²), so err² ≤ 2H (4ε)² |ratio|² ``cond`` with cond = Σ_j (|c_j|² + |t s_j|²)/|f_j|².
    """
    abs2 = ratio.real**2 + ratio.imag**2
    err2 = 2 * n_hidden * (4 * float(np.finfo(np.float64).eps)) ** 2 * abs2 * cond
    return jnp.all((err2 <= atol**2 * jnp.maximum(1.0, abs2)) & (abs2 < jnp.inf))


class RBM(nn.Module):
    """Complex RBM with hidden-unit density ``alpha`` and a visible bias."""

    alpha: int = 1
    param_dtype: Any = jnp.complex128
    use_visible_bias: bool = True
    init_std: float = 0.01

    holomorphic = True  # log ψ is holomorphic in the complex parameters

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        n = sigma.shape[-1]
        init = nn.initializers.normal(self.init_std)
        W = self.param("kernel", init, (n, self.alpha * n), self.param_dtype)
        b = self.param("hidden_bias", init, (self.alpha * n,), self.param_dtype)
        a = self.param("visible_bias", init, (n,), self.param_dtype) if self.use_visible_bias else None
        h = W.shape[1]
        if jnp.iscomplexobj(W):  # σ is real: one real product x·[Re W, Im W, Re a, Im a] (2× faster on CPU)
            x = sigma.astype(W.real.dtype)
            cols = [W.real, W.imag] + ([a.real[:, None], a.imag[:, None]] if a is not None else [])
            y = x @ jnp.concatenate(cols, axis=1)
            theta = jax.lax.complex(y[..., :h], y[..., h : 2 * h]) + b
            vis = jax.lax.complex(y[..., 2 * h], y[..., 2 * h + 1]) if a is not None else None
        else:
            x = sigma.astype(W.dtype)
            theta = x @ W + b
            vis = x @ a if a is not None else None
        out = sum_log_cosh(theta)
        return out + vis if vis is not None else out

    def flip_ratios(self, sigma: jax.Array, sites: np.ndarray, atol: float = 1e-12) -> jax.Array:
        """ψ(σ^(m))/ψ(σ) (B, M) complex128, σ^(m) = σ with the spins at ``sites[m]`` flipped: the fast
        product of ``flip_ratios_fast`` when its error bound is within ``atol``·max(1, |ratio|) for
        every entry, else (the whole batch, ``lax.cond``) network passes over the σ^(m)."""
        ratio, ok = self.flip_ratios_fast(sigma, sites, atol)
        m = np.shape(sites)[0]

        def plain(_):
            flips = np.ones((m, sigma.shape[-1]), np.int8)
            flips[np.arange(m)[:, None], np.asarray(sites)] = -1
            sp = (sigma[:, None, :] * jnp.asarray(flips, sigma.dtype)[None]).reshape(-1, sigma.shape[-1])
            lp = self.__call__(jnp.concatenate([sigma, sp]))
            bsz = sigma.shape[0]
            return jnp.exp((lp[bsz:].reshape(bsz, m) - lp[:bsz, None]).astype(jnp.complex128))

        return jax.lax.cond(ok, lambda _: ratio, plain, None)

    def flip_ratios_fast(self, sigma: jax.Array, sites: np.ndarray, atol: float = 1e-12) -> tuple[jax.Array, jax.Array]:
        """(ψ(σ^(m))/ψ(σ) (B, M) complex128, ok): σ^(m) = σ with the spins at ``sites[m]`` flipped;
        ``sites`` is a static (M, K) integer array (K distinct sites per row, 1 ≤ K ≤ 4).

        Flipping the sites S of σ changes θ by δ = −2 Σ_{k∈S} σ_k W_k and log ψ by −2 Σ_k σ_k a_k, and
        cosh(θ + δ)/cosh θ = cosh δ + tanh θ · sinh δ.  With r_k = σ_k σ_{k0} (k0 = first site of
        the row), δ = −σ_{k0} D with D = 2 Σ_k r_k W_k, so only the 2^(K−1) patterns r need
        cosh D and sinh D (per row m, once per call); per sample there is one tanh θ_j, and per
        (σ, m) a product of αN factors f_j = cosh D_j − σ_{k0} tanh θ_j sinh D_j:
        no transcendental function per connected configuration.  Rounding error of the product:
        ≲ 4ε |ratio| Σ_j (|cosh D_j| + |tanh θ_j sinh D_j|)/|f_j|; ``ok`` is False when a bound of it
        may exceed ``atol``·max(1, |ratio|) for some entry (cancellation, for large weights) or a
        ratio is not finite.
        """
        p = self.variables["params"]
        c128 = jnp.complex128
        W, b = p["kernel"].astype(c128), p["hidden_bias"].astype(c128)
        a = p["visible_bias"].astype(c128) if self.use_visible_bias else None
        sites = np.asarray(sites, dtype=np.int32)
        m, k = sites.shape
        if not 1 <= k <= 4:
            raise ValueError(f"flip_ratios takes 1 to 4 sites per row; got {k}")
        x = sigma.astype(jnp.float64)
        theta = jax.lax.complex(x @ W.real, x @ W.imag) + b  # (B, H)
        tanh = jnp.tanh(theta)[:, None, :]
        # optimization_barrier: materialise the few transcendental values, else XLA fuses (and so
        # recomputes) them into every element of the (B, M, H) products below (measured 10× slower)
        tr, ti = jax.lax.optimization_barrier((tanh.real, tanh.imag))  # (B, 1, H)
        pat = flip_patterns(k)  # (P, K), P = 2^(K−1)
        d = 2.0 * jnp.einsum("pk,mkh->pmh", pat, W[sites])  # (P, M, H)
        cosh_d, sinh_d = jax.lax.optimization_barrier((jnp.cosh(d), jnp.sinh(d)))
        s0 = x[:, sites[:, 0]][:, :, None]  # (B, M, 1) σ_{k0}
        pick = pattern_picker(x, sites, s0)
        cr, ci, sr, si = pick(cosh_d.real), pick(cosh_d.imag), pick(sinh_d.real), pick(sinh_d.imag)
        tsr, tsi = tr * sr - ti * si, tr * si + ti * sr  # tanh θ · sinh D
        fr, fi = cr - s0 * tsr, ci - s0 * tsi
        rel2 = (cr**2 + ci**2 + tsr**2 + tsi**2) / (fr**2 + fi**2)  # s_j²/|f_j|² up to the factor 2
        pr, pi, cond = product_and_condition(fr, fi, rel2)  # (B, M)
        ratio = jax.lax.complex(pr, pi)
        if a is not None:
            av = 2.0 * jnp.einsum("pk,mk->pm", pat, a[sites])[:, :, None]  # (P, M, 1)
            ratio = ratio * jnp.exp(-s0[..., 0] * pick(av)[..., 0])
        return ratio, within_tolerance(ratio, cond, fr.shape[-1], atol)

    def holomorphic_moments(self, sigma: jax.Array, weights: jax.Array,
                            v: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(Σ_s p_s O_s* O_sᵀ, Σ_s p_s O_s, Σ_s p_s O_s* v_s) for O_s = ∂ log ψ(σ_s)/∂w, the flat complex
        parameter vector w in tree order (``jacobian_holomorphic``'s columns), without forming O.

        With σ̂ = (σ, 1) and t̂ = (tanh θ, 1), every log-derivative is an entry of σ̂ ⊗ t̂ (∂/∂W_ij = σ_i t_j,
        ∂/∂b_j = t_j, ∂/∂a_i = σ_i), so Σ_s p_s O*_k O_l = G[(i, i'), (j, j')] (or its conjugate for j > j') with
        G = Pᵀ diag(p) Q over the pairs i ≤ i' (P_s = σ̂_i σ̂_i') and j ≤ j' (Q_s = t̂_j* t̂_j'): a product of
        (N+1)(N+2)/2 × B by B × (H+1)(H+2)/2 instead of B × N_p², ~6× fewer flops than Oᴴ diag(p) O.
        """
        p = self.variables["params"]
        W = p["kernel"]
        if not jnp.iscomplexobj(W):
            raise ValueError("holomorphic_moments needs complex parameters")
        n, h = W.shape
        x = sigma.astype(W.real.dtype)
        theta = jax.lax.complex(x @ W.real, x @ W.imag) + p["hidden_bias"]
        one = jnp.ones_like(x[:, :1])
        s_hat = jnp.concatenate([x, one], axis=1)  # (B, N+1) real
        t_hat = jnp.concatenate([jnp.tanh(theta), one.astype(theta.dtype)], axis=1)  # (B, H+1)
        iu, ju = np.triu_indices(n + 1)
        ku, lu = np.triu_indices(h + 1)
        pmat = s_hat[:, iu] * s_hat[:, ju]  # (B, U)
        qmat = jnp.conj(t_hat[:, ku]) * t_hat[:, lu]  # (B, V)
        wp = weights.astype(x.dtype)[:, None] * pmat
        g = jax.lax.complex(wp.T @ qmat.real, wp.T @ qmat.imag)  # (U, V)
        # pair index tables: pair(i, i') for all i, i' (symmetric), pair(j, j') with a conjugation flag
        pidx = np.zeros((n + 1, n + 1), np.int32)
        pidx[iu, ju] = pidx[ju, iu] = np.arange(len(iu))
        qidx = np.zeros((h + 1, h + 1), np.int32)
        qidx[ku, lu] = qidx[lu, ku] = np.arange(len(ku))
        lower = np.tril(np.ones((h + 1, h + 1), bool), -1)  # j > j': conjugate
        full = g[pidx][:, :, qidx]  # (N+1, N+1, H+1, H+1) indexed (i, i', j, j')
        full = jnp.where(lower[None, None], jnp.conj(full), full)
        full = jnp.transpose(full, (0, 2, 1, 3)).reshape((n + 1) * (h + 1), (n + 1) * (h + 1))
        # σ̂ ⊗ t̂ entry (i, j) -> flat index i(H+1) + j; parameters in tree order
        where = {"kernel": (np.arange(n)[:, None] * (h + 1) + np.arange(h)[None]).ravel(),
                 "hidden_bias": n * (h + 1) + np.arange(h), "visible_bias": np.arange(n) * (h + 1) + h}
        names = [path[-1].key for path, _ in jax.tree_util.tree_flatten_with_path(p)[0]]
        perm = np.concatenate([where[k] for k in names])
        second = full[perm][:, perm]
        mean = jnp.einsum("bi,bj->ij", (weights[:, None] * s_hat).astype(theta.dtype), t_hat).reshape(-1)[perm]
        vs = (weights * v)[:, None] * s_hat  # (B, N+1) complex
        force = jnp.einsum("bi,bj->ij", vs, jnp.conj(t_hat)).reshape(-1)[perm]
        return second, mean, force
