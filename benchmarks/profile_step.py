"""Where the time of one VMC step goes, per part, with the achieved GFLOP/s and the arithmetic floor.

    .venv/bin/python benchmarks/profile_step.py [--workload NAME[,NAME…]|all] [--repeat 10]
                                                [--chains C] [--samples S] [--peak-gflops P | --flops-per-cycle F]

Workloads are those of ``netket_side_by_side.py`` (default ``convnext-j1j2-4x4``; ``all`` runs each
in turn).  Each part of the engine's step is jitted on its own and timed (median of ``--repeat``
calls after a warm-up call, ``block_until_ready``), on the step's own samples:

* sampling: ``sampler.sample`` (all chains, thermalisation and recorded sweeps);
* local energies: ``local_energies`` as the engine calls it (the model's flip-ratio fast path
  where it has one, else network passes over the nonzero connected configurations);
* Jacobian O (holomorphic: the complex O_c; otherwise of the real parameter vector);
* SR matrix + solve: S from O and the Cholesky solve (``sr_dense`` / ``sr_dense_holomorphic``;
  the RBM's moments path too);
* the engine's ``estimate`` (local energies + gradient + SR direction, whatever path it takes);
* the fused step (``VMC.step``, 1 and 10 steps per call), and one network pass for scale.

Every part runs as the engine's step does: on one CPU device per core (``devices.start_devices``, as
``nqs run`` does; ``NQS_CPU_DEVICES=1`` for one device), traced under the engine's mesh with the samples
split over its devices (``Engine._on_mesh``, ``devices.chain_sharding``).

Arithmetic: XLA's cost analysis (``jax.jit(f).lower(*args).compile().cost_analysis()['flops']``)
counts a loop body ONCE, whatever its trip count, and counts no flops in LAPACK custom calls.  So
the "arithmetic" column is: for sampling, the flops of one network pass over the chains × the
number of sequential sub-steps; for local energies by network passes, the flops of one network
pass per configuration × the nonzero connected configurations of these samples (the useful work);
for the Jacobian, 5 network passes (3 for a holomorphic network: forward, and a reverse pass of
~2 forward passes per output, Re and Im apart for real parameters) when XLA counts fewer;
for SR, 2·(2B)·P² for S plus P³/3 for the Cholesky (×4 complex) plus the XLA count of the rest;
elsewhere the XLA count.  The floor is arithmetic / peak, the peak being
cores × FLOP/cycle × clock (default: ``os.cpu_count()`` cores × 16 float64 FLOP/cycle (two 256-bit
FMA pipes; AVX-512 on Zen 4 is double-pumped, the same) × the clock of /proc/cpuinfo; twice the
FLOP/cycle for float32); the assumption is printed.  Times are wall-clock on a possibly loaded
machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from netket_side_by_side import WORKLOADS, workload_names  # noqa: E402
from nqs_core.devices import chain_sharding, describe_devices, start_devices  # noqa: E402
from nqs_core.local_energy import flip_ratio_fn, local_energies  # noqa: E402
from nqs_core.settings import RunSettings  # noqa: E402
from nqs_core.vmc import VMC, estimate  # noqa: E402


def timed(fn, *args, repeat: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def xla_flops(fn, *args) -> float | None:
    """XLA's flop count of ``fn(*args)`` (loop bodies counted once; custom calls not at all)."""
    try:
        ca = jax.jit(fn).lower(*args).compile().cost_analysis()
        if isinstance(ca, (list, tuple)):
            ca = ca[0]
        return float(ca.get("flops", 0.0)) if ca else None
    except Exception:  # noqa: BLE001 - a backend without cost analysis
        return None


def clock_ghz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.lower().startswith("cpu mhz")]
        return max(mhz) / 1e3 if mhz else None
    except OSError:
        return None


class Part:
    """One timed part; ``in_step``: its arithmetic counts toward the step's (the path the engine takes)."""

    def __init__(self, name: str, seconds: float | None, xla: float | None, arithmetic: float | None,
                 note: str = "", in_step: bool = False):
        self.name, self.seconds, self.xla, self.arithmetic, self.note = name, seconds, xla, arithmetic, note
        self.in_step = in_step


def on_mesh(engine, fn):
    """``fn`` jitted and traced under the engine's mesh, as the fused step traces its parts."""
    def run(*args):
        with engine._on_mesh():
            return fn(*args)

    return jax.jit(run)


def profile(name: str, a: argparse.Namespace, peak: float) -> None:
    w = WORKLOADS[name]
    d = dict(w["settings"])
    if a.chains is not None:
        d["chains"] = a.chains
    if a.samples is not None:
        d["samples"] = a.samples
    s = RunSettings.from_dict(d).validate()
    vmc = VMC(s)
    state = vmc.init()
    model, ham, sampler = vmc.model, vmc.hamiltonian, vmc.sampler
    apply = model.apply
    params = state.params
    parts: list[Part] = []
    rep = a.repeat

    # sampling
    eng = vmc.engine
    split = chain_sharding(eng.mesh)
    sample = on_mesh(eng, lambda prm, st: sampler.sample(lambda x: eng.forward(prm, x), st))
    _, sigma, lp, _ = sample(params, state.sampler)
    c, t, n = sigma.shape
    b = c * t
    flat, lpf = jax.device_put(sigma.reshape(b, n), split), jax.device_put(lp.reshape(-1), split)
    weights = jax.device_put(jnp.full((b,), 1.0 / b), split)
    pass_b = xla_flops(lambda prm, x: apply(prm, x), params, flat)
    pass_c = xla_flops(lambda prm, x: apply(prm, x), params, flat[:c])
    per_config = pass_b / b if pass_b else None
    therm, sweep = getattr(sampler, "thermalization", None), getattr(sampler, "sweep", None)
    substeps = (therm + t) * sweep if therm is not None and sweep is not None else None
    arith = pass_c * (substeps + 1) if pass_c and substeps else None
    parts.append(Part(f"sampling ({c} chains x {t} samples, sweep {sweep}, {therm} discarded sweeps"
                      + (f" = {substeps} sequential sub-steps of batch {c})" if substeps else ")"),
                      timed(sample, params, state.sampler, repeat=rep), xla_flops(sample, params, state.sampler),
                      arith, "one pass over the chains x sub-steps", in_step=True))

    # local energies, as the engine calls them
    ratios = flip_ratio_fn(model)
    e_fn = on_mesh(eng, lambda prm, x, l: local_energies(eng.forward, prm, ham, x, l, ratios=ratios))
    e_loc = e_fn(params, flat, lpf)
    _, mels = ham.matrix_elements(flat)
    nonzero = int(jnp.sum(mels != 0))
    xla_e = xla_flops(e_fn, params, flat, lpf)
    if ratios is not None:
        label, arith, note = f"local energies ({b} x {ham.max_conn} connected, model's flip ratios)", xla_e, "XLA"
    else:
        label = f"local energies ({nonzero} nonzero of {b} x {ham.max_conn} connected, network passes)"
        arith = per_config * nonzero if per_config else None
        note = "one pass per nonzero connected configuration"
    parts.append(Part(label, timed(e_fn, params, flat, lpf, repeat=rep), xla_e, arith, note, in_step=True))

    # Jacobian and SR matrix + solve (the generic dense path)
    from nqs_core.models import is_holomorphic
    from nqs_core import optimizers as opt

    holo = is_holomorphic(model) and opt.RealRavel.of(params).all_complex
    moments_path = holo_fast(model, holo)
    shift = jnp.asarray(s.diag_shift)
    try:
        if holo:
            jac_fn = on_mesh(eng, lambda prm, x: opt.jacobian_holomorphic(apply, prm, x))
            sr_fn = on_mesh(eng, lambda o, e: opt.sr_dense_holomorphic(o, e, weights, shift))
        else:
            jac_fn = on_mesh(eng, lambda prm, x: opt.jacobian(apply, prm, x))
            sr_fn = on_mesh(eng, lambda o, e: opt.sr_dense(o, e, weights, shift,
                                               getattr(eng.preconditioner, "product_dtype", None)))
        o = jac_fn(params, flat)
        p = o.shape[1]
        kind = "complex" if holo else "real"
        # reverse mode: one forward pass and a reverse pass (~2 forward passes) per output, Re and Im
        # separately for a real parameter vector; XLA's count comes out below one pass here
        xla_j = xla_flops(jac_fn, params, flat)
        passes = 3 if holo else 5
        parts.append(Part(f"Jacobian O ({b} x {p} {kind} parameters)", timed(jac_fn, params, flat, repeat=rep),
                          xla_j, max(xla_j or 0.0, passes * pass_b) if pass_b else xla_j,
                          f"≥ {passes} network passes", in_step=not moments_path))
        # S = a^T a with a (2B, P) real (holomorphic: Re and Im parts of S_c, same count), Cholesky P^3/3
        chol = (4.0 if holo else 1.0) * p**3 / 3 + (8.0 if holo else 2.0) * p**2
        gram = 2.0 * (2 * b) * p**2 * (1.5 if holo else 1.0)
        xla_sr = xla_flops(sr_fn, o, e_loc)
        parts.append(Part(f"SR matrix S ({p}x{p}) + Cholesky solve", timed(sr_fn, o, e_loc, repeat=rep), xla_sr,
                          max(xla_sr or 0.0, gram + chol), "2(2B)P² + P³/3 (+XLA rest)", in_step=not moments_path))
    except Exception as err:  # noqa: BLE001 - an engine whose optimizers changed
        parts.append(Part(f"Jacobian / SR (not available: {type(err).__name__}: {err})", None, None, None))

    if moments_path:
        try:
            m_fn = on_mesh(eng, lambda prm, x, e: apply(prm, x, weights, e - weights @ e, method="holomorphic_moments"))
            moments = m_fn(params, flat, e_loc)
            solve = on_mesh(eng, lambda m: opt.sr_from_moments(*m, shift))
            parts.append(Part("RBM path: S_c and F_c from the moments (no Jacobian)",
                              timed(m_fn, params, flat, e_loc, repeat=rep), xla_flops(m_fn, params, flat, e_loc),
                              xla_flops(m_fn, params, flat, e_loc), "XLA", in_step=True))
            pc = moments[0].shape[0]
            parts.append(Part("RBM path: Cholesky solve of S_c", timed(solve, moments, repeat=rep),
                              xla_flops(solve, moments), 4.0 * pc**3 / 3 + 8.0 * pc**2, "4P³/3", in_step=True))
        except Exception as err:  # noqa: BLE001
            parts.append(Part(f"RBM moments path (not available: {type(err).__name__})", None, None, None))

    # the engine's estimate (whatever path it takes) and the fused step
    est = on_mesh(eng, lambda prm, x, l: estimate(model, prm, ham, x, l, weights, s.optimizer, s.sr_solver, shift,
                                                   eng.preconditioner, forward=eng.forward))
    extra = [Part("the engine's estimate(): local energies + gradient + SR direction",
                  timed(est, params, flat, lpf, repeat=rep), xla_flops(est, params, flat, lpf), None)]
    log_psi = on_mesh(eng, lambda prm, x: eng.forward(prm, x))
    extra.append(Part(f"one network pass over the {b} samples (scale)", timed(log_psi, params, flat, repeat=rep),
                      pass_b, pass_b, "XLA"))
    fused = {}
    for k in (1, 10):
        fused[k] = timed(lambda st, k=k: vmc.step(st, k), state, repeat=max(3, rep // k)) / k

    parts_arith = sum(x.arithmetic for x in parts if x.in_step and x.arithmetic)

    print(f"\n### {name}: {w['title']}\n")
    print(f"{s.samples} samples, {vmc.n_parameters} real parameters, {s.dtype}, SR shift {s.diag_shift}; "
          f"{os.cpu_count()} CPUs, {describe_devices(eng.mesh.devices.size)}, load average {os.getloadavg()[0]:.1f}; jax {jax.__version__}; "
          f"peak {peak:.1f} GFLOP/s\n")
    print("| part | time ms | % of step | XLA GFLOP | arithmetic GFLOP | achieved GFLOP/s | floor ms at peak |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    step = fused[1]

    def row(x: Part) -> None:
        if x.seconds is None:
            print(f"| {x.name} | — | | | | | |")
            return
        ar = x.arithmetic
        print(f"| {x.name} | {x.seconds * 1e3:.2f} | {100 * x.seconds / step:.0f} % | "
              f"{'—' if x.xla is None else f'{x.xla / 1e9:.4f}'} | {'—' if ar is None else f'{ar / 1e9:.4f}'} | "
              f"{'—' if ar is None else f'{ar / 1e9 / x.seconds:.2f}'} | "
              f"{'—' if ar is None else f'{ar / 1e9 / peak * 1e3:.2f}'} |")

    for x in parts + extra:
        row(x)
    for k, sec in fused.items():
        print(f"| fused step, {k} per call (per step) | {sec * 1e3:.2f} | {100 * sec / step:.0f} % | | "
              f"{parts_arith / 1e9:.4f} (sum of the step's parts) | {parts_arith / 1e9 / sec:.2f} | "
              f"{parts_arith / 1e9 / peak * 1e3:.2f} |")
    print(f"\n-> {1 / fused[1]:.2f} steps/s (1 per call), {1 / fused[10]:.2f} steps/s (10 per call); "
          f"arithmetic floor of the step {parts_arith / 1e9 / peak * 1e3:.1f} ms at {peak:.0f} GFLOP/s")


def holo_fast(model, holo: bool) -> bool:
    """Whether the engine's dense SR takes the RBM's moments path (no Jacobian) for this model."""
    return bool(holo and getattr(model, "has_holomorphic_moments",
                                 callable(getattr(type(model), "holomorphic_moments", None))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="convnext-j1j2-4x4", help=f"'all' or comma-separated from {', '.join(WORKLOADS)}")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--chains", type=int, default=None, help="override the workload's chains")
    p.add_argument("--samples", type=int, default=None, help="override the workload's samples per step")
    p.add_argument("--cores", type=int, default=os.cpu_count())
    p.add_argument("--flops-per-cycle", type=float, default=16.0, help="float64 FLOP per cycle per core (default 16)")
    p.add_argument("--clock-ghz", type=float, default=None, help="default: /proc/cpuinfo's cpu MHz")
    p.add_argument("--peak-gflops", type=float, default=None, help="override the computed peak (GFLOP/s)")
    a = p.parse_args()
    start_devices()
    names = workload_names(a.workload, "profile_step")
    clock = a.clock_ghz or clock_ghz() or 2.5
    for name in names:
        f32 = WORKLOADS[name]["settings"].get("dtype") == "float32"
        fpc = a.flops_per_cycle * (2 if f32 else 1)
        peak = a.peak_gflops or a.cores * fpc * clock
        print(f"peak assumption: {a.cores} cores x {fpc:g} {'float32' if f32 else 'float64'} FLOP/cycle x "
              f"{clock:.2f} GHz = {peak:.1f} GFLOP/s" + (" (given)" if a.peak_gflops else ""))
        profile(name, a, peak)


if __name__ == "__main__":
    main()
