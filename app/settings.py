"""The lab's controls: a ``param.Parameterized`` mirror of :class:`nqs_core.settings.RunSettings`.

Bounds live on the parameters (out-of-range assignment raises ``ValueError``); the rules that
involve several settings (even site count, samples divisible by chains, patch divides L, allowed
momenta, ...) come from ``RunSettings.problems()`` so the app, the CLI and the API say the same
thing.  ``visible_parameters()`` says which controls are relevant for the current choice
(J only for Heisenberg and TFIM, J1/J2 for J1-J2, h for TFIM, α for the RBM, the ConvNeXt
hyper-parameters for ConvNeXt, the diagonal shift for SR/MinSR, the momentum picker with
periodic boundaries).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import param

from nqs_core.lattice import make_lattice
from nqs_core.settings import RunSettings, SettingsError

NO_MOMENTUM = "no projection"

# Controls in the order of the sidebar, grouped by heading.
GROUPS: dict[str, list[str]] = {
    "Hamiltonian": ["hamiltonian", "lattice", "L", "bc", "J", "J1", "J2", "h"],
    "Wavefunction": ["model", "alpha", "depth", "features", "patch", "kernel", "sign", "k", "dtype"],
    "Optimizer": ["optimizer", "lr", "diag_shift"],
    "Sampling and run": ["samples", "chains", "steps", "seed"],
}
CONTROLS = [name for names in GROUPS.values() for name in names]

# Talk presets: each sets a few controls on top of the defaults.  Each converges visibly within about a
# minute on 2 shared cores (measured with the engine headless, tests/test_app_presets.py, README "The lab").
PRESETS: dict[str, dict[str, Any]] = {
    "Heisenberg 4×4 in 30 s": dict(
        hamiltonian="heisenberg", lattice="square", L=4, bc="periodic", model="rbm", alpha=1, sign="marshall",
        k=NO_MOMENTUM, optimizer="sr", lr=0.05, diag_shift=0.01, samples=512, chains=16, steps=100, seed=0,
        dtype="float64"),
    "The sign problem: J1-J2 without a sign prior": dict(
        hamiltonian="j1j2", lattice="square", L=4, bc="periodic", J1=1.0, J2=0.3, model="rbm", alpha=2,
        sign="none", k=NO_MOMENTUM, optimizer="sr", lr=0.03, diag_shift=0.01, samples=512, chains=16,
        steps=300, seed=0, dtype="float64"),
    "The sign problem: J1-J2 with Marshall's sign": dict(
        hamiltonian="j1j2", lattice="square", L=4, bc="periodic", J1=1.0, J2=0.3, model="rbm", alpha=2,
        sign="marshall", k=NO_MOMENTUM, optimizer="sr", lr=0.03, diag_shift=0.01, samples=512, chains=16,
        steps=300, seed=0, dtype="float64"),
    # Marshall's prior makes the amplitudes the only thing to learn; with it the 18-site ground state
    # (k = π without the prior, N = 4n+2) is the k = π projection of a positive amplitude (DESIGN.md §2)
    "An 18-site chain lives at k = π": dict(
        hamiltonian="heisenberg", lattice="chain", L=18, bc="periodic", model="rbm", alpha=1, sign="marshall",
        k="π", optimizer="sr", lr=0.05, diag_shift=0.01, samples=512, chains=16, steps=80, seed=0,
        dtype="float64"),
    "TFIM across the critical point": dict(
        hamiltonian="tfim", lattice="chain", L=16, bc="periodic", J=1.0, h=1.0, model="rbm", alpha=1,
        sign="none", k=NO_MOMENTUM, optimizer="sr", lr=0.05, diag_shift=0.01, samples=1024, chains=16,
        steps=200, seed=0, dtype="float64"),
}
DEFAULT_PRESET = "Heisenberg 4×4 in 30 s"


def momentum_label(n: tuple[int, ...], L: int) -> str:
    """Human label of k = 2πn/L per axis, e.g. ``π``, ``π/2``, ``(π, 0)``."""

    def one(m: int) -> str:
        f = Fraction(2 * m, L)
        if f == 0:
            return "0"
        num = "" if f.numerator == 1 else str(f.numerator)
        return f"{num}π" if f.denominator == 1 else f"{num}π/{f.denominator}"

    parts = [one(m) for m in n]
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def allowed_momenta(lattice: str, L: int, bc: str) -> dict[str, tuple[float, ...] | None]:
    """Picker entries: label -> k in units of π (None = no projection); only k = 0 when open."""
    out: dict[str, tuple[float, ...] | None] = {NO_MOMENTUM: None}
    try:
        lat = make_lattice(lattice, int(L), bc)
    except ValueError:
        return out
    for k in lat.momenta():
        n = tuple(int(round(x * L / (2 * 3.141592653589793))) for x in k)
        out[momentum_label(n, L)] = tuple(2.0 * m / L for m in n)
    return out


class LabSettings(param.Parameterized):
    """The sidebar's settings; ``to_run_settings()`` turns them into a validated RunSettings."""

    preset = param.Selector(default=DEFAULT_PRESET, objects=[*PRESETS, "custom"], doc="Talk preset")
    hamiltonian = param.Selector(default="heisenberg", objects={"Heisenberg": "heisenberg", "J1-J2": "j1j2",
                                                                "Transverse-field Ising": "tfim"})
    lattice = param.Selector(default="square", objects={"chain": "chain", "square (L×L)": "square"})
    L = param.Integer(default=4, bounds=(2, 64), doc="Linear size (chain: sites; square: L×L sites)")
    bc = param.Selector(default="periodic", objects={"periodic": "periodic", "open": "open"}, label="Boundary")
    J = param.Number(default=1.0, bounds=(-10.0, 10.0), softbounds=(-2.0, 2.0), step=0.05, label="J")
    J1 = param.Number(default=1.0, bounds=(-10.0, 10.0), softbounds=(0.0, 2.0), step=0.05, label="J1")
    J2 = param.Number(default=0.5, bounds=(-10.0, 10.0), softbounds=(0.0, 1.0), step=0.05, label="J2")
    h = param.Number(default=1.0, bounds=(0.0, 20.0), softbounds=(0.0, 5.0), step=0.05, label="h")
    model = param.Selector(default="rbm", objects={"RBM": "rbm", "Jastrow": "jastrow", "ConvNeXt": "convnext"})
    alpha = param.Integer(default=1, bounds=(1, 16), label="α (hidden density)")
    depth = param.Integer(default=2, bounds=(1, 12), label="Depth (blocks)")
    features = param.Integer(default=8, bounds=(1, 256), label="Features")
    patch = param.Integer(default=2, bounds=(1, 8), label="Patch")
    kernel = param.Integer(default=3, bounds=(1, 15), label="Kernel")
    sign = param.Selector(default="marshall", objects={"none": "none", "Marshall": "marshall"}, label="Sign prior")
    k = param.Selector(default=NO_MOMENTUM, objects=[NO_MOMENTUM], label="Momentum sector k")
    dtype = param.Selector(default="float64", objects={"float64 (complex128)": "float64",
                                                      "float32 (complex64)": "float32"}, label="Precision")
    optimizer = param.Selector(default="sr", objects={"SR": "sr", "MinSR": "minsr", "Adam": "adam",
                                                      "AdamW": "adamw", "SGD": "sgd"})
    lr = param.Number(default=0.05, bounds=(1e-5, 10.0), softbounds=(1e-4, 0.5), step=0.005, label="Learning rate")
    diag_shift = param.Number(default=0.01, bounds=(0.0, 100.0), softbounds=(0.0, 0.2), step=0.001,
                              label="Diagonal shift")
    samples = param.Integer(default=512, bounds=(16, 1 << 16), label="Samples per step")
    chains = param.Integer(default=16, bounds=(1, 1024), label="Markov chains")
    steps = param.Integer(default=150, bounds=(1, 100_000), label="Steps")
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Seed")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._applying_preset = False
        self._refresh_momenta()
        if "preset" not in params or params["preset"] != "custom":
            self.apply_preset(self.preset)

    # ----- presets ----------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        """Set every control the preset names (unknown preset names raise ValueError)."""
        if name == "custom":
            return
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
        values = dict(PRESETS[name])
        k = values.pop("k", NO_MOMENTUM)
        self._applying_preset = True
        try:
            with param.parameterized.batch_call_watchers(self):
                self.param.update(preset=name, **values)
            self._refresh_momenta()
            self.k = k
        finally:
            self._applying_preset = False

    @param.depends("preset", watch=True)
    def _on_preset(self) -> None:
        if not self._applying_preset:
            self.apply_preset(self.preset)

    @param.depends(*CONTROLS, watch=True)
    def _on_edit(self) -> None:
        if not self._applying_preset and self.preset != "custom":
            self._applying_preset = True
            try:
                self.preset = "custom"
            finally:
                self._applying_preset = False

    # ----- the momentum picker ----------------------------------------------------------
    @param.depends("lattice", "L", "bc", watch=True)
    def _refresh_momenta(self) -> None:
        entries = allowed_momenta(self.lattice, self.L, self.bc)
        keep = self.k if self.k in entries else NO_MOMENTUM
        self.param.k.objects = list(entries)
        if self.k != keep:
            self.k = keep

    def momentum(self) -> tuple[float, ...] | None:
        """The chosen sector in units of π (None = no projection)."""
        return allowed_momenta(self.lattice, self.L, self.bc).get(self.k)

    # ----- dependent visibility ---------------------------------------------------------
    def visible_parameters(self) -> list[str]:
        """The controls that matter for the current Hamiltonian, model, optimizer and boundary."""
        hidden: set[str] = set()
        if self.hamiltonian == "j1j2":
            hidden |= {"J", "h"}
        else:
            hidden |= {"J1", "J2"}
            if self.hamiltonian != "tfim":
                hidden.add("h")
        if self.model != "rbm":
            hidden.add("alpha")
        if self.model != "convnext":
            hidden |= {"depth", "features", "patch", "kernel"}
        if self.optimizer not in ("sr", "minsr"):
            hidden.add("diag_shift")
        if self.bc != "periodic":
            hidden.add("k")
        if self.hamiltonian == "tfim":
            hidden.add("sign")  # the TFIM ground state is positive: no sign structure to learn
        return [name for name in CONTROLS if name not in hidden]

    # ----- conversion and validation ----------------------------------------------------
    def run_settings(self) -> RunSettings:
        """The RunSettings these controls describe (not validated)."""
        couplings: dict[str, float | None] = {"J": None, "J1": None, "J2": None, "h": None}
        if self.hamiltonian == "j1j2":
            couplings.update(J1=self.J1, J2=self.J2)
        elif self.hamiltonian == "tfim":
            couplings.update(J=self.J, h=self.h)
        else:
            couplings.update(J=self.J)
        visible = set(self.visible_parameters())
        return RunSettings(
            hamiltonian=self.hamiltonian, lattice=self.lattice, L=self.L, bc=self.bc, **couplings,
            model=self.model, alpha=self.alpha, depth=self.depth, features=self.features, patch=self.patch,
            kernel=self.kernel, sign=self.sign if "sign" in visible else "none",
            k=self.momentum() if "k" in visible else None, dtype=self.dtype, optimizer=self.optimizer,
            lr=self.lr, diag_shift=self.diag_shift, samples=self.samples, chains=self.chains, steps=self.steps,
            seed=self.seed)

    def problems(self) -> dict[str, str]:
        """Problems with the current settings, keyed by the control that should show them."""
        out: dict[str, str] = {}
        for err in self.run_settings().problems():
            name = err.setting if err.setting in CONTROLS else "hamiltonian"
            out.setdefault(name, str(err))
        return out

    def to_run_settings(self) -> RunSettings:
        """Validated RunSettings; raises SettingsError naming the control otherwise."""
        problems = self.run_settings().problems()
        if problems:
            raise problems[0]
        return self.run_settings()

    def load_run_settings(self, settings: RunSettings) -> None:
        """Show the controls of a saved run (used when loading an exported run)."""
        d = settings.to_dict()
        values = {name: d[name] for name in CONTROLS if name in d and name != "k" and d[name] is not None}
        self._applying_preset = True
        try:
            self.param.update(preset="custom", **values)
            self._refresh_momenta()
            label = NO_MOMENTUM
            if settings.k is not None:
                for lab, kk in allowed_momenta(self.lattice, self.L, self.bc).items():
                    if kk is not None and all(abs(a - b) < 1e-9 for a, b in zip(kk, settings.k)):
                        label = lab
            self.k = label
        finally:
            self._applying_preset = False


__all__ = ["LabSettings", "PRESETS", "DEFAULT_PRESET", "CONTROLS", "GROUPS", "NO_MOMENTUM", "SettingsError",
           "allowed_momenta", "momentum_label"]
