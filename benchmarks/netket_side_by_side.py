"""NQS Lab vs NetKet on the same VMC workloads, side by side, alternating over seeds (a benchmark, not a test).

    .venv/bin/python benchmarks/netket_side_by_side.py [--workload NAME[,NAME…]] [--seeds 0,1,2,3] [--steps N]
                                                       [--only ours|netket] [--units spin|pauli] [--chains C]
                                                       [--netket-exchange ours|graph] [--netket-operator numba|jax]
                                                       [--netket-chunk-size N]

Workloads (``--workload``, default all, in this order; ``--list`` prints them):

* ``rbm-chain16``: Heisenberg chain L = 16 (periodic), complex RBM α = 1 (each side its own
  normal(0.01) init), 1024 samples, 16 chains, SR shift 0.01 (holomorphic), lr 0.05, 300 steps; no
  sign rule (issue 3's workload, numbers comparable with its README table);
* ``rbm-square4-marshall``: Heisenberg 4×4, complex RBM α = 1 with this project's Marshall sign
  *prior* and NetKet's ``sign_rule=True`` (the Marshall *rotation* of H: same spectrum and
  variational family, so the energies compare directly), 1024 samples, 16 chains, SR 0.01, lr 0.05;
* ``convnext-j1j2-4x4``: J1-J2 4×4 at J2 = 0.5, this project's ConvNeXt (depth 2, features 8,
  patch 2, kernel 2, k = (0,0), float64) trained on BOTH sides (NetKet's ``MCState`` gets the very
  Flax module ``make_model`` builds), from the same initial parameters (a .npz written here),
  1024 samples, SR shift 0.05, lr 0.05, no sign prior, chains from ``RunSettings``' default;
* ``convnext-j1j2-6x6``: the same on 6×6 with kernel 3 (no ED: E0/N = −0.50380965 from the
  literature; only the MC energy of the final evaluation).

Same semantics on both sides: the sampler settings are read from this project's engine
(``VMC(settings).sampler``: chains, samples per chain, sweep, discarded sweeps per chain) and given
to NetKet; with ``--netket-exchange ours`` (default) NetKet's ``MetropolisExchange`` gets this
project's exchange pairs as its clusters (``graph``: NetKet's own clusters, graph distance ≤ 1 for
the Heisenberg workloads, ≤ 2 on the J1-J2 graph, as NetKet users would write it).  Note that
NetKet's exchange rule (3.23) proposes only pairs of unequal spins (with a Hastings correction), as ours
does by default (``exchange = differing-neighbours``; before 2026-12-01 ours proposed any pair of the
list, an equal pair being an identity move): the same moves and acceptance rule on both sides.
SR: both solve (S + λ)δ = g with g = 2 Re⟨ΔO*ΔE⟩ (NetKet's convention) and step θ ← θ − lr·δ; ours
by Cholesky, NetKet by its default CG.  NetKet's Heisenberg uses Pauli matrices (4 H_S·S); by
default (``--units spin``) both optimise H_S·S at the same lr (NetKet gets its operator / 4); with
``--units pauli`` lr applies to NetKet's own operator and ours runs at 4 lr (the same update).

Per seed, our run then NetKet's (A/B/A/B over the seeds, per workload), each in a fresh
subprocess: steps per second with compilation excluded (ours compiles ahead of time; NetKet's
first two iterations are timed apart, since with real parameters it compiles again at its second), the energy from the final evaluation's samples (MC E ± error), for
≤ 16 sites the exact variational energy of the final parameters over the Sᶻ = 0 basis (the
accuracy the comparison is judged on) and each as a relative error to the exact ground energy.
Medians over the seeds decide; the ratio of median steps/s is printed.  Markdown tables on stdout,
JSON in ``benchmarks/results/side_by_side-<time>.json``.

NetKet 3.23 lives in its own virtual environment, ``.venv-netket`` at the repository root, created on
first use from a Python 3.12 or 3.11 found via pyenv or PATH (``pip install netket==3.23.*``); it runs
``benchmarks/_netket_workload.py`` with this checkout on its sys.path (for the ConvNeXt module);
our side runs ``benchmarks/_ours_workload.py`` in this venv.
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
NETKET_VENV = ROOT / ".venv-netket"
NETKET_REQUIREMENT = "netket==3.23.*"
PAULI_SCALE = 4.0  # NetKet's Heisenberg operator / H_S·S
EXACT_MAX_SITES = 16  # ED / exact variational energies up to here (12870 Sᶻ = 0 states)

_CONVNEXT = dict(hamiltonian="j1j2", J1=1.0, J2=0.5, lattice="square", model="convnext", depth=2, features=8,
                 patch=2, k=(0.0, 0.0), dtype="float64", sign="none", samples=1024, optimizer="sr",
                 sr_solver="dense", diag_shift=0.05, lr=0.05, eval_samples=8192, steps_per_call=10)
WORKLOADS: dict[str, dict] = {
    "rbm-chain16": dict(
        title="Heisenberg chain L=16 (periodic), complex RBM alpha=1, no sign rule",
        settings=dict(hamiltonian="heisenberg", lattice="chain", L=16, model="rbm", alpha=1, sign="none",
                      samples=1024, chains=16, sweep=16, optimizer="sr", sr_solver="dense", diag_shift=0.01,
                      lr=0.05, dtype="float64", eval_samples=8192, steps_per_call=10),
        steps=300, shared_init=False),
    "rbm-square4-marshall": dict(
        title="Heisenberg 4x4 (periodic), complex RBM alpha=1, Marshall prior (ours) / sign_rule=True (NetKet)",
        settings=dict(hamiltonian="heisenberg", lattice="square", L=4, model="rbm", alpha=1, sign="marshall",
                      samples=1024, chains=16, optimizer="sr", sr_solver="dense", diag_shift=0.01, lr=0.05,
                      dtype="float64", eval_samples=8192, steps_per_call=10),
        steps=300, shared_init=False),
    "convnext-j1j2-4x4": dict(
        title="J1-J2 4x4 J2=0.5, ConvNeXt depth 2, features 8, patch 2, kernel 2, k=(0,0), float64, on both sides",
        settings=dict(_CONVNEXT, L=4, kernel=2), steps=200, shared_init=True),
    "convnext-j1j2-4x4-mixed": dict(
        title="the same J1-J2 4x4 ConvNeXt; NQS Lab with --dtype mixed (its default for the ConvNeXt: float32 "
              "forward passes and SR product, float64 parameters, Jacobian and solve), NetKet in float64",
        settings=dict(_CONVNEXT, L=4, kernel=2, dtype="mixed"), steps=200, shared_init=True),
    "convnext-j1j2-6x6": dict(
        title="J1-J2 6x6 J2=0.5, ConvNeXt depth 2, features 8, patch 2, kernel 3, k=(0,0), float64, on both sides",
        settings=dict(_CONVNEXT, L=6, kernel=3), steps=100, shared_init=True,
        literature=dict(energy_per_site=-0.50380965, source="literature value for the 6x6 J1-J2 model at "
                                                              "J2 = 0.5 (periodic), E/N = -0.50380965")),
}
WORKLOADS["convnext-j1j2-6x6-mixed"] = dict(
    WORKLOADS["convnext-j1j2-6x6"], settings=dict(_CONVNEXT, L=6, kernel=3, dtype="mixed"),
    title="the same J1-J2 6x6 ConvNeXt; NQS Lab with --dtype mixed (its default for the ConvNeXt), NetKet in float64")


def workload_names(text: str, prog: str) -> list[str]:
    """The workloads of a ``--workload`` value ('all' or a comma-separated list); exit 2 naming the allowed ones."""
    names = list(WORKLOADS) if text == "all" else [x.strip() for x in text.split(",") if x.strip()]
    if not names or any(x not in WORKLOADS for x in names):
        print(f"{prog}: --workload must be 'all' or from {', '.join(WORKLOADS)}; got {text!r}", file=sys.stderr)
        raise SystemExit(2)
    return names


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----- NetKet's venv --------------------------------------------------------------------------
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


# ----- the workload, resolved from this project's engine -----------------------------------------
def save_variables(path: Path, variables) -> None:
    """A variables pytree as a .npz with '/'-joined keys (both sides load it)."""
    import numpy as np
    from flax.traverse_util import flatten_dict

    np.savez(path, **{"/".join(k): np.asarray(v) for k, v in flatten_dict(variables).items()})


def resolve(name: str, a: argparse.Namespace, seeds: list[int], tmp: Path) -> dict:
    """Our settings, the sampler as our engine builds them, NetKet's spec, shared initial parameters."""
    import jax

    from nqs_core.settings import RunSettings
    from nqs_core.vmc import VMC

    w = WORKLOADS[name]
    steps = a.steps if a.steps is not None else w["steps"]
    d = dict(w["settings"], steps=steps)
    if a.chains is not None:
        d["chains"] = a.chains
    if a.units == "pauli":
        d["lr"] = d["lr"] * PAULI_SCALE  # NetKet's lr on 4 H_S·S is ours at 4 lr on H_S·S (the same update)
    settings = RunSettings.from_dict(d).validate()
    vmc = VMC(settings)
    smp, ham, lat = vmc.sampler, vmc.hamiltonian, vmc.lattice
    n = lat.n_sites
    chains = int(getattr(smp, "n_chains", settings.chains))
    per_chain = int(getattr(smp, "samples_per_chain", settings.samples // settings.chains))
    sweep = int(getattr(smp, "sweep", settings.sweep or n))
    discard = int(getattr(smp, "thermalization", settings.thermalization
                          if settings.thermalization is not None else per_chain // 10))
    bonds = smp.bonds
    pairs = [list(map(int, p)) for p in bonds] if bonds is not None else \
        [[i, j] for i in range(n) for j in range(i + 1, n)]

    j1j2 = settings.hamiltonian == "j1j2"
    marshall = settings.sign == "marshall"
    netket = dict(
        graph=dict(kind=settings.lattice, L=settings.L, max_neighbor_order=2 if j1j2 else 1),
        J=[ham.J, ham.J2] if j1j2 else ham.J,
        sign_rule=[marshall, False] if j1j2 else marshall,
        model=(dict(kind="rbm", alpha=settings.alpha) if settings.model == "rbm" and not w["shared_init"]
               else dict(kind="nqs", settings=dict(settings.replace(sign="none").to_dict()))),
        chains=chains, samples=chains * per_chain, sweep=sweep, discard=discard,
        diag_shift=settings.diag_shift, lr=w["settings"]["lr"], holomorphic=settings.model == "rbm",
        steps=steps, eval_samples=settings.eval_samples, spin_units=a.units == "spin",
        exact=n <= EXACT_MAX_SITES)
    if marshall and netket["model"]["kind"] == "nqs":
        raise SystemExit(f"{name}: a shared module with the Marshall prior needs NetKet's sign rule off; not set up")
    netket["operator"] = a.netket_operator
    netket["chunk_size"] = a.netket_chunk_size
    if a.netket_exchange == "ours":
        netket["clusters"] = pairs
    else:
        netket["d_max"] = 2 if j1j2 else 1

    inits: dict[int, str | None] = {}
    for seed in seeds:
        inits[seed] = None
        if w["shared_init"]:
            path = tmp / f"{name}-seed{seed}.npz"
            save_variables(path, jax.device_get(VMC(settings.replace(seed=seed)).init().params))
            inits[seed] = str(path)

    exact = None
    if "literature" in w:
        exact = dict(energy=w["literature"]["energy_per_site"] * n, source=w["literature"]["source"])
    return dict(name=name, title=w["title"], settings=settings.to_dict(), netket=netket, inits=inits, steps=steps,
                n_sites=n, exact=exact, sampler=dict(chains=chains, samples_per_chain=per_chain, sweep=sweep,
                                                     discard_per_chain=discard, exchange_pairs=len(pairs)))


# ----- one run per side --------------------------------------------------------------------------
def run_json(cmd: list[str], env: dict | None, what: str) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ours(w: dict, seed: int) -> dict:
    spec = dict(settings=dict(w["settings"], seed=seed), init=w["inits"][seed],
                eval_samples=w["settings"]["eval_samples"], exact=w["n_sites"] <= EXACT_MAX_SITES)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return run_json([sys.executable, str(HERE / "_ours_workload.py"), json.dumps(spec)], env, "NQS Lab run")


def run_netket(py: str, w: dict, seed: int) -> dict:
    spec = dict(w["netket"], seed=seed, init=w["inits"][seed])
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS", "PYTHONPATH")}
    return run_json([py, str(HERE / "_netket_workload.py"), json.dumps(spec)], env, "NetKet run")


def with_errors(r: dict, exact: float | None) -> dict:
    r = dict(r)
    if exact is not None:
        r["relative_error"] = abs(r["final_energy"] - exact) / abs(exact)
        if r.get("variational_energy") is not None:
            r["variational_relative_error"] = abs(r["variational_energy"] - exact) / abs(exact)
    return r


# ----- report ------------------------------------------------------------------------------------
def fmt(x, spec: str, missing: str = "—") -> str:
    return missing if x is None else format(x, spec)


def median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def report(w: dict, rows: dict[str, list[dict]], a: argparse.Namespace) -> dict:
    s, smp = w["settings"], w["sampler"]
    exact = w["exact"]
    print(f"\n### {w['name']}: {w['title']}\n")
    print(f"{s['samples']} samples = {smp['chains']} chains x {smp['samples_per_chain']}, sweep {smp['sweep']}, "
          f"{smp['discard_per_chain']} discarded sweeps per chain per step, {smp['exchange_pairs']} exchange pairs "
          f"(ours; NetKet: {'the same' if a.netket_exchange == 'ours' else 'its graph clusters'}), SR shift "
          f"{s['diag_shift']}, {w['steps']} steps, {s['dtype']}; "
          + ("same initial parameters on both sides" if w["inits"] and any(w["inits"].values())
             else "each side initialises from its own seed"))
    if a.units == "pauli":
        print(f"lr {w['netket']['lr']} on NetKet's Pauli operator (4 H_S·S) = lr {s['lr']:g} on H_S·S for NQS Lab")
    else:
        print(f"lr {s['lr']:g} on H_S·S on both sides (NetKet optimises its operator / 4)")
    if exact is not None:
        print(f"E0 = {exact['energy']:.8f} ({exact['source']}); energies in S·S units (NetKet's / 4)")
    print()
    print("| engine | seed | steps/s | compile / warm-up s | MC E ± err | MC rel. err | exact var. E | var. rel. err |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rs in rows.items():
        for r in rs:
            print(f"| {name} | {r['seed']} | {fmt(r['iterations_per_second'], '.2f')} | "
                  f"{r['first_iteration_seconds']:.1f} | {r['final_energy']:.5f} ± {r['final_error']:.5f} | "
                  f"{fmt(r.get('relative_error'), '.2e')} | {fmt(r.get('variational_energy'), '.6f')} | "
                  f"{fmt(r.get('variational_relative_error'), '.2e')} |")
    summary: dict = {}
    for name, rs in rows.items():
        m = {k: median(rs, k) for k in ("iterations_per_second", "relative_error", "variational_relative_error")}
        summary[name] = m
        print(f"| **median {name}** | | **{fmt(m['iterations_per_second'], '.2f')}** | | | "
              f"{fmt(m['relative_error'], '.2e')} | | **{fmt(m['variational_relative_error'], '.2e')}** |")
    if len(rows) == 2:
        mo, mn = summary["nqs-lab"], summary["netket"]
        ratio = (mo["iterations_per_second"] / mn["iterations_per_second"]
                 if mo["iterations_per_second"] and mn["iterations_per_second"] else None)
        key = "variational_relative_error" if mo["variational_relative_error"] is not None else "relative_error"
        better = (mo[key] <= mn[key]) if mo[key] is not None and mn[key] is not None else None
        summary["ratio_of_median_steps_per_second"] = ratio
        summary["accuracy_equal_or_better"] = better
        print(f"\nratio of median steps/s (NQS Lab / NetKet): **{fmt(ratio, '.2f')}x**; median "
              f"{'exact variational' if key.startswith('var') else 'MC'} relative error "
              f"{'equal or better' if better else 'worse' if better is not None else 'n/a'} on our side")
    ee = {round(r["exact_energy"], 8) for rs in rows.values() for r in rs if r.get("exact_energy") is not None}
    if len(ee) > 1:
        print(f"WARNING: the two sides' exact ground energies differ: {sorted(ee)} (different Hamiltonians?)")
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="all", help=f"comma-separated, from {', '.join(WORKLOADS)}; default all")
    p.add_argument("--list", action="store_true", help="print the workloads and exit")
    p.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds, one run per side each (default 0,1,2,3)")
    p.add_argument("--steps", type=int, default=None, help="steps per run (default: the workload's)")
    p.add_argument("--only", choices=("ours", "netket"), default=None)
    p.add_argument("--chains", type=int, default=None, help="chains on both sides (default: the workload's, or "
                                                            "RunSettings' default where the workload leaves it)")
    p.add_argument("--units", choices=("spin", "pauli"), default="spin",
                   help="the Hamiltonian the lr applies to: H_S·S (default; NetKet optimises its operator / 4) or "
                        "NetKet's Pauli-matrix operator (NQS Lab then runs at 4 lr on H_S·S, the same update)")
    p.add_argument("--netket-exchange", choices=("ours", "graph"), default="ours",
                   help="NetKet's exchange clusters: our sampler's pairs (default) or NetKet's from the graph "
                        "(d_max 1, or 2 on the J1-J2 graph)")
    p.add_argument("--netket-operator", choices=("numba", "jax"), default="numba",
                   help="NetKet's operator: its default (numba, connected elements on the host) or "
                        "to_jax_operator() (inside jit)")
    p.add_argument("--netket-chunk-size", type=int, default=None,
                   help="MCState chunk_size during training (default: NetKet's, unchunked)")
    a = p.parse_args()
    if a.list:
        for name, w in WORKLOADS.items():
            print(f"{name}: {w['title']}; {w['steps']} steps")
        return
    names = workload_names(a.workload, "netket_side_by_side")
    try:
        seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    except ValueError:
        print(f"netket_side_by_side: --seeds must be comma-separated integers; got {a.seeds!r}", file=sys.stderr)
        raise SystemExit(2) from None
    if not seeds:
        print("netket_side_by_side: --seeds needs at least one seed", file=sys.stderr)
        raise SystemExit(2)
    if a.steps is not None and a.steps < 3:
        print("netket_side_by_side: --steps must be ≥ 3 (NetKet's first two iterations are timed apart)",
              file=sys.stderr)
        raise SystemExit(2)

    sys.path.insert(0, str(ROOT))
    py = netket_python() if a.only != "ours" else None
    sides = [s for s in ("nqs-lab", "netket") if a.only is None or s == {"ours": "nqs-lab"}.get(a.only, a.only)]
    load_before = os.getloadavg()
    t0 = time.time()
    results: dict = {}
    print(f"# NQS Lab vs NetKet, side by side ({time.strftime('%Y-%m-%d %H:%M:%S %Z')})")
    with tempfile.TemporaryDirectory(prefix="nqs-side-by-side-") as tmp:
        for name in names:
            w = resolve(name, a, seeds, Path(tmp))
            rows: dict[str, list[dict]] = {s: [] for s in sides}
            for seed in seeds:
                for side in sides:
                    log(f"{name}: {'NQS Lab' if side == 'nqs-lab' else 'NetKet'}, seed {seed} …")
                    r = run_ours(w, seed) if side == "nqs-lab" else run_netket(py, w, seed)
                    rows[side].append(dict(r, seed=seed))
            if w["exact"] is None:  # ED: ours (sparse H), else NetKet's lanczos
                e0 = next((r["exact_energy"] for s in sides for r in rows[s] if r.get("exact_energy") is not None),
                          None)
                w["exact"] = dict(energy=e0, source="exact diagonalisation in the Sᶻ = 0 sector") if e0 else None
            e0 = w["exact"]["energy"] if w["exact"] else None
            rows = {s: [with_errors(r, e0) for r in rs] for s, rs in rows.items()}
            summary = report(w, rows, a)
            results[name] = dict({k: v for k, v in w.items() if k != "inits"}, summary=summary,
                                 runs=[{"engine": s, **r} for s, rs in rows.items() for r in rs])
    load_after = os.getloadavg()
    engines = "; ".join(dict.fromkeys(r["engine"] for res in results.values() for r in res["runs"]))
    print(f"\nNetKet: {a.netket_operator} operator, chunk_size {a.netket_chunk_size}, exchange clusters "
          f"{'= ours' if a.netket_exchange == 'ours' else 'from its graph'}")
    print(f"conditions: {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; {time.time() - t0:.0f} s in all; {engines}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"side_by_side-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"workloads": results, "seeds": seeds, "units": a.units,
                                "netket_exchange": a.netket_exchange,
                                "netket_operator": a.netket_operator, "netket_chunk_size": a.netket_chunk_size,
                                "load_average": [load_before, load_after],
                                "cpus": os.cpu_count()}, indent=1))
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
