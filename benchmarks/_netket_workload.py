"""NetKet side of the side-by-side benchmark; runs in NetKet's own venv and prints one JSON object.

    .venv-netket/bin/python benchmarks/_netket_workload.py '<spec as JSON>'

The spec is written by ``netket_side_by_side.py`` from this project's own settings, so both sides
train the same problem:

* ``graph``: ``{"kind": "chain"|"square", "L": L, "max_neighbor_order": 1|2}``; the NetKet graph's
  edges (colour 0: nearest, colour 1: next-nearest neighbours) are checked against this project's
  lattice bonds, so that site i means the same site on both sides;
* ``J`` (one coupling or [J1, J2]), ``sign_rule`` (NetKet's Marshall *basis rotation* of H, the
  counterpart of this project's Marshall sign *prior*: same spectrum, same variational family);
* ``model``: ``{"kind": "rbm", "alpha": α}`` (NetKet's complex RBM) or ``{"kind": "nqs", "settings":
  RunSettings dict}``: this project's Flax module from ``nqs_core.models.make_model`` (the checkout is
  put on sys.path), trained unchanged by NetKet;
* ``init``: a .npz of the initial variables (flattened with "/"), the same the other side starts from;
* ``clusters``: the exchange pairs (this project's sampler's pairs, so both propose the same swaps) or
  ``d_max``: NetKet's clusters from graph distances;
* ``operator``: "numba" (NetKet's default operator) or "jax" (``to_jax_operator()``); ``chunk_size``:
  MCState's (None: NetKet's default, unchunked);
* ``chains``, ``samples``, ``sweep``, ``discard`` (n_discard_per_chain), ``diag_shift``, ``lr``,
  ``holomorphic`` (SR), ``steps``, ``eval_samples``, ``seed``, ``spin_units``, ``exact``.

NetKet's Heisenberg operator uses Pauli matrices (4 H_S·S): every energy printed here is in S·S
units.  With ``spin_units`` the optimisation runs on H/4 (H_S·S, as this project); otherwise on the
Pauli operator (gradient and SR update 4× those of H_S·S, so lr means 4× the step).  SR: NetKet's
``nk.driver.VMC`` with ``nk.optimizer.SR`` (its default QGT and solver: CG, warm-started), ``Sgd``.
The first two iterations are timed apart (tracing and compilation: with real parameters NetKet
compiles again at its second iteration); iterations per second count the remaining ones only.  After them: the energy from ``eval_samples`` fresh samples and, with
``exact``, the exact variational energy of the final parameters over the Sᶻ = 0 basis
(``FullSumState``) and the exact ground energy (``lanczos_ed``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import netket as nk  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAULI_TO_SPIN = 0.25  # S·S = σ·σ / 4
EVAL_CHUNK = 1024  # samples per chunk of the final evaluation
WARMUP = 2  # iterations timed apart (compilation: NetKet compiles at its first and, real parameters, second)


def load_variables(path: str) -> dict:
    """The variables pytree of a .npz whose keys are '/'-joined paths (``netket_side_by_side.save_variables``)."""
    from flax.traverse_util import unflatten_dict

    with np.load(path) as z:
        return unflatten_dict({tuple(k.split("/")): np.asarray(z[k]) for k in z.files})


def ordered(pairs) -> set[tuple[int, int]]:
    return {tuple(sorted(int(x) for x in p)) for p in np.asarray(pairs).reshape(-1, 2)}


def build_graph(spec: dict):
    g = spec["graph"]
    if g["kind"] == "chain":
        return nk.graph.Chain(g["L"], pbc=True, max_neighbor_order=g.get("max_neighbor_order", 1))
    if g["kind"] == "square":
        return nk.graph.Square(g["L"], pbc=True, max_neighbor_order=g.get("max_neighbor_order", 1))
    raise SystemExit(f"_netket_workload: unknown graph {g['kind']!r}")


def check_numbering(graph, spec: dict) -> None:
    """NetKet's site i is this project's site i: the same nearest (and next-nearest) bonds."""
    sys.path.insert(0, str(ROOT))
    from nqs_core.lattice import make_lattice

    g = spec["graph"]
    lat = make_lattice(g["kind"], g["L"], "periodic")
    colours = [(0, lat.bonds)] + ([(1, lat.next_bonds)] if g.get("max_neighbor_order", 1) >= 2 else [])
    for colour, ours in colours:
        theirs = ordered(graph.edges(filter_color=colour))
        if theirs != ordered(ours):
            raise SystemExit(f"_netket_workload: NetKet's colour-{colour} edges differ from this project's bonds "
                             f"({len(theirs)} vs {len(ours)}): site numbering differs")


def build_model(spec: dict):
    m = spec["model"]
    if m["kind"] == "rbm":
        return nk.models.RBM(alpha=m["alpha"], param_dtype=complex)
    if m["kind"] == "nqs":
        sys.path.insert(0, str(ROOT))
        from nqs_core.models import make_model
        from nqs_core.settings import RunSettings
        from nqs_core.vmc import build_problem

        settings = RunSettings.from_dict(m["settings"])
        lattice, _ = build_problem(settings)
        return make_model(settings, lattice)
    raise SystemExit(f"_netket_workload: unknown model {m['kind']!r}")


def main() -> None:
    spec = json.loads(sys.argv[1])
    graph = build_graph(spec)
    check_numbering(graph, spec)
    n = graph.n_nodes
    hi = nk.hilbert.Spin(0.5, N=n, total_sz=0)
    ham = nk.operator.Heisenberg(hi, graph, J=spec["J"], sign_rule=spec["sign_rule"])
    to_spin = PAULI_TO_SPIN
    if spec["spin_units"]:
        ham, to_spin = PAULI_TO_SPIN * ham, 1.0
    if spec.get("operator") == "jax":  # NetKet's jax operator: connected elements inside jit, one batched call
        ham = ham.to_jax_operator()
    if spec.get("clusters") is not None:
        rule_kw = dict(clusters=[tuple(p) for p in spec["clusters"]])
    else:
        rule_kw = dict(graph=graph, d_max=spec.get("d_max", 1))
    sampler = nk.sampler.MetropolisExchange(hi, n_chains=spec["chains"], sweep_size=spec["sweep"], **rule_kw)
    model = build_model(spec)
    vs = nk.vqs.MCState(sampler, model, n_samples=spec["samples"], seed=spec["seed"], sampler_seed=spec["seed"],
                        n_discard_per_chain=spec["discard"], chunk_size=spec.get("chunk_size"))
    if spec.get("init"):
        init = load_variables(spec["init"])
        mine = jax.tree_util.tree_structure(vs.variables)
        if jax.tree_util.tree_structure(init) != mine:
            raise SystemExit(f"_netket_workload: the initial variables do not match the model's: {mine}")
        vs.variables = jax.tree_util.tree_map(lambda a, b: np.asarray(a, dtype=b.dtype), init, vs.variables)
    sr_kw = {"holomorphic": True} if spec.get("holomorphic") else {}
    driver = nk.driver.VMC(ham, nk.optimizer.Sgd(learning_rate=spec["lr"]), variational_state=vs,
                           preconditioner=nk.optimizer.SR(diag_shift=spec["diag_shift"], **sr_kw))

    energies: list[float] = []
    stamps: list[float] = []

    def record(step: int, log: dict, drv: object) -> bool:
        energies.append(float(np.real(log["Energy"].mean)) * to_spin)
        stamps.append(time.perf_counter())
        return True

    # The first iterations trace and compile; with real parameters (the ConvNeXt) NetKet compiles
    # again at its second iteration (seen: 19 s against 1.6-2 s per later step), so the first
    # WARMUP iterations are timed apart and the rate counts the remaining ones only.
    steps = spec["steps"]
    warmup = max(1, min(spec.get("warmup", WARMUP), steps - 1))
    t0 = time.perf_counter()
    driver.run(warmup, out=None, show_progress=False, callback=record)
    jax.block_until_ready(vs.parameters)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    if steps > warmup:
        driver.run(steps - warmup, out=None, show_progress=False, callback=record)
    jax.block_until_ready(vs.parameters)
    rest = time.perf_counter() - t0

    out = {
        "engine": f"netket {nk.__version__} (jax {jax.__version__})",
        "steps": steps,
        "first_iteration_seconds": first,  # the first `warmup` iterations, compilation included
        "warmup_iterations": warmup,
        "iterations_per_second": (steps - warmup) / rest if steps > warmup else None,
        "discard_per_chain": int(vs.n_discard_per_chain),
        "chains": int(vs.sampler.n_chains),
        "samples": int(vs.n_samples),
        "sweep": int(vs.sampler.sweep_size),
        "exchange_pairs": int(len(vs.sampler.rule.clusters)),
        "parameters": int(vs.n_parameters),
        "energies": energies,
        "step_seconds": np.diff(stamps).tolist(),  # wall time between the callbacks of consecutive steps
        "sign_rule": spec["sign_rule"],
        "operator": spec.get("operator", "numba"),
        "chunk_size": spec.get("chunk_size"),
        "spin_units": spec["spin_units"],
    }
    if spec.get("exact"):
        # exact variational energy of the final parameters over the Sᶻ = 0 basis (no sampling noise)
        full = nk.vqs.FullSumState(hi, model, variables=vs.variables)
        out["variational_energy"] = float(np.real(full.expect(ham).mean)) * to_spin
        out["exact_energy"] = float(nk.exact.lanczos_ed(ham)[0]) * to_spin
    vs.n_samples = spec["eval_samples"]
    # after the timed steps: evaluate in chunks (NetKet evaluates the module on every connected
    # configuration of every sample at once: 28 GB for 8192 samples on 6x6 unchunked)
    vs.chunk_size = min(vs.n_samples, spec.get("chunk_size") or EVAL_CHUNK)
    final = vs.expect(ham)
    out["final_energy"] = float(np.real(final.mean)) * to_spin
    out["final_error"] = float(final.error_of_mean) * to_spin
    out["eval_samples"] = int(vs.n_samples)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
