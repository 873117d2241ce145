"""Run settings: one validated record shared by the Python API, the CLI and the app.

Each field of :class:`RunSettings` carries its whole schema once: the type (the annotation), the
default, and a :class:`Spec` in the field's metadata (help, choices, bounds).  ``problems()``
checks every field against its Spec, ``nqs run``'s flags (``nqs_core.cli.run``) and the lab's
``param`` parameters (``app.settings``) are generated from :func:`schema`, so changing a default
or a bound is one line here.  Every rule produces a message that names the setting and what is
allowed, so the CLI (exit code 2) and the app (a message next to the control) say the same thing.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from nqs_core.hamiltonians import HAMILTONIANS
from nqs_core.lattice import BOUNDARIES, KINDS, POINT_GROUPS, make_lattice

MODELS = ("rbm", "jastrow", "convnext")
SIGNS = ("none", "marshall")
OPTIMIZERS = ("sr", "minsr", "adam", "adamw", "sgd")
NATURAL_GRADIENT = ("sr", "minsr")  # the optimizers that precondition with S (diagonal shift, trust region)
SCHEDULES = ("constant", "cosine")
DTYPES = ("float64", "float32", "mixed")
# dtype "auto": each model's precision, chosen by measurement (README, "Precision").  The ConvNeXt in mixed
# precision: 10 seeds of the default J1-J2 4×4 run (300 steps) end in the same band as float64 (rel. error
# 9.2e-3 to 4.1e-2, median 2.2e-2, against 8.4e-3 to 4.0e-2, median 2.0e-2) at 1.5× the steps per second.
# The RBM and the Jastrow stay in float64 (float32 left the RBM 4×4 stuck at a small shift; their steps
# gain little, the RBM's fast paths not at all from float32 passes).
AUTO_DTYPE = {"convnext": "mixed"}
SAMPLERS = ("metropolis", "exact")
EXCHANGES = ("neighbours", "any", "differing-neighbours", "differing-any")
SR_SOLVERS = ("dense", "cg")
DEFAULT_KERNEL = 3  # the ConvNeXt kernel when none is given, or the patch grid when that is smaller
SQUARE_MAX_L = 16  # the square lattice's largest side (the chain's is L's upper bound)


class SettingsError(ValueError):
    """An invalid setting; ``setting`` names it (as the CLI flag without dashes)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class Spec:
    """What one setting allows, besides its type and default (the dataclass field's own)."""

    help: str
    choices: tuple[str, ...] | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself is not allowed
    unset: float | None = None  # a coupling left as None takes this value (the model's default)


def setting(default: Any, help: str, **spec: Any) -> Any:
    """A RunSettings field: its default and its :class:`Spec` (help, choices, bounds)."""
    return field(default=default, metadata={"spec": Spec(help, **spec)})


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


@dataclass(frozen=True)
class Setting:
    """One field of the schema: name, kind ("str", "int", "float" or "k"), default and Spec."""

    name: str
    kind: str
    optional: bool
    default: Any
    spec: Spec

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        """The allowed range in words, e.g. ``between 2 and 64`` or ``> 0 and ≤ 10``."""
        s = self.spec
        if s.lo is not None and s.hi is not None and not s.lo_open:
            return f"between {_num(s.lo)} and {_num(s.hi)}"
        parts = [f"{'>' if s.lo_open else '≥'} {_num(s.lo)}"] if s.lo is not None else []
        parts += [f"≤ {_num(s.hi)}"] if s.hi is not None else []
        return " and ".join(parts)

    def allowed_text(self) -> str:
        """What the setting accepts, for help texts: its choices or its range."""
        if self.spec.choices:
            return "one of " + ", ".join(self.spec.choices)
        return self.range_text()

    def default_text(self) -> str:
        if self.default is None:
            return "none" if self.spec.unset is None else f"the model's {_num(self.spec.unset)}"
        return _num(self.default) if isinstance(self.default, (int, float)) else str(self.default)

    def help_text(self) -> str:
        """Help, allowed values and default in one line (``nqs run --help`` shows it)."""
        allowed = self.allowed_text()
        return f"{self.spec.help} ({allowed + '; ' if allowed else ''}default: {self.default_text()})"

    def check(self, value: Any) -> str | None:
        """The problem with ``value`` for this setting alone, or None."""
        if value is None and self.optional:
            return None
        if self.spec.choices is not None:
            ok = value in self.spec.choices
            return None if ok else f"{self.name} must be one of {', '.join(self.spec.choices)}; got {value!r}"
        if self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and self._in_range(value)
            return None if ok else f"{self.name} must be an integer {self.range_text()}; got {value!r}"
        if self.kind == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                return f"{self.name} must be a finite number; got {value!r}"
            return None if self._in_range(value) else f"{self.name} must be {self.range_text()}; got {value:g}"
        return None  # k: checked against the lattice (RunSettings._momentum_problems)

    def _in_range(self, v: float) -> bool:
        s = self.spec
        above = s.lo is None or (v > s.lo if s.lo_open else v >= s.lo)
        return above and (s.hi is None or v <= s.hi)


def _kind(annotation: Any) -> tuple[str, bool]:
    """("str" | "int" | "float" | "k", optional) of a field's type."""
    args = typing.get_args(annotation) or (annotation,)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None))
    if typing.get_origin(base) is tuple:
        return "k", optional
    return {str: "str", int: "int", float: "float"}[base], optional


@dataclass(frozen=True)
class RunSettings:
    """Everything that defines a VMC run.  Couplings left as None take the model's default."""

    hamiltonian: str = setting("heisenberg", "model Hamiltonian", choices=HAMILTONIANS)
    lattice: str = setting("square", "lattice kind", choices=KINDS)
    L: int = setting(4, f"linear size: sites of a chain, or side of the square up to {SQUARE_MAX_L}", lo=2, hi=64)
    bc: str = setting("periodic", "boundary conditions", choices=BOUNDARIES)
    J: float | None = setting(None, "coupling J of the Heisenberg and TFIM models", lo=-10.0, hi=10.0, unset=1.0)
    J1: float | None = setting(None, "nearest-neighbour coupling of J1-J2", lo=-10.0, hi=10.0, unset=1.0)
    J2: float | None = setting(None, "next-nearest-neighbour coupling of J1-J2", lo=-10.0, hi=10.0, unset=0.5)
    h: float | None = setting(None, "transverse field of the TFIM", lo=0.0, hi=20.0, unset=1.0)
    # wavefunction
    model: str = setting("rbm", "wavefunction", choices=MODELS)
    alpha: int = setting(1, "RBM hidden-unit density", lo=1, hi=16)
    depth: int = setting(2, "ConvNeXt blocks", lo=1, hi=12)
    features: int = setting(8, "ConvNeXt features", lo=1, hi=256)
    patch: int = setting(2, "ConvNeXt patch size, a divisor of L", lo=1, hi=8)
    kernel: int | None = setting(None, "ConvNeXt depthwise kernel size, at most L/patch; "
                                       f"none: the largest up to {DEFAULT_KERNEL} that fits", lo=1, hi=15)
    sign: str = setting("none", "sign prior multiplying the network", choices=SIGNS)
    k: tuple[float, ...] | None = setting(
        None, "momentum sector in units of π, e.g. 0 or 1 (chain), 0,0 (square); none = no projection")
    point_group: str = setting(
        "none", "projection onto the trivial irrep A1 of the point group about a site (periodic lattices): "
                "rotations = C4 (square), full = C4v on the square, the reflection on a chain; with k only where "
                "the group keeps k (square 0,0 or 1,1; chain 0 or 1); costs |G| network passes",
        choices=POINT_GROUPS)
    dtype: str = setting("auto", "parameter and network precision; mixed: float64 parameters, Jacobian and "
                                 "solve, float32 passes in sampling, local energies and the SR product; "
                                 "auto: mixed for the ConvNeXt, float64 for the others",
                         choices=("auto",) + DTYPES)
    # optimizer
    optimizer: str = setting("sr", "optimizer", choices=OPTIMIZERS)
    lr: float = setting(0.05, "learning rate", lo=0.0, hi=10.0, lo_open=True)
    schedule: str = setting("constant", "learning-rate schedule", choices=SCHEDULES)
    # 0.01 left 1 of 10 seeds of the default run stuck at 34 % (0.05: 10 of 10 converge)
    diag_shift: float = setting(0.05, "SR / MinSR diagonal shift λ", lo=0.0, hi=100.0)
    sr_solver: str = setting("dense", "SR linear solver", choices=SR_SOLVERS)
    momentum: float = setting(0.0, "momentum on the (natural-)gradient direction; 0: plain steps", lo=0.0, hi=0.999)
    max_step: float | None = setting(
        None, "trust region of SR / MinSR: the largest Fubini–Study length η·√(dᵀSd) of one step (the step is "
              "scaled down to it); none: no bound", lo=0.0, hi=10.0, lo_open=True)
    # sampler
    sampler: str = setting("metropolis", "sampler; exact enumerates at most 20 sites", choices=SAMPLERS)
    # differing-neighbours: 1.4× the effective samples per network pass of neighbours at the same sweep
    # (ConvNeXt J1-J2 4×4, benchmarks/sampler_mixing.py)
    exchange: str = setting("differing-neighbours", "Sᶻ-conserving exchange moves: between neighbours or any pair; "
                                                    "differing-: only pairs of differing spins (Hastings-corrected)",
                            choices=EXCHANGES)
    samples: int = setting(1024, "samples per step, a multiple of chains", lo=1, hi=1 << 20)
    chains: int = setting(16, "parallel Markov chains", lo=1, hi=1 << 14)
    sweep: int | None = setting(None, "Metropolis sub-steps between samples; none: number of sites", lo=1, hi=10_000)
    thermalization: int | None = setting(
        None, "discarded sweeps per chain per step; none: samples per chain / 10", lo=0, hi=100_000)
    # run
    steps: int = setting(300, "optimisation steps, counting those of a resumed checkpoint", lo=1, hi=1_000_000)
    eval_samples: int = setting(8192, "samples of the final evaluation; 0: none", lo=0, hi=1 << 22)
    seed: int = setting(0, "random seed", lo=0, hi=2**31 - 1)
    steps_per_call: int = setting(1, "VMC steps fused into one compiled call", lo=1, hi=1000)
    # stopping rules (None = off); run-time values, they do not change the compiled step
    time_budget: float | None = setting(None, "stop the optimisation after this many seconds of wall time",
                                        lo=0.0, lo_open=True)
    target_error: float | None = setting(None, "stop once the relative error against the reference is below this",
                                         lo=0.0, lo_open=True)
    target_v_score: float | None = setting(None, "stop once the V-score is below this", lo=0.0, lo_open=True)

    # ----- derived ----------------------------------------------------------------------
    @property
    def n_sites(self) -> int:
        return self.L if self.lattice == "chain" else self.L * self.L

    @property
    def kernel_size(self) -> int:
        """The ConvNeXt kernel: ``kernel``, or the largest up to DEFAULT_KERNEL that fits L/patch."""
        if self.kernel is not None:
            return self.kernel
        return max(1, min(DEFAULT_KERNEL, self.L // max(self.patch, 1)))

    @property
    def precision(self) -> str:
        """The run's precision, one of DTYPES: ``dtype``, or for "auto" the model's (``AUTO_DTYPE``)."""
        return AUTO_DTYPE.get(self.model, "float64") if self.dtype == "auto" else self.dtype

    @property
    def samples_per_chain(self) -> int:
        return self.samples // self.chains

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["k"] = list(self.k) if self.k is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSettings":
        """Settings from ``to_dict()`` output (a checkpoint, an exported run); unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SettingsError(unknown[0], f"unknown setting {unknown[0]!r}")
        d = dict(d)
        if d.get("k") is not None:
            d["k"] = tuple(float(x) for x in d["k"])
        return cls(**d)

    def replace(self, **changes: Any) -> "RunSettings":
        return replace(self, **changes)

    # ----- validation -------------------------------------------------------------------
    def problems(self) -> list[SettingsError]:
        """All problems with these settings (empty when valid): each field, then the rules across fields."""
        out = []
        for s in schema().values():
            message = s.check(getattr(self, s.name))
            if message:
                out.append(SettingsError(s.name, message))
        bad = {p.setting for p in out}
        for rule in (_lattice_problems, _convnext_problems, _momentum_problems, _point_group_problems,
                     _sampling_problems, _optimizer_problems):
            out += rule(self, bad)
        return out

    def validate(self) -> "RunSettings":
        """Raise the first problem as a SettingsError; return self when valid."""
        problems = self.problems()
        if problems:
            raise problems[0]
        return self


@functools.cache
def schema() -> dict[str, Setting]:
    """Every RunSettings field with its kind, default and Spec, in field order."""
    hints = typing.get_type_hints(RunSettings)
    out = {}
    for f in dataclasses.fields(RunSettings):
        kind, optional = _kind(hints[f.name])
        out[f.name] = Setting(f.name, kind, optional, f.default, f.metadata["spec"])
    return out


def _lattice_problems(s: RunSettings, bad: set[str]) -> list[SettingsError]:
    """The square's size limit, the Sᶻ = 0 sector's even site count, Marshall's bipartite lattice."""
    if bad & {"L", "lattice"}:
        return []
    if s.lattice == "square" and s.L > SQUARE_MAX_L:
        return [SettingsError("L", f"L must be an integer between 2 and {SQUARE_MAX_L} on a square lattice; "
                                   f"got {s.L}")]
    out = []
    if s.hamiltonian in ("heisenberg", "j1j2") and s.n_sites % 2:
        out.append(SettingsError("L", f"L must give an even number of sites for the Sᶻ = 0 sector of "
                                      f"{s.hamiltonian}; got {s.n_sites} sites"))
    if s.sign == "marshall" and s.bc == "periodic" and s.L % 2:
        out.append(SettingsError("sign", "sign=marshall needs a bipartite lattice (even L when periodic)"))
    return out


def _convnext_problems(s: RunSettings, bad: set[str]) -> list[SettingsError]:
    """The ConvNeXt patch divides L and the kernel fits the patch grid."""
    if s.model != "convnext" or bad & {"L", "lattice", "patch", "kernel"}:
        return []
    if s.L % s.patch:
        allowed = ", ".join(str(p) for p in range(1, s.L + 1) if s.L % p == 0)
        return [SettingsError("patch", f"patch must divide L = {s.L}; got {s.patch} (allowed: {allowed})")]
    if s.kernel is not None and s.kernel > s.L // s.patch:
        grid = s.L // s.patch
        return [SettingsError("kernel", f"kernel must be ≤ the patch grid L/patch = {grid}; got {s.kernel}")]
    return []


def _momentum_problems(s: RunSettings, bad: set[str]) -> list[SettingsError]:
    """k must be one of the lattice's momenta (only 0 with open boundaries)."""
    if s.k is None or bad & {"L", "lattice", "bc"}:
        return []
    lat = make_lattice(s.lattice, s.L, s.bc)
    try:
        lat.momentum_index(s.k)
        return []
    except (ValueError, TypeError):
        pass
    got = ",".join(f"{float(x):g}" for x in s.k) if s.k else "(empty)"
    if not lat.pbc:
        allowed = "0" if lat.dim == 1 else "0,0"
        return [SettingsError("k", f"k must be {allowed} with open boundaries (no translation symmetry); got {got}")]
    per_axis = ", ".join(f"{2 * m / s.L:g}" for m in range(s.L))
    shape = "KX" if lat.dim == 1 else "KX,KY"
    return [SettingsError("k", f"k must be {shape} on a {s.lattice} (units of π), each a multiple "
                               f"of 2/L = {2 / s.L:g}: one of {per_axis}; got {got}")]


def _point_group_problems(s: RunSettings, bad: set[str]) -> list[SettingsError]:
    """The point group exists on this lattice (periodic; rotations on the square) and keeps the momentum k."""
    if s.point_group == "none" or bad & {"L", "lattice", "bc", "k", "point_group"}:
        return []
    problem = make_lattice(s.lattice, s.L, s.bc).point_group_problem(s.point_group, s.k)
    return [SettingsError("point_group", problem)] if problem else []


def _sampling_problems(s: RunSettings, bad: set[str]) -> list[SettingsError]:
    """Samples split evenly over the chains; the exact sampler's basis fits in memory."""
    out = []
    if not bad & {"samples", "chains"} and s.samples % s.chains:
        out.append(SettingsError("samples", f"samples must be divisible by chains = {s.chains}; got {s.samples}"))
    if s.sampler == "exact" and not bad & {"L", "lattice"} and s.n_sites > 20:
        out.append(SettingsError("sampler", f"sampler=exact enumerates the basis: at most 20 sites; got {s.n_sites}"))
    return out


def _optimizer_problems(s: RunSettings, bad: set[str]) -> list[SettingsError]:
    """The step's trust region is measured in the metric S: only the natural-gradient optimizers have it."""
    if s.max_step is not None and not bad & {"optimizer", "max_step"} and s.optimizer not in NATURAL_GRADIENT:
        return [SettingsError("max_step", f"max_step bounds a natural-gradient step: it needs optimizer sr or "
                                          f"minsr; got optimizer={s.optimizer} (leave max_step empty)")]
    return []
