"""Where one ConvNeXt network pass spends its time, layer by layer (issue 8).

    taskset -c 1 .venv/bin/python benchmarks/network_pass.py [--preset NAME] [--batch B] [--repeat R]

The pass is what the step repeats: sampling, the local energies and the Jacobian are all network passes
(``profile_step.py`` splits the step into those parts).  Here one jitted pass of the preset's ConvNeXt over
``--batch`` random configurations is timed (median of ``--repeat`` calls after a warm-up), then its parts:

* the patch gather alone; the gather and the encoder (patch embedding + residual blocks); the readout
  before the intra-patch projection (``ConvNeXt._log_amplitudes``);
* the whole pass with one kind of layer made the identity (GELU, the layer norms, the depthwise
  convolutions): what that layer costs in place, fusion with its neighbours included;
* the whole pass in float32 (``dtype="float32"``).

The ablations patch the model's classes in this process only: their energies mean nothing, their times do.
Run it pinned to one core (``taskset``) on a quiet machine: the figures are per configuration, one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import linen as nn  # noqa: E402

import nqs_core.models.convnext as cx  # noqa: E402
from nqs_core.presets import PRESETS  # noqa: E402
from nqs_core.settings import RunSettings  # noqa: E402
from nqs_core.vmc import VMC  # noqa: E402


def per_config_us(fn: Callable[..., Any], args: tuple[Any, ...], batch: int, repeat: int) -> float:
    """Median wall time of ``fn(*args)`` (jitted, after one warm-up call) per configuration, µs."""
    jitted = jax.jit(fn)
    jax.block_until_ready(jitted(*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch * 1e6


def rows(settings: RunSettings, batch: int, repeat: int) -> list[tuple[str, float]]:
    vmc = VMC(settings)
    model, params = vmc.model, vmc.init().params
    sigma = np.random.default_rng(0).choice(np.array([-1, 1], np.int8), size=(batch, vmc.lattice.n_sites))

    def whole(s: RunSettings) -> float:
        run = VMC(s)
        forward = run.engine.forward  # wrapped anew each time: jax.jit's trace cache is keyed on the function
        return per_config_us(lambda p, x: forward(p, x), (run.init().params, sigma), batch, repeat)

    shifts = model.intra_patch_shifts()

    def patches(p: Any, x: Any) -> Any:
        return model.apply(p, x, shifts, method=cx.ConvNeXt._patches)

    out = [("the whole pass", whole(settings)),
           ("patch gather", per_config_us(lambda p, x: patches(p, x).sum(axis=(0, 1)), (params, sigma), batch, repeat)),
           ("gather + encoder (embedding and blocks)",
            per_config_us(lambda p, x: model.apply(p, patches(p, x), method=cx.ConvNeXt._encode).sum(axis=(0, 1)),
                          (params, sigma), batch, repeat)),
           ("gather + encoder + readout, before the projection",
            per_config_us(lambda p, x: model.apply(p, patches(p, x), method=cx.ConvNeXt._log_amplitudes),
                          (params, sigma), batch, repeat))]
    for label, owner, name, replacement in (("no GELU", nn, "gelu", lambda x: x),
                                            ("no layer norms", cx.ChannelNorm, "__call__", lambda self, x: x),
                                            ("no depthwise convolutions", cx.DepthwiseConv, "__call__", lambda self, h: h)):
        with mock.patch.object(owner, name, replacement):
            out.append((f"the whole pass, {label}", whole(settings)))
    out.append(("the whole pass in float32", whole(settings.replace(dtype="float32"))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="heisenberg-4x4-precise", help="a ConvNeXt preset (nqs presets)")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    settings = PRESETS[args.preset].settings(time_budget=None)
    if settings.model != "convnext":
        parser.error(f"--preset must be a ConvNeXt preset; {args.preset} is model={settings.model}")
    print(f"{args.preset}: {settings.lattice} L={settings.L}, depth {settings.depth}, {settings.features} features, "
          f"patch {settings.patch}, kernel {settings.kernel}, {settings.dtype}; batch {args.batch}; jax {jax.__version__}\n")
    print("| part | µs per configuration |\n|---|---:|")
    for label, us in rows(settings, args.batch, args.repeat):
        print(f"| {label} | {us:.2f} |", flush=True)


if __name__ == "__main__":
    main()
