"""Effective samples per second of the exchange moves (issue 8, direction 2): for each ``--exchange`` mode and
sweep length, the integrated autocorrelation time τ of E_loc and the split R̂ over the chains, at fixed
parameters of a partly trained state (a run of ``--train`` steps with the default sampler), and the
effective samples per second C·T/(1 + 2τ) / (sampling time).  Sampling only: the local energies of the
recorded samples are computed outside the timing.

    .venv/bin/python benchmarks/sampler_mixing.py                       # ConvNeXt J1-J2 4×4 (issue 8 settings)
    .venv/bin/python benchmarks/sampler_mixing.py --sweeps 8,12,16 --chains 64 --samples-per-chain 128

One CPU device (the measurement is per network evaluation; the mesh splits chains, not the chain length).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax
import numpy as np

from nqs_core.local_energy import local_energies
from nqs_core.sampler import MetropolisSampler
from nqs_core.settings import RunSettings
from nqs_core.stats import integrated_time, split_r_hat
from nqs_core.vmc import VMC

WORKLOAD = dict(hamiltonian="j1j2", lattice="square", L=4, J2=0.5, model="convnext", depth=2, features=8, patch=2,
                kernel=2, samples=1024, chains=16, optimizer="sr")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=60, help="steps of the default run that give the parameters")
    ap.add_argument("--exchanges", default="neighbours,differing-neighbours")
    ap.add_argument("--sweeps", default="8,12,16", help="sub-steps between recorded samples")
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--samples-per-chain", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per point (the median is reported)")
    a = ap.parse_args()

    vmc = VMC(RunSettings(**WORKLOAD, steps=a.train))
    state, stats = vmc.step(vmc.init(), a.train)
    params = state.params
    print(f"parameters after {a.train} steps: E = {float(np.asarray(stats['energy'])[-1]):.4f}, "
          f"acceptance {float(np.asarray(stats['acceptance'])[-1]):.3f}")
    forward, ham = vmc.engine.forward, vmc.engine.hamiltonian
    base = vmc.sampler
    e_loc_fn = jax.jit(lambda s, lp: local_energies(forward, params, ham, s, lp))
    print(f"{'exchange':>22} {'sweep':>5} {'accept':>7} {'tau':>6} {'R-hat':>6} {'ms/call':>8} {'eff. samples/s':>15}")
    for exchange in a.exchanges.split(","):
        for sweep in map(int, a.sweeps.split(",")):
            sampler = dataclasses.replace(
                base, n_chains=a.chains, samples_per_chain=a.samples_per_chain, sweep=sweep,
                thermalization=a.samples_per_chain // 4, differing=exchange.startswith("differing-"),
                bonds=base.bonds if exchange.endswith("neighbours") else None)
            assert isinstance(sampler, MetropolisSampler)
            run = jax.jit(lambda st: sampler.sample(lambda x: forward(params, x), st))
            st = sampler.init(jax.random.key(1))
            st, sigma, lp, acc = jax.block_until_ready(run(st))  # compile + thermalise
            times = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                st, sigma, lp, acc = jax.block_until_ready(run(st))
                times.append(time.perf_counter() - t0)
            c, t, n = sigma.shape
            e = np.asarray(e_loc_fn(sigma.reshape(c * t, n), lp.reshape(c * t))).real.reshape(c, t)
            tau, r_hat = float(integrated_time(e)), float(split_r_hat(e))
            dt = statistics.median(times)
            print(f"{exchange:>22} {sweep:>5} {float(acc):7.3f} {tau:6.2f} {r_hat:6.3f} {1e3 * dt:8.1f} "
                  f"{c * t / (1 + 2 * tau) / dt:15.0f}")


if __name__ == "__main__":
    main()
