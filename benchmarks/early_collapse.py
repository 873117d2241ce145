"""The early collapse of the default ConvNeXt J1-J2 4×4 run, and what prevents it (issue 9, item 4).

For each seed and variant: the default run (``RunSettings(hamiltonian="j1j2", model="convnext")``, no
sign prior) for ``--steps`` steps through the engine's API, then an evaluation with 8192 samples.
Prints, per run, the mean energy of the last 10 steps, the evaluation's relative error against ED and the
acceptance over steps 10–60 (where the collapse happened).  Variants:

* ``default``: the engine as it is;
* ``phase=X``: the ConvNeXt's visible phase bias drawn with spread X rad (the engine's draw rescaled;
  ``phase=0.1`` is the initialisation before the fix, ``convnext.visible_bias_init``);
* ``lr=X`` / ``shift=X``: learning rate / SR diagonal shift X for the first 30 steps (a warm-up);
* ``dtype=X``: the run's ``dtype`` (auto, the default; float64, mixed, float32);
* joined by ``+``, e.g. ``phase=0.1+lr=0.01``.

    .venv/bin/python benchmarks/early_collapse.py --seeds 1,2,8 --steps 100 \
        --variants phase=0.1,phase=0.1+shift=0.5,phase=0.1+lr=0.01,default
(docs/results/research_recipes.md, "Where the early collapse comes from").
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from nqs_core.devices import start_devices
from nqs_core.models.convnext import PHASE_STD
from nqs_core.references.ed import exact_diagonalization
from nqs_core.settings import RunSettings
from nqs_core.vmc import VMC

WARM_UP = 30  # steps of a warm-up variant


def with_phase_spread(params, spread: float):
    """``params`` with the visible phase bias rescaled from the engine's spread to ``spread``."""
    def scale(path, x):
        if any(getattr(p, "key", None) == "visible_bias" for p in path):
            return x.at[:, 1].multiply(spread / PHASE_STD)
        return x

    return jax.tree_util.tree_map_with_path(scale, params)


def one_run(seed: int, variant: str, steps: int, e0: float) -> str:
    changes = dict(part.split("=") for part in variant.split("+") if part != "default")
    settings = RunSettings(hamiltonian="j1j2", model="convnext", seed=seed, steps=steps)
    if "dtype" in changes:
        settings = settings.replace(dtype=changes["dtype"])
    vmc = VMC(settings)
    state = vmc.init()
    if "phase" in changes:
        state = state.replace(params=with_phase_spread(state.params, float(changes["phase"])))
    t0, energy, acceptance = time.perf_counter(), [], []
    for start in range(0, steps, 10):
        hyper = dict(vmc.hyper)
        for name, key in (("lr", "lr"), ("shift", "diag_shift")):
            if name in changes and start < WARM_UP:
                hyper[key] = jnp.asarray(float(changes[name]), jnp.float64)
        state, stats = vmc.engine.multi_step(state, hyper, min(10, steps - start))
        energy += list(np.asarray(stats["energy"]))
        acceptance += list(np.asarray(stats["acceptance"]))
    final = vmc.evaluate(state, 8192)
    acc = np.asarray(acceptance[10:60])
    return (f"seed {seed} {variant:10s} E(last 10) {np.mean(energy[-10:]):.4f}  evaluation rel. error "
            f"{(final['energy'] - e0) / abs(e0):.3e} ± {final['error'] / abs(e0):.1e}  acceptance over steps 10–60: "
            f"min {acc.min():.3f}, mean {acc.mean():.3f}  ({time.perf_counter() - t0:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,8")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--variants", default="phase=0.1,default", help="comma-separated (see above)")
    args = parser.parse_args()
    start_devices()  # one CPU device per core, as `nqs run` gets it
    e0 = exact_diagonalization(VMC(RunSettings(hamiltonian="j1j2", model="convnext")).hamiltonian,
                               want_vector=False).energy
    for variant in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            print(one_run(seed, variant, args.steps, e0), flush=True)


if __name__ == "__main__":
    main()
