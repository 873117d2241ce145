"""NQS Lab vs NetKet on the same VMC workload, side by side (a benchmark, not a test).

    .venv/bin/python benchmarks/netket_side_by_side.py [--repeat 2] [--steps 300]

Workload (issue 3): Heisenberg chain L = 16 (periodic), complex RBM α = 1, 1024 samples, 16 chains,
sweep 16, SR with diagonal shift 0.01 (holomorphic), plain gradient step lr 0.05, float64, 300 steps,
then 8192 samples for the final energy.  Neither side uses a sign rule (NQS Lab's RBM has no Marshall
prior by default; NetKet gets ``sign_rule=False``).  NetKet's Heisenberg uses Pauli matrices: its
energies are divided by 4.  Iterations per second exclude compilation on both sides (NQS Lab compiles
ahead of time; NetKet's first iteration is timed apart).  The two sides alternate, ``--repeat`` times,
so both see the same machine load; the load average is printed with the results.

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


def run_netket(py: str, steps: int, seed: int) -> dict:
    w = WORKLOAD
    cmd = [py, str(ROOT / "benchmarks" / "_netket_workload.py"), "--L", str(w["L"]), "--alpha", str(w["alpha"]),
           "--samples", str(w["samples"]), "--chains", str(w["chains"]), "--sweep", str(w["sweep"]),
           "--diag-shift", str(w["diag_shift"]), "--lr", str(w["lr"]), "--steps", str(steps),
           "--eval-samples", str(w["eval_samples"]), "--seed", str(seed)]
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"NetKet run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ours(steps: int, seed: int) -> dict:
    """Our side, in a fresh subprocess like NetKet's (``python -m nqs_core run --json``)."""
    code = (
        "import json, sys\n"
        "from nqs_core.settings import RunSettings\n"
        "from nqs_core.driver import run\n"
        "s = RunSettings(**json.loads(sys.argv[1]))\n"
        "r = run(s)\n"
        "print(json.dumps({'summary': r.summary, 'energies': [h.energy for h in r.history]}))\n"
    )
    settings = dict(WORKLOAD, steps=steps, seed=seed)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(settings)], capture_output=True, text=True,
                         cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"NQS Lab run failed:\n{out.stderr[-3000:]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    s = d["summary"]
    import nqs_core
    return {
        "engine": f"nqs-lab {nqs_core.__version__}",
        "iterations_per_second": s["iterations_per_second"],
        "first_iteration_seconds": s["compile_seconds"],
        "final_energy": s["final_energy"],
        "final_error": s["final_error"],
        "exact_energy": s["reference_energy"],
        "relative_error": s["relative_error"],
        "parameters": s["parameters"],
        "energies": d["energies"],
        "devices": s["devices"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=2, help="runs per side, alternating (default 2)")
    p.add_argument("--steps", type=int, default=WORKLOAD["steps"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("ours", "netket"), default=None)
    a = p.parse_args()

    py = netket_python() if a.only != "ours" else None
    rows: list[tuple[str, dict]] = []
    load_before = os.getloadavg()
    t0 = time.time()
    for i in range(a.repeat):
        if a.only != "netket":
            log(f"NQS Lab run {i + 1}/{a.repeat} …")
            rows.append(("nqs-lab", run_ours(a.steps, a.seed + i)))
        if a.only != "ours":
            log(f"NetKet run {i + 1}/{a.repeat} …")
            rows.append(("netket", run_netket(py, a.steps, a.seed + i)))
    load_after = os.getloadavg()

    w = WORKLOAD
    print(f"workload: Heisenberg chain L={w['L']} (periodic), complex RBM alpha={w['alpha']}, {w['samples']} samples, "
          f"{w['chains']} chains, sweep {w['sweep']}, SR shift {w['diag_shift']} (holomorphic), lr {w['lr']}, "
          f"{w['dtype']}, {a.steps} steps, final energy from {w['eval_samples']} samples; no sign rule on either side")
    print("energies in the S·S convention H = J Σ S_i·S_j (NetKet's Pauli-matrix energies / 4)")
    exact = next((r["exact_energy"] for _, r in rows if r.get("exact_energy") is not None), None)
    if exact is not None:
        print(f"exact E = {exact:.6f}")
    print(f"{'engine':<10}{'run':>4}{'it/s':>9}{'compile/1st s':>15}{'final E':>13}{'± err':>10}{'rel. error':>12}")
    for i, (name, r) in enumerate(rows):
        print(f"{name:<10}{i // (1 if a.only else 2) + 1:>4}{r['iterations_per_second']:>9.2f}"
              f"{r['first_iteration_seconds']:>15.2f}{r['final_energy']:>13.6f}{r['final_error']:>10.6f}"
              f"{r['relative_error']:>12.2e}")
    ours = [r["iterations_per_second"] for n, r in rows if n == "nqs-lab"]
    theirs = [r["iterations_per_second"] for n, r in rows if n == "netket"]
    if ours and theirs:
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"iterations/s ratio (median NQS Lab / median NetKet): {ratio:.2f}")
        rel_ours = ", ".join(f"{r['relative_error']:.1e}" for n, r in rows if n == "nqs-lab")
        rel_theirs = ", ".join(f"{r['relative_error']:.1e}" for n, r in rows if n == "netket")
        print(f"relative error per run: NQS Lab {rel_ours}; NetKet {rel_theirs}")
    print(f"conditions: {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"{time.time() - t0:.0f} s in all; {rows[0][1]['engine']}"
          + (f"; {next(r['engine'] for n, r in rows if n == 'netket')}" if theirs else ""))

    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"side_by_side-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"workload": dict(w, steps=a.steps), "runs": [{"engine": n, **r} for n, r in rows],
                                "load_average": [load_before, load_after]}, indent=1))
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
