"""Run settings: one validated record shared by the Python API, the CLI and the app.

Every rule here produces a message that names the setting and what is allowed, so the CLI
(exit code 2) and the app (a message next to the control) say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from nqs_core.hamiltonians import HAMILTONIANS
from nqs_core.lattice import BOUNDARIES, KINDS

MODELS = ("rbm", "jastrow", "convnext")
SIGNS = ("none", "marshall")
OPTIMIZERS = ("sgd", "adam", "adamw", "sr", "minsr")
SCHEDULES = ("constant", "cosine")
DTYPES = ("float32", "float64")
SAMPLERS = ("metropolis", "exact")
EXCHANGES = ("neighbours", "any")
SR_SOLVERS = ("dense", "cg")


class SettingsError(ValueError):
    """An invalid setting; ``setting`` names it (as the CLI flag without dashes)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class RunSettings:
    """Everything that defines a VMC run.  Couplings left as None take the model's default."""

    hamiltonian: str = "heisenberg"
    lattice: str = "square"
    L: int = 4
    bc: str = "periodic"
    J: float | None = None
    J1: float | None = None
    J2: float | None = None
    h: float | None = None
    # wavefunction
    model: str = "rbm"
    alpha: int = 1
    depth: int = 2
    features: int = 8
    patch: int = 2
    kernel: int = 3
    sign: str = "none"
    k: tuple[float, ...] | None = None  # momentum sector in units of π; None = no projection
    dtype: str = "float64"
    # optimizer
    optimizer: str = "sr"
    lr: float = 0.05
    schedule: str = "constant"
    diag_shift: float = 0.05  # SR/MinSR shift: 0.01 left 1 of 10 seeds of the default run stuck at 34 % (0.05: 10 of 10 converge)
    sr_solver: str = "dense"
    momentum: float = 0.0  # optax momentum on the (natural-)gradient direction; 0 = plain SGD
    # sampler
    sampler: str = "metropolis"
    exchange: str = "neighbours"
    samples: int = 1024
    chains: int = 16
    sweep: int | None = None  # Metropolis sub-steps between samples; None = number of sites
    thermalization: int | None = None  # discarded sweeps per chain per step; None = samples_per_chain // 10
    # run
    steps: int = 300
    eval_samples: int = 8192
    seed: int = 0
    steps_per_call: int = 1
    # stopping rules (None = off); run-time values, they do not change the compiled step
    time_budget: float | None = None  # seconds of wall time for the optimisation steps
    target_error: float | None = None  # stop at this relative error against the reference
    target_v_score: float | None = None  # stop at this V-score

    # ----- derived ----------------------------------------------------------------------
    @property
    def n_sites(self) -> int:
        return self.L if self.lattice == "chain" else self.L * self.L

    @property
    def samples_per_chain(self) -> int:
        return self.samples // self.chains

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["k"] = list(self.k) if self.k is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSettings":
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
        """All problems with these settings (empty when valid)."""
        out: list[SettingsError] = []

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            v = getattr(self, name)
            if v not in allowed:
                out.append(SettingsError(name, f"{name} must be one of {', '.join(allowed)}; got {v!r}"))

        def integer(name: str, lo: int, hi: int | None = None, optional: bool = False) -> bool:
            v = getattr(self, name)
            if v is None and optional:
                return True
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
            if not ok:
                rng = f"between {lo} and {hi}" if hi is not None else f"≥ {lo}"
                out.append(SettingsError(name, f"{name} must be an integer {rng}; got {v!r}"))
            return ok

        def number(name: str, lo: float | None = None, hi: float | None = None, strict_lo: bool = False,
                   optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                out.append(SettingsError(name, f"{name} must be a finite number; got {v!r}"))
                return
            if lo is not None and (v <= lo if strict_lo else v < lo):
                out.append(SettingsError(name, f"{name} must be {'>' if strict_lo else '≥'} {lo:g}; got {v:g}"))
            if hi is not None and v > hi:
                out.append(SettingsError(name, f"{name} must be ≤ {hi:g}; got {v:g}"))

        choice("hamiltonian", HAMILTONIANS)
        choice("lattice", KINDS)
        choice("bc", BOUNDARIES)
        choice("model", MODELS)
        choice("sign", SIGNS)
        choice("dtype", DTYPES)
        choice("optimizer", OPTIMIZERS)
        choice("schedule", SCHEDULES)
        choice("sr_solver", SR_SOLVERS)
        choice("sampler", SAMPLERS)
        choice("exchange", EXCHANGES)
        for c in ("J", "J1", "J2", "h"):
            number(c, optional=True)
        L_ok = integer("L", 2, 64 if self.lattice == "chain" else 16) if self.lattice in KINDS else False
        if L_ok and self.hamiltonian in ("heisenberg", "j1j2") and self.n_sites % 2:
            out.append(SettingsError("L", f"L must give an even number of sites for the Sᶻ = 0 sector of "
                                          f"{self.hamiltonian}; got {self.n_sites} sites"))
        integer("alpha", 1, 16)
        integer("depth", 1, 12)
        integer("features", 1, 256)
        p_ok = integer("patch", 1, 8)
        k_ok = integer("kernel", 1, 15)
        if self.model == "convnext" and L_ok and p_ok and k_ok:
            if self.L % self.patch:
                out.append(SettingsError("patch", f"patch must divide L = {self.L}; got {self.patch} "
                                                  f"(allowed: {', '.join(str(p) for p in range(1, self.L + 1) if self.L % p == 0)})"))
            elif self.kernel > self.L // self.patch:
                out.append(SettingsError("kernel", f"kernel must be ≤ the patch grid L/patch = {self.L // self.patch}; "
                                                   f"got {self.kernel}"))
        if self.k is not None and L_ok and self.lattice in KINDS:
            from nqs_core.lattice import make_lattice

            lat = make_lattice(self.lattice, self.L, self.bc if self.bc in BOUNDARIES else "periodic")
            try:
                lat.momentum_index(self.k)
            except (ValueError, TypeError):
                got = ",".join(f"{float(x):g}" for x in self.k) if self.k else "(empty)"
                if not lat.pbc:
                    allowed = "0" if lat.dim == 1 else "0,0"
                    out.append(SettingsError("k", f"k must be {allowed} with open boundaries (no translation "
                                                  f"symmetry); got {got}"))
                else:
                    per_axis = ", ".join(f"{2 * m / self.L:g}" for m in range(self.L))
                    shape = "KX" if lat.dim == 1 else "KX,KY"
                    out.append(SettingsError("k", f"k must be {shape} on a {self.lattice} (units of π), each a multiple "
                                                  f"of 2/L = {2 / self.L:g}: one of {per_axis}; got {got}"))
        if self.sign == "marshall" and self.lattice in KINDS and L_ok and self.bc == "periodic" and self.L % 2:
            out.append(SettingsError("sign", "sign=marshall needs a bipartite lattice (even L when periodic)"))
        number("lr", 0.0, 10.0, strict_lo=True)
        number("diag_shift", 0.0, 100.0)
        number("momentum", 0.0, 0.999)
        s_ok = integer("samples", 1, 1 << 20)
        c_ok = integer("chains", 1, 1 << 14)
        if s_ok and c_ok and self.samples % self.chains:
            out.append(SettingsError("samples", f"samples must be divisible by chains = {self.chains}; got {self.samples}"))
        integer("sweep", 1, 10_000, optional=True)
        integer("thermalization", 0, 100_000, optional=True)
        integer("steps", 1, 1_000_000)
        integer("eval_samples", 0, 1 << 22)
        integer("seed", 0, 2**31 - 1)
        integer("steps_per_call", 1, 1000)
        for name in ("time_budget", "target_error", "target_v_score"):
            number(name, 0.0, strict_lo=True, optional=True)
        if self.sampler == "exact" and L_ok and self.n_sites > 20:
            out.append(SettingsError("sampler", f"sampler=exact enumerates the basis: at most 20 sites; got {self.n_sites}"))
        return out

    def validate(self) -> "RunSettings":
        """Raise the first problem as a SettingsError; return self when valid."""
        problems = self.problems()
        if problems:
            raise problems[0]
        return self
