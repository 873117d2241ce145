"""NQS Lab side of the side-by-side benchmark; runs in the lab's venv and prints one JSON object.

    .venv/bin/python benchmarks/_ours_workload.py '<spec as JSON>'

Spec: ``settings`` (a RunSettings dict), ``init`` (optional .npz of the initial variables, keys
'/'-joined paths, as NetKet's side loads them), ``eval_samples``, ``exact`` (compute the exact
variational energy of the final parameters over the Sᶻ = 0 basis).

Through the engine's public contract only: ``start_devices()`` (one CPU device per core, as the CLI and
the lab's runs), ``VMC(settings)``, ``.init()``, ``.step(state, n)``, ``.evaluate(state, n)``.  ``settings.steps_per_call`` steps are fused per call, as the driver
runs them.  Both call sizes are compiled ahead of time (``jax.jit(...).lower(state).compile()``,
timed apart); the timed loop then brings each call's statistics to the host (as the driver does).
The exact variational energy ψ†Hψ/ψ†ψ uses ``nqs_core.basis.sparse_matrix`` (built from the
Hamiltonian's ``connected`` kernel, independent of the engine's local energies) and one network
pass over the basis.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def load_variables(path: str, like):
    """The .npz's variables in the structure and dtypes of ``like`` (the engine's own params)."""
    from flax.traverse_util import flatten_dict, unflatten_dict

    with np.load(path) as z:
        loaded = unflatten_dict({tuple(k.split("/")): np.asarray(z[k]) for k in z.files})
    if set(flatten_dict(loaded)) != set(flatten_dict(like)):
        raise SystemExit("_ours_workload: the initial variables do not match the model's parameters")
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, dtype=b.dtype).reshape(b.shape), loaded, like)


def variational_energy(vmc, params) -> tuple[float, float]:
    """(⟨ψ|H|ψ⟩/⟨ψ|ψ⟩ over the full basis, exact ground energy): sparse H, one network pass."""
    from scipy.sparse.linalg import eigsh

    from nqs_core.basis import decode, hamiltonian_basis, sparse_matrix

    ham = vmc.hamiltonian
    codes = hamiltonian_basis(ham)
    h = sparse_matrix(ham, codes)
    basis = decode(codes, ham.lattice.n_sites)
    apply = jax.jit(vmc.model.apply)
    lp = np.concatenate([np.asarray(apply(params, jnp.asarray(basis[i:i + 4096])))
                         for i in range(0, len(basis), 4096)]).astype(np.complex128)
    psi = np.exp(lp - lp.real.max())
    e_var = float(np.real(np.vdot(psi, h @ psi)) / np.real(np.vdot(psi, psi)))
    e0 = float(eigsh(h, k=1, which="SA")[0][0])
    return e_var, e0


def main() -> None:
    spec = json.loads(sys.argv[1])
    import nqs_core
    from nqs_core.compile_cache import enable_compile_cache
    from nqs_core.devices import start_devices
    from nqs_core.settings import RunSettings
    from nqs_core.vmc import VMC

    start_devices()  # one CPU device per core, as `nqs run` and the lab's runs get it
    enable_compile_cache()  # the lab's persistent compilation cache, as driver.run uses it (compile time only)
    s = RunSettings.from_dict(spec["settings"])
    vmc = VMC(s)
    state = vmc.init()
    if spec.get("init"):
        state = state.replace(params=load_variables(spec["init"], state.params))
    steps, per_call = s.steps, min(s.steps_per_call, s.steps)
    sizes = [per_call] + ([steps % per_call] if steps % per_call else [])

    t0 = time.perf_counter()
    compiled = {n: jax.jit(lambda st, n=n: vmc.step(st, n)).lower(state).compile() for n in sizes}
    compile_seconds = time.perf_counter() - t0

    history: dict[str, list] = {}
    done = 0
    t0 = time.perf_counter()
    while done < steps:
        n = min(per_call, steps - done)
        state, stats = compiled[n](state)
        for k, v in stats.items():
            history.setdefault(k, []).extend(np.asarray(jax.device_get(v)).reshape(-1).tolist())
        done += n
    jax.block_until_ready(state)
    run_seconds = time.perf_counter() - t0

    params = jax.device_get(state.params)
    out = {
        "engine": f"nqs-lab {nqs_core.__version__} (jax {jax.__version__})",
        "steps": steps,
        "first_iteration_seconds": compile_seconds,  # compilation only (no step), ahead of time
        "iterations_per_second": steps / run_seconds,
        "discard_per_chain": getattr(vmc.sampler, "thermalization", None),
        "chains": getattr(vmc.sampler, "n_chains", s.chains),
        "samples": s.samples,
        "sweep": getattr(vmc.sampler, "sweep", None),
        "parameters": int(vmc.n_parameters),
        "energies": [float(np.real(e)) for e in history.get("energy", [])],
        "non_finite_steps": int(sum(1 for f in history.get("finite", []) if not f)),
        "mean_acceptance": float(np.mean(history["acceptance"])) if history.get("acceptance") else None,
        "devices": jax.device_count(),
    }
    if spec.get("exact"):
        out["variational_energy"], out["exact_energy"] = variational_energy(vmc, params)
    ev = vmc.evaluate(state, spec["eval_samples"])
    out["final_energy"] = float(np.real(ev["energy"]))
    out["final_error"] = float(np.real(ev["error"]))
    out["eval_samples"] = int(ev.get("n_samples", spec["eval_samples"]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
