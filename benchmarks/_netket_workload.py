"""NetKet side of the benchmark; runs in NetKet's own venv and prints one JSON object.

Workload (same as ``netket_side_by_side.py``): Heisenberg chain, complex RBM α, MetropolisExchange
with ``sweep_size`` and ``n_discard_per_chain`` = ``--discard``, SR (holomorphic, NetKet's default
solver: CG to relative residual 1e-5, warm-started) with diagonal shift, Sgd, float64.  After the
timed iterations: the energy from ``--eval-samples`` samples, and the exact variational energy of
the final parameters over the Sᶻ = 0 basis (``FullSumState``).
NetKet's Heisenberg operator uses Pauli matrices, so every energy is divided by 4 here to give the
S·S convention of NQS Lab.  The optimisation itself runs on the Pauli operator (4 H_S·S: gradient and
SR update 4× those of H_S·S at the same parameters, so lr means 4× the step of NQS Lab's lr), or
on H_S·S with ``--spin-units``.  The first iteration (tracing and compilation) is timed apart; the
iterations per second count the remaining iterations only.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import netket as nk  # noqa: E402

PAULI_TO_SPIN = 0.25  # S·S = σ·σ / 4


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--alpha", type=int, default=1)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--sweep", type=int, default=16)
    p.add_argument("--diag-shift", type=float, default=0.01)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-samples", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--discard", type=int, default=None,
                   help="n_discard_per_chain (sweeps discarded per chain per step; NetKet 3.23's default is 5)")
    p.add_argument("--sign-rule", action="store_true", help="NetKet's Marshall basis rotation (default off)")
    p.add_argument("--spin-units", action="store_true",
                   help="optimise H/4 (S·S units, as NQS Lab) instead of NetKet's Pauli-matrix operator; the "
                        "SR update, and so the meaning of --lr, scales with H")
    a = p.parse_args()

    g = nk.graph.Chain(a.L, pbc=True)
    hi = nk.hilbert.Spin(0.5, N=a.L, total_sz=0)
    ham = nk.operator.Heisenberg(hi, g, J=1.0, sign_rule=a.sign_rule)
    to_spin = PAULI_TO_SPIN
    if a.spin_units:
        ham, to_spin = PAULI_TO_SPIN * ham, 1.0
    sampler = nk.sampler.MetropolisExchange(hi, graph=g, n_chains=a.chains, sweep_size=a.sweep)
    model = nk.models.RBM(alpha=a.alpha, param_dtype=complex)
    vs = nk.vqs.MCState(sampler, model, n_samples=a.samples, seed=a.seed, sampler_seed=a.seed,
                        n_discard_per_chain=a.discard)
    driver = nk.driver.VMC(ham, nk.optimizer.Sgd(learning_rate=a.lr), variational_state=vs,
                           preconditioner=nk.optimizer.SR(diag_shift=a.diag_shift, holomorphic=True))

    energies: list[float] = []

    def record(step: int, log: dict, drv: object) -> bool:
        energies.append(float(np.real(log["Energy"].mean)) * to_spin)
        return True

    t0 = time.perf_counter()
    driver.run(1, out=None, show_progress=False, callback=record)
    jax.block_until_ready(vs.parameters)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    driver.run(a.steps - 1, out=None, show_progress=False, callback=record)
    jax.block_until_ready(vs.parameters)
    rest = time.perf_counter() - t0

    # variational energy of the final parameters, exact over the Sᶻ = 0 basis (no sampling noise)
    variational = float(np.real(nk.vqs.FullSumState(hi, model, variables=vs.variables).expect(ham).mean)) * to_spin
    vs.n_samples = a.eval_samples
    final = vs.expect(ham)
    exact = float(nk.exact.lanczos_ed(ham)[0]) * to_spin
    energy = float(np.real(final.mean)) * to_spin
    print(json.dumps({
        "engine": f"netket {nk.__version__} (jax {jax.__version__})",
        "steps": a.steps,
        "first_iteration_seconds": first,
        "iterations_per_second": (a.steps - 1) / rest,
        "final_energy": energy,
        "final_error": float(final.error_of_mean) * to_spin,
        "exact_energy": exact,
        "relative_error": abs(energy - exact) / abs(exact),
        "variational_energy": variational,
        "variational_relative_error": abs(variational - exact) / abs(exact),
        "discard_per_chain": int(vs.n_discard_per_chain),
        "parameters": int(vs.n_parameters),
        "energies": energies,
        "sign_rule": a.sign_rule,
        "spin_units": a.spin_units,
    }))


if __name__ == "__main__":
    main()
