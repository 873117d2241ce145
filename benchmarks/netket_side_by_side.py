"""NQS Lab vs NetKet on the same VMC workload, side by side, over several seeds (a benchmark, not a test).

    .venv/bin/python benchmarks/netket_side_by_side.py [--seeds 0,1,2,3] [--steps 300] [--only ours|netket]

Workload (issue 3): Heisenberg chain L = 16 (periodic), complex RBM α = 1 (normal(0.01) init on both
sides), 1024 samples, 16 chains, sweep 16, ``samples_per_chain // 10`` = 6 discarded sweeps per chain
per step on both sides (NetKet's ``n_discard_per_chain`` is set to it; its own default is 5), SR with
diagonal shift 0.01 (holomorphic), plain gradient step lr 0.05, float64, 300 steps.  Neither side
uses a sign rule.  NetKet's Heisenberg uses Pauli matrices: its energies are divided by 4, and since
its operator is 4 H_S·S, so its gradient and SR update at lr are NQS Lab's at 4 lr.  By default
(``--units spin``) both sides optimise H_S·S at lr 0.05 (NetKet gets its operator / 4); with
``--units pauli`` lr 0.05 applies to NetKet's own operator and NQS Lab runs at lr 0.2, the same update.

Per seed and side: iterations per second (compilation excluded: NQS Lab compiles ahead of time,
NetKet's first iteration is timed apart), the final energy from 8192 samples (as the issue asks) and
the exact variational energy of the final parameters over the 12870 Sᶻ = 0 states (no sampling
noise: the accuracy the comparison is judged on), each as a relative error to the exact ground
energy.  Single seeds are noisy (a run can stall in a local minimum), so the medians over the
seeds decide.  For each seed our run goes first, then NetKet's, so machine load hits both sides;
the load average is printed.  Our run is ``driver.run`` with no background reference/ED thread
(``reference=False, exact=False``); the exact energies are computed after the timed steps, as on
NetKet's side.

NetKet 3.23 lives in its own virtual environment, ``.venv-netket`` at the repository root, created on
first use from a Python 3.12 or 3.11 found via pyenv or PATH (``pip install netket==3.23.*``); NetKet runs
in a subprocess (``benchmarks/_netket_workload.py``) that prints JSON.  Results are also written to
``benchmarks/results/side_by_side-<time>.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETKET_VENV = ROOT / ".venv-netket"
NETKET_REQUIREMENT = "netket==3.23.*"
WORKLOAD = dict(hamiltonian="heisenberg", lattice="chain", L=16, model="rbm", alpha=1, sign="none",
                samples=1024, chains=16, sweep=16, optimizer="sr", sr_solver="dense", diag_shift=0.01,
                lr=0.05, dtype="float64", steps=300, eval_samples=8192,
                steps_per_call=10)  # ours fuses 10 steps per jitted call; statistics still per step
DISCARD = WORKLOAD["samples"] // WORKLOAD["chains"] // 10  # our default thermalisation, given to NetKet too
PAULI_SCALE = 4.0  # NetKet's Heisenberg operator / H_S·S


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def find_python() -> str:
    """A Python 3.12 or 3.11 interpreter for NetKet's venv (pyenv versions first, then PATH)."""
    candidates: list[str] = []
    pyenv_root = os.environ.get("PYENV_ROOT")
    if not pyenv_root and shutil.which("pyenv"):
        pyenv_root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    for root in filter(None, [pyenv_root, str(Path.home() / ".pyenv")]):
        for minor in ("3.12", "3.11"):
            candidates += sorted(glob.glob(f"{root}/versions/{minor}*/bin/python"), reverse=True)
    for name in ("python3.12", "python3.11"):
        if shutil.which(name):
            candidates.append(shutil.which(name))
    for c in candidates:
        ok = subprocess.run([c, "-c", "import sys, venv; assert sys.version_info[:2] in ((3, 11), (3, 12))"],
                            capture_output=True)
        if ok.returncode == 0:
            return c
    raise SystemExit("netket_side_by_side: no Python 3.11 or 3.12 found (pyenv or PATH) for NetKet's venv")


def netket_python() -> str:
    """The interpreter of .venv-netket, created and filled with NetKet on first use."""
    py = NETKET_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import netket"], capture_output=True).returncode == 0:
        return str(py)
    base = find_python()
    log(f"creating {NETKET_VENV} from {base} and installing {NETKET_REQUIREMENT} (first use only)")
    subprocess.run([base, "-m", "venv", str(NETKET_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", NETKET_REQUIREMENT], check=True)
    return str(py)


def run_netket(py: str, steps: int, seed: int, units: str) -> dict:
    w = WORKLOAD
    cmd = [py, str(ROOT / "benchmarks" / "_netket_workload.py"), "--L", str(w["L"]), "--alpha", str(w["alpha"]),
           "--samples", str(w["samples"]), "--chains", str(w["chains"]), "--sweep", str(w["sweep"]),
           "--diag-shift", str(w["diag_shift"]), "--lr", str(w["lr"]), "--steps", str(steps),
           "--eval-samples", str(w["eval_samples"]), "--seed", str(seed), "--discard", str(DISCARD)]
    if units == "spin":
        cmd.append("--spin-units")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"NetKet run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


OURS = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from scipy.sparse.linalg import eigsh
from nqs_core.basis import basis_codes, decode, sparse_matrix
from nqs_core.settings import RunSettings
from nqs_core.driver import run
from nqs_core.vmc import VMC, local_energies
s = RunSettings(**json.loads(sys.argv[1]))
r = run(s, reference=False, exact=False)  # no background ED thread next to the timed steps
vmc = VMC(s)
params = jax.device_get(r.state.params)
basis = jnp.asarray(decode(basis_codes(s.L, True), s.L))
lp = vmc.model.apply(params, basis)
p = jnp.exp(2 * (lp.real - jnp.max(lp.real)))
e_loc = local_energies(vmc.model.apply, params, vmc.hamiltonian, basis, lp)  # network passes, not the fast path
variational = float(jnp.sum(p * e_loc.real) / jnp.sum(p))
exact = float(eigsh(sparse_matrix(vmc.hamiltonian), k=1, which="SA")[0][0])
print(json.dumps({"summary": r.summary, "energies": [h.energy for h in r.history], "exact": exact,
                  "variational": variational, "discard": vmc.sampler.thermalization}))
"""


def our_lr(units: str) -> float:
    """Our lr for the same SR update as NetKet's: NetKet's Pauli operator is 4 H_S·S, so its gradient and SR
    update at lr are those of H_S·S at 4 lr (measured: identical updates on the full basis)."""
    return WORKLOAD["lr"] * (PAULI_SCALE if units == "pauli" else 1.0)


def run_ours(steps: int, seed: int, units: str) -> dict:
    """Our side, in a fresh subprocess like NetKet's (with the persistent compilation cache)."""
    settings = dict(WORKLOAD, steps=steps, seed=seed, lr=our_lr(units))
    out = subprocess.run([sys.executable, "-c", OURS, json.dumps(settings)], capture_output=True, text=True,
                         cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"NQS Lab run failed:\n{out.stderr[-3000:]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    s, exact = d["summary"], d["exact"]
    import nqs_core
    return {
        "engine": f"nqs-lab {nqs_core.__version__}",
        "iterations_per_second": s["iterations_per_second"],
        "first_iteration_seconds": s["compile_seconds"],
        "final_energy": s["final_energy"],
        "final_error": s["final_error"],
        "exact_energy": exact,
        "relative_error": abs(s["final_energy"] - exact) / abs(exact),
        "variational_energy": d["variational"],
        "variational_relative_error": abs(d["variational"] - exact) / abs(exact),
        "discard_per_chain": d["discard"],
        "parameters": s["parameters"],
        "energies": d["energies"],
        "devices": s["devices"],
    }


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds, one run per side each (default 0,1,2,3)")
    p.add_argument("--steps", type=int, default=WORKLOAD["steps"])
    p.add_argument("--only", choices=("ours", "netket"), default=None)
    p.add_argument("--units", choices=("spin", "pauli"), default="spin",
                   help="the Hamiltonian the lr applies to: H_S·S (default; NetKet optimises its operator / 4) or "
                        "NetKet's Pauli-matrix operator (NQS Lab then runs at 4 lr on H_S·S, the same update)")
    a = p.parse_args()
    try:
        seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    except ValueError:
        print(f"netket_side_by_side: --seeds must be comma-separated integers; got {a.seeds!r}", file=sys.stderr)
        raise SystemExit(2) from None
    if not seeds:
        print("netket_side_by_side: --seeds needs at least one seed", file=sys.stderr)
        raise SystemExit(2)

    py = netket_python() if a.only != "ours" else None
    sides = [s for s in ("nqs-lab", "netket") if a.only is None or s == {"ours": "nqs-lab"}.get(a.only, a.only)]
    rows: dict[str, list[dict]] = {s: [] for s in sides}
    load_before = os.getloadavg()
    t0 = time.time()
    for seed in seeds:
        if "nqs-lab" in rows:
            log(f"NQS Lab, seed {seed} …")
            rows["nqs-lab"].append(dict(run_ours(a.steps, seed, a.units), seed=seed))
        if "netket" in rows:
            log(f"NetKet, seed {seed} …")
            rows["netket"].append(dict(run_netket(py, a.steps, seed, a.units), seed=seed))
    load_after = os.getloadavg()

    w = WORKLOAD
    print(f"workload: Heisenberg chain L={w['L']} (periodic), complex RBM alpha={w['alpha']}, {w['samples']} samples, "
          f"{w['chains']} chains, sweep {w['sweep']}, {DISCARD} discarded sweeps per chain per step, SR shift "
          f"{w['diag_shift']} (holomorphic), {w['dtype']}, {a.steps} steps; no sign rule on either side")
    if a.units == "pauli":
        print(f"lr {w['lr']} on NetKet's Pauli-matrix operator (4 H_S·S) = lr {our_lr(a.units):g} on H_S·S for NQS Lab: "
              "the same SR update")
    else:
        print(f"lr {w['lr']} on H_S·S on both sides (NetKet optimises its operator / 4)")
    print("energies in the S·S convention H = J Σ S_i·S_j (NetKet's Pauli-matrix energies / 4)")
    exact = next(r["exact_energy"] for rs in rows.values() for r in rs)
    print(f"exact E0 = {exact:.6f}; 'MC' = final energy from {w['eval_samples']} samples, "
          "'exact var.' = variational energy of the final parameters over the whole Sz=0 basis")
    print(f"{'engine':<9}{'seed':>5}{'it/s':>8}{'compile/1st s':>15}{'MC E':>12}{'± err':>10}{'MC rel.':>10}"
          f"{'exact var. E':>14}{'var. rel.':>11}")
    for name, rs in rows.items():
        for r in rs:
            print(f"{name:<9}{r['seed']:>5}{r['iterations_per_second']:>8.2f}{r['first_iteration_seconds']:>15.2f}"
                  f"{r['final_energy']:>12.6f}{r['final_error']:>10.6f}{r['relative_error']:>10.2e}"
                  f"{r['variational_energy']:>14.6f}{r['variational_relative_error']:>11.2e}")
    for name, rs in rows.items():
        print(f"median {name}: {median(rs, 'iterations_per_second'):.2f} it/s, MC rel. error "
              f"{median(rs, 'relative_error'):.2e}, exact variational rel. error "
              f"{median(rs, 'variational_relative_error'):.2e}")
    if len(rows) == 2:
        ours, theirs = rows["nqs-lab"], rows["netket"]
        ratio = median(ours, "iterations_per_second") / median(theirs, "iterations_per_second")
        acc = median(ours, "variational_relative_error") <= median(theirs, "variational_relative_error")
        print(f"iterations/s ratio (median NQS Lab / median NetKet): {ratio:.2f}; median exact variational error "
              f"{'equal or better' if acc else 'worse'} on our side")
    engines = "; ".join(dict.fromkeys(r["engine"] for rs in rows.values() for r in rs))
    print(f"conditions: {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; {time.time() - t0:.0f} s in all; {engines}")

    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"side_by_side-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"workload": dict(w, steps=a.steps, discard_per_chain=DISCARD, units=a.units,
                                                 our_lr=our_lr(a.units)), "seeds": seeds,
                                "runs": [{"engine": n, **r} for n, rs in rows.items() for r in rs],
                                "load_average": [load_before, load_after]}, indent=1))
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
