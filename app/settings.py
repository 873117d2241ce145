"""The lab's controls: a ``param.Parameterized`` mirror of :class:`nqs_core.settings.RunSettings`.

One parameter per RunSettings field, generated from the engine's settings schema (default,
bounds, choices, help); this module adds only presentation (labels, names of choices) and the
sidebar's grouping.  Presets come from :mod:`nqs_core.presets`: a preset shows RunSettings'
defaults with the preset's overrides.

Bounds live on the parameters (out-of-range assignment raises ``ValueError``); the rules that
involve several settings (even site count, samples divisible by chains, patch divides L, allowed
momenta, ...) come from ``RunSettings.problems()`` so the app, the CLI and the API say the same
thing.  ``visible_parameters()`` says which controls are relevant for the current choice
(J only for Heisenberg and TFIM, J1/J2 for J1-J2, h for TFIM, α for the RBM, the ConvNeXt
hyper-parameters for ConvNeXt, the diagonal shift for SR/MinSR, the momentum picker and the
point-group projection with periodic boundaries).
"""

from __future__ import annotations

from typing import Any

import param

from nqs_core.hamiltonians import COUPLINGS
from nqs_core.lattice import make_lattice, momentum_text
from nqs_core.presets import DEFAULT_PRESET, PRESETS, get_preset, presets
from nqs_core.settings import NATURAL_GRADIENT, RunSettings, Setting, SettingsError, schema

NO_MOMENTUM = "no projection"
FIELDS = list(schema())
COUPLINGS_OF = COUPLINGS

# Controls in the order of the sidebar, grouped by heading.
GROUPS: dict[str, list[str]] = {
    "Hamiltonian": ["hamiltonian", "lattice", "L", "bc", "J", "J1", "J2", "h"],
    "Wavefunction": ["model", "alpha", "depth", "features", "patch", "kernel", "sign", "k", "point_group", "dtype"],
    "Optimizer": ["optimizer", "lr", "diag_shift", "max_step"],
    "Sampling and run": ["samples", "chains", "steps", "time_budget", "seed"],
}
CONTROLS = [name for names in GROUPS.values() for name in names]

# Presentation only (labels, choice names, input steps, the short name a run's label uses where the label holds an
# input hint); types, defaults, bounds and help come from the schema.
UI: dict[str, dict[str, Any]] = {
    "hamiltonian": dict(names={"heisenberg": "Heisenberg", "j1j2": "J1-J2", "tfim": "Transverse-field Ising"}),
    "lattice": dict(names={"square": "square (L×L)"}),
    "bc": dict(label="Boundary"),
    "J": dict(label="J", step=0.05), "J1": dict(label="J1", step=0.05), "J2": dict(label="J2", step=0.05),
    "h": dict(label="h", step=0.05),
    "model": dict(names={"rbm": "RBM", "jastrow": "Jastrow", "convnext": "ConvNeXt"}),
    "alpha": dict(label="α (hidden density)"), "depth": dict(label="Depth (blocks)"),
    "features": dict(label="Features"), "patch": dict(label="Patch"), "kernel": dict(label="Kernel"),
    "sign": dict(label="Sign prior", names={"marshall": "Marshall"}),
    "k": dict(label="Momentum sector k"),
    "point_group": dict(label="Point-group projection (A1)",
                        names={"none": "none", "rotations": "rotations (C4)", "full": "full (C4v; chain: reflection)"}),
    "dtype": dict(label="Precision", names={"auto": "auto (mixed for the ConvNeXt)", "float64": "float64 (complex128)",
                                            "float32": "float32 (complex64)", "mixed": "mixed (float32 passes)"}),
    "optimizer": dict(names={"sr": "SR", "minsr": "MinSR", "adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}),
    "lr": dict(label="Learning rate", step=0.005), "diag_shift": dict(label="Diagonal shift", step=0.001),
    "max_step": dict(label="Trust region: largest step (empty: none)", step=0.01, short="trust region"),
    "samples": dict(label="Samples per step"), "chains": dict(label="Markov chains"),
    "steps": dict(label="Steps"), "seed": dict(label="Seed"),
    "time_budget": dict(label="Time budget (s; empty: none)", step=10, short="time budget (s)"),
}


def parameter(setting: Setting) -> param.Parameter:
    """The ``param`` parameter of one setting: default, bounds, objects and doc from the schema."""
    ui = UI.get(setting.name, {})
    common: dict[str, Any] = dict(doc=setting.help_text(), label=ui.get("label"))
    if setting.spec.choices is not None:
        names = ui.get("names", {})
        objects = {names.get(v, v): v for v in setting.spec.choices}
        return param.Selector(default=setting.default, objects=objects, **common)
    if setting.kind == "k":  # the picker's entries follow the lattice (LabSettings._refresh_momenta)
        return param.Selector(default=NO_MOMENTUM, objects=[NO_MOMENTUM], **common)
    default = setting.spec.unset if setting.default is None and setting.spec.unset is not None else setting.default
    bounds = (setting.spec.lo, setting.spec.hi)
    if setting.kind == "int":
        return param.Integer(default=default, bounds=bounds, allow_None=default is None, **common)
    return param.Number(default=default, bounds=bounds, inclusive_bounds=(not setting.spec.lo_open, True),
                        step=ui.get("step"), allow_None=default is None, **common)


# One parameter per RunSettings field, generated from the schema.
RunParameters = param.parameterized_class(
    "RunParameters", {name: parameter(setting) for name, setting in schema().items()})


def momentum_label(n: tuple[int, ...], L: int) -> str:
    """Human label of k = 2πn/L per axis, e.g. ``π``, ``π/2``, ``(π, 0)`` (``lattice.momentum_text``)."""
    return momentum_text(tuple(2.0 * m / L for m in n))


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


def momentum_choice(k: tuple[float, ...] | None, lattice: str, L: int, bc: str) -> str:
    """The picker entry of the sector ``k`` (units of π); NO_MOMENTUM when None or not allowed."""
    if k is not None:
        for label, kk in allowed_momenta(lattice, L, bc).items():
            if kk is not None and len(kk) == len(k) and all(abs(a - b) < 1e-9 for a, b in zip(kk, k)):
                return label
    return NO_MOMENTUM


class LabSettings(RunParameters):  # type: ignore[misc,valid-type]
    """The sidebar's settings; ``to_run_settings()`` turns them into a validated RunSettings."""

    preset = param.Selector(default=DEFAULT_PRESET, objects={**{p.title: p.name for p in presets()}, "custom": "custom"},
                            doc="Preset: a named recipe (nqs_core.presets); editing a control switches to custom")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._applying_preset = False
        self._refresh_momenta()
        if "preset" not in params or params["preset"] != "custom":
            self.apply_preset(self.preset)

    # ----- presets ----------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        """Show the preset's settings: RunSettings' defaults, then its overrides (unknown names raise ValueError)."""
        if name == "custom":
            return
        self._show(get_preset(name).settings(), preset=name)

    def preset_story(self) -> str:
        """What the chosen preset shows and why (empty for custom): the preset menu's tooltip."""
        return "" if self.preset == "custom" else get_preset(self.preset).story

    def _show(self, settings: RunSettings, preset: str) -> None:
        """Set every control from ``settings`` (a coupling left as None shows the model's default)."""
        values = {}
        for name, setting in schema().items():
            value = getattr(settings, name)
            if name != "k":
                values[name] = setting.spec.unset if value is None and setting.spec.unset is not None else value
        self._applying_preset = True
        try:
            with param.parameterized.batch_call_watchers(self):
                self.param.update(preset=preset, **values)
            self._refresh_momenta()
            self.k = momentum_choice(settings.k, self.lattice, self.L, self.bc)
        finally:
            self._applying_preset = False

    @param.depends("preset", watch=True)
    def _on_preset(self) -> None:
        if not self._applying_preset:
            self.apply_preset(self.preset)

    @param.depends(*FIELDS, watch=True)
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

    def momentum_sector(self) -> tuple[float, ...] | None:
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
        if self.optimizer not in NATURAL_GRADIENT:
            hidden |= {"diag_shift", "max_step"}
        if self.bc != "periodic":
            hidden |= {"k", "point_group"}
        if self.hamiltonian == "tfim":
            hidden.add("sign")  # the TFIM ground state is positive: no sign structure to learn
        return [name for name in CONTROLS if name not in hidden]

    # ----- conversion and validation ----------------------------------------------------
    def run_settings(self) -> RunSettings:
        """The RunSettings these controls describe (not validated): hidden couplings, sign, k, point group and
        trust region left out."""
        values = {name: getattr(self, name) for name in FIELDS}
        values.update({c: getattr(self, c) if c in COUPLINGS_OF[self.hamiltonian] else None
                       for c in ("J", "J1", "J2", "h")})
        visible = set(self.visible_parameters())
        values["sign"] = self.sign if "sign" in visible else "none"
        values["k"] = self.momentum_sector() if "k" in visible else None
        values["point_group"] = self.point_group if "point_group" in visible else "none"
        values["max_step"] = self.max_step if "max_step" in visible else None
        return RunSettings(**values)

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
        self._show(settings, preset="custom")


__all__ = ["LabSettings", "PRESETS", "DEFAULT_PRESET", "CONTROLS", "FIELDS", "GROUPS", "NO_MOMENTUM", "SettingsError",
           "allowed_momenta", "momentum_choice", "momentum_label", "parameter"]
