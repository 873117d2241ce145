"""Where the time of one VMC step goes: sampling, local energies, SR matrix, SR solve, statistics.

    .venv/bin/python benchmarks/profile_step.py [--repeat 20] [--L 16] [--samples 1024] ...

Each part of the engine's step is jitted on its own and timed (median of ``--repeat`` calls after
a warm-up call, ``block_until_ready``), on the benchmark workload by default (Heisenberg chain 16,
complex RBM α=1, 1024 samples, 16 chains, sweep 16, dense holomorphic SR).  The engine's RBM path
is timed part by part: local energies from ``RBM.flip_ratios``, S_c and F_c from
``RBM.holomorphic_moments`` (no Jacobian), then the Cholesky solve.  For comparison, the generic
holomorphic path (Jacobian O, then S = O†O and Cholesky) that other models take.  The fused step
(everything in one call, as the driver runs it, including the per-step observables) is timed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp

from nqs_core.optimizers import jacobian_holomorphic, sr_dense_holomorphic, sr_from_moments
from nqs_core.settings import RunSettings
from nqs_core.stats import chain_statistics
from nqs_core.vmc import VMC, flip_ratio_fn, local_energies


def timed(fn, *args, repeat: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--lattice", default="chain")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--sweep", type=int, default=16)
    p.add_argument("--alpha", type=int, default=1)
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()

    s = RunSettings(hamiltonian="heisenberg", lattice=a.lattice, L=a.L, alpha=a.alpha, samples=a.samples,
                    chains=a.chains, sweep=a.sweep, optimizer="sr", sr_solver="dense", diag_shift=0.01, lr=0.05)
    vmc = VMC(s)
    state = vmc.init()
    model, ham, sampler = vmc.model, vmc.hamiltonian, vmc.sampler

    sample = jax.jit(lambda prm, st: sampler.sample(lambda x: model.apply(prm, x), st))
    _, sigma, lp, _ = sample(state.params, state.sampler)
    c, t, n = sigma.shape
    flat, lpf = sigma.reshape(c * t, n), lp.reshape(-1)
    weights = jnp.full((c * t,), 1.0 / (c * t))
    e_loc_fn = jax.jit(lambda prm, x, l: local_energies(model.apply, prm, ham, x, l, ratios=flip_ratio_fn(model)))
    e_loc = e_loc_fn(state.params, flat, lpf)
    jac_fn = jax.jit(lambda prm, x: jacobian_holomorphic(model.apply, prm, x))
    o_c = jac_fn(state.params, flat)
    sr_fn = jax.jit(lambda o, e: sr_dense_holomorphic(o, e, weights, jnp.asarray(0.01)))
    moments_fn = jax.jit(lambda prm, x, e: model.apply(prm, x, weights, e - weights @ e, method="holomorphic_moments"))
    moments = moments_fn(state.params, flat, e_loc)
    solve_fn = jax.jit(lambda m: sr_from_moments(*m, jnp.asarray(0.01)))
    stats_fn = jax.jit(lambda e: chain_statistics(e.real.reshape(c, t), n))
    log_psi_fn = jax.jit(lambda prm, x: model.apply(prm, x))

    parts = {
        f"sampling ({c} chains x {t} samples, sweep {a.sweep}, thermalisation {sampler.thermalization} sweeps)":
            timed(sample, state.params, state.sampler, repeat=a.repeat),
        f"local energies ({c * t} x {ham.max_conn} connected, RBM flip ratios)":
            timed(e_loc_fn, state.params, flat, lpf, repeat=a.repeat),
        f"SR matrix S_c and force F_c ({o_c.shape[1]} complex parameters, RBM moments)":
            timed(moments_fn, state.params, flat, e_loc, repeat=a.repeat),
        "SR solve (Cholesky of S_c + shift)": timed(solve_fn, moments, repeat=a.repeat),
        "statistics (tau, R-hat)": timed(stats_fn, e_loc, repeat=a.repeat),
    }
    generic = {
        f"Jacobian O ({c * t} x {o_c.shape[1]} complex)": timed(jac_fn, state.params, flat, repeat=a.repeat),
        "S = O†O and Cholesky": timed(sr_fn, o_c, e_loc, repeat=a.repeat),
    }
    one_batch = timed(log_psi_fn, state.params, flat, repeat=a.repeat)
    fused = {k: timed(lambda st: vmc.step(st, k), state, repeat=max(5, a.repeat // k)) / k for k in (1, 10)}

    print(f"profile: {s.hamiltonian} {s.lattice} L={s.L}, RBM alpha={s.alpha} ({vmc.n_parameters} real parameters), "
          f"{s.samples} samples; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; jax {jax.__version__}")
    total = sum(parts.values())
    for name, sec in parts.items():
        print(f"  {sec * 1e3:9.2f} ms  {100 * sec / total:5.1f} %  {name}")
    print(f"  {total * 1e3:9.2f} ms  sum of the parts")
    print("  generic holomorphic SR path (models without the RBM shortcuts), for comparison:")
    for name, sec in generic.items():
        print(f"  {sec * 1e3:9.2f} ms          {name}")
    print(f"  {one_batch * 1e3:9.2f} ms  (one log psi pass over the {c * t} samples, for scale)")
    for k, sec in fused.items():
        print(f"  {sec * 1e3:9.2f} ms  fused step, {k} step(s) per call  -> {1 / sec:.1f} it/s")


if __name__ == "__main__":
    main()
