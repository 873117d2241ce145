"""Fused VMC steps per second of one side-by-side workload, by wall clock or by this process's CPU time.

    .venv/bin/python benchmarks/step_rate.py convnext-j1j2-4x4-mixed [--per-call 10] [--calls 5] [--cpu-time]

For A/B comparisons of the engine on a machine whose speed drifts: pinned to one core with one XLA
thread, the CPU time of a step does not depend on what else the machine does, e.g.

    NQS_CPU_DEVICES=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 1 \\
        .venv/bin/python benchmarks/step_rate.py convnext-j1j2-4x4-mixed --cpu-time

run alternately from two checkouts (A, B, A, B, …).  One compiled call of ``--per-call`` steps warms up,
then ``--calls`` calls are timed; the median and the best rate are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import jax  # noqa: E402

from netket_side_by_side import WORKLOADS  # noqa: E402
from nqs_core.devices import start_devices  # noqa: E402
from nqs_core.settings import RunSettings  # noqa: E402
from nqs_core.vmc import VMC  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--per-call", type=int, default=10, help="steps fused per call")
    p.add_argument("--calls", type=int, default=5, help="timed calls")
    p.add_argument("--chains", type=int, default=None, help="override the workload's chains")
    p.add_argument("--cpu-time", action="store_true", help="this process's CPU time instead of the wall clock")
    a = p.parse_args()
    start_devices()
    settings = {k: v for k, v in WORKLOADS[a.workload]["settings"].items() if k != "steps_per_call"}
    if a.chains:
        settings["chains"] = a.chains
    vmc = VMC(RunSettings(**settings))
    state = vmc.init()
    clock = time.process_time if a.cpu_time else time.perf_counter
    state, _ = vmc.step(state, a.per_call)
    jax.block_until_ready(state)
    seconds = []
    for _ in range(a.calls):
        t = clock()
        state, _ = vmc.step(state, a.per_call)
        jax.block_until_ready(state)
        seconds.append((clock() - t) / a.per_call)
    unit = "steps per CPU second" if a.cpu_time else "steps/s"
    print(f"{a.workload}: {1 / statistics.median(seconds):.2f} {unit} (median of {a.calls} calls of {a.per_call}), "
          f"best {1 / min(seconds):.2f}; {vmc.settings.chains} chains, {jax.device_count()} device(s)")


if __name__ == "__main__":
    main()
