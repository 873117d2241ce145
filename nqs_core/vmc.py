"""The VMC engine: sampling, local energies, gradient, preconditioning and the optax update fused
into one jitted function that runs ``n`` steps per call (``lax.scan``) with fixed shapes.

E_loc(σ) = diag(σ) + Σ_m mel_m(σ) exp(log ψ(σ'_m) − log ψ(σ))  (DESIGN.md §3), statistics from
``nqs_core.stats``, directions from ``nqs_core.optimizers``.  Compiled code is shared between
VMC objects whose settings differ only in run-time values (seed, steps, lr, diag_shift, momentum, max_step,
eval_samples, steps_per_call, and the couplings J, J1, J2, h): those enter the jitted function as
arrays (``hyperparameters``), so a coupling sweep or a new J2 in the lab reuses the compiled step.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from nqs_core.devices import chain_mesh, place_state, state_shardings, to_host
from nqs_core.hamiltonians import Couplings, Hamiltonian
from nqs_core.lattice import Lattice
from nqs_core.local_energy import flip_ratio_fn, local_energies
from nqs_core.models import make_forward, make_model
from nqs_core.optimizers import (
    RealRavel,
    learning_rate,
    optimizer_chain,
    trust_region_scale,
    with_hyperparameters,
)
from nqs_core.preconditioners import Preconditioner, preconditioner_for
from nqs_core.problem import build_problem
from nqs_core.observables import best_half_plane, marshall_phase, translation_eigenvalue
from nqs_core.sampler import ExactSampler, Sampler, SamplerState, make_sampler
from nqs_core.settings import RunSettings
from nqs_core.stats import chain_statistics

PyTree = Any
STAT_KEYS = ("energy", "error", "variance", "acceptance", "r_hat", "tau", "grad_norm", "v_score", "finite")
OBSERVABLE_SAMPLES = 256  # samples per step for the translation eigenvalue (one extra network pass each)
RUNTIME_FIELDS = dict(seed=0, steps=1, lr=1.0, diag_shift=0.0, momentum=0.0, max_step=None, eval_samples=0,
                      steps_per_call=1, time_budget=None, target_error=None, target_v_score=None,
                      J=None, J1=None, J2=None, h=None)  # couplings: the engine holds Hamiltonian.structure()


@struct.dataclass
class VMCState:
    """Everything a run carries from step to step (a pytree: checkpoint it with any pytree I/O)."""

    params: PyTree
    opt_state: PyTree
    sampler: SamplerState
    step: jax.Array  # int32 number of completed steps


def estimate(model: nn.Module, params: PyTree, ham: Hamiltonian, sigma: jax.Array, log_psi: jax.Array,
             weights: jax.Array, optimizer: str, sr_solver: str, diag_shift: jax.Array,
             preconditioner: Preconditioner | None = None, couplings: Couplings | None = None,
             forward: Any = None):
    """E_loc, gradient g = 2Re⟨ΔO*ΔE⟩ and the direction d fed to optax (``preconditioner``, by default
    ``preconditioner_for`` the optimizer setting); ``couplings``: run-time values, by default ``ham``'s;
    ``forward``: the log ψ of the local energies' network passes (``models.make_forward``), by default
    ``model.apply``."""
    e_loc = local_energies(forward or model.apply, params, ham, sigma, log_psi, ratios=flip_ratio_fn(model),
                           couplings=couplings)
    pre = preconditioner or preconditioner_for(optimizer, sr_solver, model, RealRavel.of(params))
    return (e_loc, *_direction(pre, model, params, sigma, e_loc, weights, diag_shift))


def _direction(pre: Preconditioner, model: nn.Module, params: PyTree, sigma: jax.Array, e_loc: jax.Array,
               weights: jax.Array, diag_shift: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(g, d) of ``pre``, g in d's dtype."""
    g, d = pre(model, params, sigma, e_loc, weights, diag_shift)
    return g.astype(d.dtype), d


def hyperparameters(settings: RunSettings) -> dict[str, jax.Array]:
    """The run-time values the compiled step takes (``RUNTIME_FIELDS`` that change the step), the
    couplings among them (``Hamiltonian.runtime_couplings``), and ``learn``: False makes the step measure
    only (no gradient, no solve; the parameters stay and the chains move on), so the driver's final
    evaluation runs the compiled step instead of compiling a program of its own (``Engine.evaluate_by_steps``)."""
    s = settings
    return {"lr": jnp.asarray(s.lr, jnp.float64), "diag_shift": jnp.asarray(s.diag_shift, jnp.float64),
            "momentum": jnp.asarray(s.momentum, jnp.float64), "total_steps": jnp.asarray(s.steps, jnp.int32),
            "max_step": jnp.asarray(jnp.inf if s.max_step is None else s.max_step, jnp.float64),
            "couplings": build_problem(s)[1].runtime_couplings(), "learn": jnp.asarray(True)}


@dataclass(frozen=True, eq=False)
class Engine:
    """The compiled pieces for one static configuration (shared through ``engine_for``)."""

    settings: RunSettings  # with run-time fields normalised (RUNTIME_FIELDS)
    lattice: Lattice
    hamiltonian: Hamiltonian  # the structure (Hamiltonian.structure); the couplings come with each call
    model: nn.Module
    forward: Any  # (params, σ) -> log ψ for sampling and local energies (models.make_forward)
    sampler: Sampler
    ravel: RealRavel
    preconditioner: Preconditioner
    mesh: Mesh  # the devices the chains are split over (devices.chain_mesh)

    def _on_mesh(self) -> contextlib.AbstractContextManager:
        """The mesh the step traces under, so ``devices.per_device`` work splits over its devices."""
        if self.mesh.devices.size == 1:
            return contextlib.nullcontext()
        return jax.sharding.use_abstract_mesh(self.mesh.abstract_mesh)

    def placed(self, state: Any) -> Any:
        """``state`` (a VMCState) with its chains split over the mesh, the rest on every device."""
        if self.mesh.devices.size == 1:
            return state
        return place_state(state, state_shardings(state, self.settings.chains, self.mesh))

    @functools.cached_property
    def chain(self) -> optax.GradientTransformation:
        """The optax chain (optimizer, then learning rate and schedule) with placeholder
        hyperparameters: the step injects the run-time values (``with_hyperparameters``)."""
        return optimizer_chain(self.settings.optimizer, self.settings.schedule)(
            lr=1.0, momentum=0.0, total_steps=1)

    # ----- one step -------------------------------------------------------------------------
    def _step(self, state: VMCState, hyper: dict[str, jax.Array]) -> tuple[VMCState, dict[str, jax.Array]]:
        params = state.params
        sampler_state, sigma, lp, acceptance = self.sampler.sample(lambda x: self.forward(params, x), state.sampler)
        c, t, n = sigma.shape
        flat, lpf = sigma.reshape(c * t, n), lp.reshape(c * t)
        weights = jnp.full((c * t,), 1.0 / (c * t), dtype=jnp.float64)
        s = self.settings
        e_loc = local_energies(self.forward, params, self.hamiltonian, flat, lpf, ratios=flip_ratio_fn(self.model),
                               couplings=hyper["couplings"])

        def direction() -> tuple[jax.Array, jax.Array]:
            return _direction(self.preconditioner, self.model, params, flat, e_loc, weights, hyper["diag_shift"])

        if self.skips_solve:
            shapes = jax.eval_shape(direction)
            g, d = jax.lax.cond(hyper["learn"], direction, lambda: tuple(jnp.zeros(x.shape, x.dtype) for x in shapes))
        else:
            g, d = direction()
        stats = chain_statistics(e_loc.real.reshape(c, t), n, independent=isinstance(self.sampler, ExactSampler))
        theta = self.ravel.ravel(params)
        opt_state = with_hyperparameters(state.opt_state, lr=hyper["lr"], momentum=hyper["momentum"],
                                         total_steps=hyper["total_steps"])
        scale = self.hamiltonian.energy_scale(hyper["couplings"])
        direction = d / scale  # lr: an imaginary-time step in 1/scale
        eta = learning_rate(s.schedule, hyper["lr"], state.step, hyper["total_steps"])
        shorten, step_length = trust_region_scale(direction, g / scale, hyper["diag_shift"], eta, hyper["max_step"])
        direction = direction * shorten
        updates, opt_state = self.chain.update(direction.astype(theta.dtype), opt_state, theta)
        theta_new = theta + updates.astype(theta.dtype)
        # a finite step is also a physical one: |E| within twice ‖H‖'s bound (margin for the MC noise)
        bound = 2.0 * self.hamiltonian.norm_bound(hyper["couplings"])
        finite = jnp.isfinite(stats["energy"]) & (jnp.abs(stats["energy"]) <= bound) & jnp.all(jnp.isfinite(theta_new))
        new = VMCState(self.ravel.unravel(theta_new), opt_state, sampler_state, state.step + 1)
        measured = state.replace(sampler=sampler_state)  # not learning: only the chains move on
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(hyper["learn"], a, b), new, measured)
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, state)
        stats.update(acceptance=jnp.asarray(acceptance, jnp.float64), grad_norm=jnp.linalg.norm(g).astype(jnp.float64),
                     finite=finite, step_length=step_length,
                     local_energies=e_loc.real.reshape(c, t).astype(jnp.float64))
        stats.update(self._observables(params, flat, lpf))
        return state, stats

    def _observables(self, params: PyTree, sigma: jax.Array, log_psi: jax.Array) -> dict[str, jax.Array]:
        """Per-step sign and momentum read-outs from the step's own samples (``nqs_core.observables``).

        ``marshall_agreement`` (Heisenberg/J1-J2 on a bipartite lattice): fraction of samples with
        sign Re(e^{−iφ}ψ) = (−1)^{N↑_A}, best φ; uses the sampled log ψ, so it costs a sort.
        ``translation_eigenvalue`` (periodic lattices): ⟨ψ(T_x σ)/ψ(σ)⟩ over the first
        ``OBSERVABLE_SAMPLES`` samples, one extra network pass over them.
        """
        out: dict[str, jax.Array] = {}
        lat = self.lattice
        if self.hamiltonian.conserves_sz and lat.is_bipartite:
            theta = jnp.imag(log_psi) - marshall_phase(sigma, lat)
            out["marshall_agreement"] = best_half_plane(theta).astype(jnp.float64)
        if lat.pbc:
            # in the model's own precision: a projection's eigenvalue is exact, and float32 passes (mixed
            # precision) would leave ~1e-8 of it
            sub = sigma[:OBSERVABLE_SAMPLES]
            lp = self.model.apply(params, sub) if self.settings.precision == "mixed" else log_psi[:OBSERVABLE_SAMPLES]
            out["translation_eigenvalue"] = translation_eigenvalue(self.model.apply, params, sub, lp,
                                                                   lat.unit_translations()[0])
        return out

    @functools.cached_property
    def multi_step(self):
        @functools.partial(jax.jit, static_argnums=2)
        def run(state: VMCState, hyper: dict[str, jax.Array], n: int):
            with self._on_mesh():
                return jax.lax.scan(lambda st, _: self._step(st, hyper), state, None, length=n)

        return run

    @functools.cached_property
    def evaluate_fn(self):
        @functools.partial(jax.jit, static_argnums=3)
        def run(params: PyTree, sampler_state: SamplerState, couplings: Couplings, per_chain: int):
            with self._on_mesh():
                return evaluate(params, sampler_state, couplings, per_chain)

        def evaluate(params: PyTree, sampler_state: SamplerState, couplings: Couplings, per_chain: int):
            sampler_state, sigma, lp, acceptance = self.sampler.sample(
                lambda x: self.forward(params, x), sampler_state, per_chain)
            c, t, n = sigma.shape
            e_loc = local_energies(self.forward, params, self.hamiltonian, sigma.reshape(c * t, n), lp.reshape(-1),
                                   ratios=flip_ratio_fn(self.model), couplings=couplings)
            stats = chain_statistics(e_loc.real.reshape(c, t), n, independent=isinstance(self.sampler, ExactSampler))
            stats["acceptance"] = jnp.asarray(acceptance, jnp.float64)
            stats.update(self._observables(params, sigma.reshape(c * t, n), lp.reshape(-1)))
            return stats

        return run

    @property
    def skips_solve(self) -> bool:
        """Whether a step that does not learn skips its gradient and solve (a conditional): in one process.
        Across ``jax.distributed`` processes (2 on one machine, measured) the step with its solve's all-reduces
        inside the conditional ran once, then, read back from the persistent compilation cache by the next
        run, aborted the CPU collectives (gloo: "Received data size doesn't match expected size"); there the
        step computes the direction and drops it (the same energies, at the cost of the solve)."""
        return jax.process_count() == 1

    def evaluate_by_steps(self, step: Callable[[VMCState, Any], tuple[VMCState, dict[str, jax.Array]]], state: VMCState,
                          hyper: dict[str, Any], n_samples: int, per_call: int) -> dict[str, float | complex]:
        """What ``evaluate_fn`` returns, from ``step`` (a compiled ``multi_step`` of ``per_call`` steps, as
        ``step(state, hyper)``) measuring without learning (``hyper["learn"]`` False): ⌈n_samples / samples⌉
        batches of the step's samples, whole calls, the chains moving on from ``state``.  Nothing new to
        compile but the statistics (``evaluation_of``)."""
        batches = max(1, -(-int(n_samples) // self.settings.samples))
        measure = {**hyper, "learn": jnp.asarray(False)}
        calls = []
        for _ in range(-(-batches // per_call)):
            state, stats = step(state, measure)
            calls.append({k: to_host(v) for k, v in stats.items()})
        return self.evaluation_of(calls)

    def evaluation_of(self, calls: list[dict[str, np.ndarray]]) -> dict[str, float | complex]:
        """What ``evaluate_fn`` returns, from fused calls of the step that measured without learning
        (``calls``: their stats on the host).  Their local energies are joined per chain in the order they
        were drawn ((n, C, T) per call → (C, Σ n·T)), so τ and split R̂ see each chain whole; acceptance and
        the step observables are averaged over the steps (equal batches)."""
        per_call = [np.asarray(c["local_energies"]) for c in calls]
        e_loc = np.concatenate([np.moveaxis(e, 0, 1).reshape(e.shape[1], -1) for e in per_call], axis=1)
        stats = _chain_statistics(e_loc, self.lattice.n_sites, isinstance(self.sampler, ExactSampler))
        out: dict[str, float | complex] = {k: float(v) for k, v in stats.items()}
        for key in ("acceptance", "marshall_agreement", "translation_eigenvalue"):
            if key in calls[0]:
                mean = np.mean(np.concatenate([np.atleast_1d(c[key]) for c in calls]))
                out[key] = complex(mean) if np.iscomplexobj(mean) else float(mean)
        out["n_samples"] = int(e_loc.size)
        return out

    def init_params(self, key: jax.Array) -> PyTree:
        return self.model.init(key, jnp.ones((1, self.lattice.n_sites), jnp.int8))

    def init_state(self, seed: int, restart: int = 0) -> VMCState:
        """Parameters, optimizer state and sampler chains from ``seed``; ``restart`` k > 0 draws fresh ones
        from the same seed (the run loop's ``callbacks.FrozenStart``).  No leaf is weakly typed (optax's
        injected step count would be), so the states a step returns reuse the step's compilation."""
        return self.placed(self._initial_state(jnp.asarray(seed, jnp.int64), jnp.asarray(restart, jnp.int32)))

    @functools.cached_property
    def _initial_state(self) -> Callable[[jax.Array, jax.Array], VMCState]:
        """``init_state`` as ONE compiled program: run eagerly, the model's initialisers, the optimizer and
        the sampler compiled ~140 small programs (ConvNeXt 4×4 on a 2-core CPU: 8.1 s eager, 3.9 s jitted)."""

        @jax.jit
        def initial_state(seed: jax.Array, restart: jax.Array) -> VMCState:
            key = jax.random.PRNGKey(seed)  # raw uint32 keys: plain arrays in checkpoints
            key = jnp.where(restart > 0, jax.random.fold_in(key, restart), key)
            k_params, k_sampler = jax.random.split(key)
            params = self.init_params(k_params)
            state = VMCState(params, self.init_opt_state(params), self.sampler.init(k_sampler),
                             jnp.zeros((), jnp.int32))
            return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=x.dtype), state)

        return initial_state

    def init_opt_state(self, params: PyTree) -> PyTree:
        return self.chain.init(self.ravel.ravel(params))


_chain_statistics = jax.jit(chain_statistics, static_argnums=(1, 2))  # one small program per sample count


def static_settings(settings: RunSettings) -> RunSettings:
    """``settings`` with the run-time fields normalised and dtype "auto" resolved: the key of the
    compiled-code cache."""
    return settings.replace(**RUNTIME_FIELDS, dtype=settings.precision)


def single_threaded_lapack() -> bool:
    """Run scipy's OpenBLAS (which jaxlib calls for Cholesky and friends on CPU) on one thread.

    Inside a jitted step XLA already keeps the cores busy; OpenBLAS threads spinning next to
    XLA's pool made a 576×576 Cholesky 10–70× slower on a loaded 2-core machine (measured:
    685 ms vs 9 ms).  The matrices here are small, so one thread loses nothing.  Returns
    whether the OpenBLAS entry point was found.
    """
    found = False
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and line.split()[-1].startswith("/")}
    except OSError:
        return False
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(1)
                found = True
    return found


_ENGINE_LOCK = threading.Lock()


def engine_for(static: RunSettings) -> Engine:
    """One Engine (model, sampler, jitted functions) per static configuration, also when several
    threads (the lab's sessions) ask for the same one at once."""
    with _ENGINE_LOCK:
        return _engine_for(static)


engine_for.cache_info = lambda: _engine_for.cache_info()  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=32)
def _engine_for(static: RunSettings) -> Engine:
    # local: importing it loads the LAPACK library that single_threaded_lapack then pins; it must happen here, in order
    import scipy.linalg.cython_lapack  # noqa: F401  (load jaxlib's LAPACK provider, then pin it)

    single_threaded_lapack()
    lattice, ham = build_problem(static)
    ham = ham.structure()
    model = make_model(static, lattice)
    sampler = make_sampler(static, ham)
    shapes = jax.eval_shape(lambda k: model.init(k, jnp.ones((1, lattice.n_sites), jnp.int8)), jax.random.key(0))
    ravel = RealRavel.of(shapes)
    return Engine(static, lattice, ham, model, make_forward(static, lattice, model), sampler, ravel,
                  preconditioner_for(static.optimizer, static.sr_solver, model, ravel, static.precision),
                  chain_mesh(static.chains))


class VMC:
    """Variational Monte Carlo for one ``RunSettings`` (docs/ARCHITECTURE.md, the engine contract)."""

    def __init__(self, settings: RunSettings):
        self.settings = settings.validate()
        self.engine = engine_for(static_settings(settings))
        self.lattice = self.engine.lattice
        self.hamiltonian = build_problem(settings)[1]  # with this run's couplings (the engine has the structure)
        self.model = self.engine.model
        self.sampler = self.engine.sampler
        self._step_sizes: set[int] = set()  # the n of every step(state, n) called: programs compiled already

    @property
    def n_parameters(self) -> int:
        """Number of real parameters (a complex parameter counts twice)."""
        return self.engine.ravel.size

    @functools.cached_property
    def hyper(self) -> dict[str, jax.Array]:
        return hyperparameters(self.settings)

    def init(self, restart: int = 0) -> VMCState:
        """Parameters, optimizer state and sampler chains from ``settings.seed`` (``Engine.init_state``)."""
        return self.engine.init_state(self.settings.seed, restart)

    def step(self, state: VMCState, n: int = 1) -> tuple[VMCState, dict[str, jax.Array]]:
        """``n`` fused VMC steps in one jitted call; stats are arrays of shape (n,) (see STAT_KEYS), and
        ``local_energies`` of shape (n, chains, samples per chain).

        A step whose energy or updated parameters are not finite leaves the state unchanged and
        reports ``finite = False`` (so the returned state is always the last finite one).
        """
        self._step_sizes.add(int(n))
        return self.engine.multi_step(self.engine.placed(state), self.hyper, int(n))

    def samples(self, state: VMCState, n_show: int) -> np.ndarray:
        """Current chain configurations (n_show, N) int8 (at most one per chain)."""
        return np.asarray(state.sampler.sigma[:n_show])

    def evaluate(self, state: VMCState, n_samples: int | None = None) -> dict[str, float | complex]:
        """Energy statistics and the step observables (``translation_eigenvalue`` complex) from at least
        ``n_samples`` fresh samples (``n_samples`` in the result says how many).

        Measured by a step program that ``step`` compiled already, not learning (``Engine.evaluate_by_steps``,
        as the driver's final evaluation), when its whole calls draw at most twice the samples asked;
        otherwise by a program of its own (``Engine.evaluate_fn``, the samples rounded up to a multiple of
        chains), whose compilation costs about what the step's does (ConvNeXt 4×4 mixed, 2 cores: 6.7 s,
        then 0.9 s per call for 8192 samples)."""
        n = self.settings.eval_samples if n_samples is None else n_samples
        batches = max(1, -(-int(n) // self.settings.samples))
        drawn = {k: -(-batches // k) * k for k in self._step_sizes}
        fits = sorted((b, k) for k, b in drawn.items() if b <= 2 * batches)
        if fits:
            k = fits[0][1]
            return self.engine.evaluate_by_steps(lambda st, hyper: self.engine.multi_step(st, hyper, k),
                                                 self.engine.placed(state), self.hyper, n, k)
        per_chain = max(1, -(-int(n) // self.settings.chains))
        state = self.engine.placed(state)
        stats = self.engine.evaluate_fn(state.params, state.sampler, self.hyper["couplings"], per_chain)
        out = {k: complex(v) if jnp.iscomplexobj(v) else float(v) for k, v in stats.items()}
        out["n_samples"] = per_chain * self.settings.chains
        return out
