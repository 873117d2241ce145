"""Named recipes: a few settings on top of RunSettings' defaults, shared by ``nqs run --preset``,
``nqs presets`` and the lab's preset menu.

Two groups: ``talk`` presets converge visibly within about a minute on 2 shared cores (measured
with the engine headless, tests/test_app_presets.py, README "The lab"); ``research`` presets are
recipes that reach published precision (each documented in docs/results/ with its command).  A
preset lists every setting it depends on, so a change of an engine default does not change a
measured recipe.  To add one, append a :class:`Preset` to :data:`TALK` or :data:`RESEARCH`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nqs_core.settings import RunSettings, SettingsError

GROUPS = ("talk", "research")


@dataclass(frozen=True, eq=False)
class Preset:
    """A named recipe: ``overrides`` on top of RunSettings' defaults."""

    name: str  # command-line name, e.g. ``heisenberg-4x4``
    group: str  # one of GROUPS
    title: str  # one line, shown in the lab's menu
    story: str  # what it shows and why these values (the lab's tooltip)
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **changes: Any) -> RunSettings:
        """The full settings: defaults, then the preset's overrides, then ``changes`` (not validated)."""
        return RunSettings().replace(**{**self.overrides, **changes})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description with the full settings."""
        overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides.items()}
        return {"name": self.name, "group": self.group, "title": self.title, "story": self.story,
                "overrides": overrides, "settings": self.settings().to_dict()}


# no dtype: "auto" runs these RBMs in float64, and a ConvNeXt chosen after loading one in its mixed precision
_SR = dict(optimizer="sr", diag_shift=0.01, seed=0)
_J1J2 = dict(hamiltonian="j1j2", lattice="square", L=4, bc="periodic", J1=1.0, J2=0.3, model="rbm", alpha=2,
             lr=0.03, samples=512, chains=16, steps=300, **_SR)

TALK: tuple[Preset, ...] = (
    Preset("heisenberg-4x4", "talk", "Heisenberg 4×4 in 30 s",
           "The 16-site square-lattice antiferromagnet, an RBM with Marshall's sign prior and SR: 100 steps "
           "in about 15 s on 2 cores reach a relative error of about 5e-3 against the exact energy.",
           dict(hamiltonian="heisenberg", lattice="square", L=4, bc="periodic", model="rbm", alpha=1,
                sign="marshall", lr=0.05, samples=512, chains=16, steps=100, **_SR)),
    Preset("j1j2-no-sign", "talk", "The sign problem: J1-J2 without a sign prior",
           "Frustration (J2 = 0.3) on the 4×4 square: the RBM must learn the sign structure by itself; after "
           "30 s it is still at a relative error of about 1e-1, where Marshall's prior reaches 1e-2 "
           "(compare with j1j2-marshall; both end near 1e-2 after 300 steps).",
           dict(sign="none", **_J1J2)),
    Preset("j1j2-marshall", "talk", "The sign problem: J1-J2 with Marshall's sign",
           "The same J1-J2 model with Marshall's sign as a prior: only the amplitudes are left to learn, "
           "and the error falls to about 1e-2 within 30 s (compare with j1j2-no-sign).",
           dict(sign="marshall", **_J1J2)),
    # with Marshall's prior the 18-site ground state (k = π without the prior, N = 4n+2) is the k = π
    # projection of a positive amplitude (DESIGN.md §2)
    Preset("chain-18-k-pi", "talk", "An 18-site chain lives at k = π",
           "The Heisenberg chain of N = 4n+2 sites has its ground state at momentum π: the projection on "
           "k = π with Marshall's prior reaches a relative error of about 4e-4 in 80 steps, and the measured "
           "translation eigenvalue is −1.",
           dict(hamiltonian="heisenberg", lattice="chain", L=18, bc="periodic", model="rbm", alpha=1,
                sign="marshall", k=(1.0,), lr=0.05, samples=512, chains=16, steps=80, **_SR)),
    Preset("tfim-critical", "talk", "TFIM at the critical point h = J",
           "The transverse-field Ising chain at its critical field h/J = 1 (Carleo & Troyer 2017): 200 steps "
           "in about 12 s reach a relative error of 2e-5.  Change h to leave the critical point: deep in "
           "either phase it converges as well (h = 0.1, 10, 20: 6e-6, 8e-6, 2e-6 after 300 steps).",
           dict(hamiltonian="tfim", lattice="chain", L=16, bc="periodic", J=1.0, h=1.0, model="rbm", alpha=1,
                sign="none", lr=0.05, samples=1024, chains=16, steps=200, **_SR)),
)

# Recipes toward published precision (issue 9): each cites its source and its docs/results/ page
# (docs/results/research_recipes.md: the command, the wall time on 2 cores, E ± error, V-score and errors).
_CONVNEXT = dict(model="convnext", depth=2, features=8, patch=2, sign="none", optimizer="sr", samples=1024,
                 chains=16, steps=100_000, steps_per_call=10, eval_samples=16384, seed=0, dtype="float64")
RESEARCH: tuple[Preset, ...] = (
    # Nutakki, Shokry & Vicentini, arXiv:2505.03466 (ConvNeXt NQS); SR: Sorella, PRL 80, 4558 (1998)
    Preset("heisenberg-4x4-precise", "research", "Heisenberg 4×4 to 1e-4 in 3 minutes",
           "The translationally-symmetric ConvNeXt projected to k = (0,0), no sign prior (it learns Marshall's "
           "sign), SR with a small diagonal shift, in the ConvNeXt's mixed precision: about 1 000 steps in a 140 s "
           "budget on an idle 2-core machine; the exact energy of the final state is within 1e-4 of ED for "
           "seeds 0 and 1 (5.4e-5, 5.9e-5; float64: 740 and 710 steps, 7.0e-5 and 9.9e-5) "
           "(docs/results/research_recipes.md).",
           dict(hamiltonian="heisenberg", lattice="square", L=4, bc="periodic", kernel=2, k=(0.0, 0.0), lr=0.04,
                diag_shift=0.005, time_budget=140.0, **{**_CONVNEXT, "dtype": "auto"})),
    # point-group projection: Choo, Neupert & Carleo, PRB 100, 125124 (2019); Roth & MacDonald, arXiv:2104.05085
    Preset("j1j2-4x4-symmetric", "research", "J1-J2 4×4 at J2 = 0.5, projected onto A1",
           "The lab's default ConvNeXt run on the frustrated 4×4 (no sign prior, k = (0,0), 300 steps) projected "
           "onto A1 of the rotations C4, at 4× the cost per step: of 10 seeds 9 end between 2.5e-3 and 1.6e-2 "
           "(exact energy of the final state; seed 0 5.3e-3), against 1.0e-2 to 4.7e-2 unprojected; seed 8 "
           "is thrown off by one outlier step at step 280, which the trust region max_step = 0.1 stops when set "
           "from a checkpoint before it (docs/results/research_recipes.md).",
           dict(hamiltonian="j1j2", lattice="square", L=4, bc="periodic", J1=1.0, J2=0.5, kernel=2, k=(0.0, 0.0),
                point_group="rotations", lr=0.05, diag_shift=0.05,
                **{**_CONVNEXT, "steps": 300, "steps_per_call": 10, "eval_samples": 8192})),
    Preset("j1j2-6x6", "research", "J1-J2 6×6 at J2 = 0.5 in 15 minutes",
           "The frustrated 36-site square at its hardest point, ConvNeXt at k = (0,0) projected onto A1 of the "
           "rotations C4, without a sign prior, in mixed precision, 840 s of optimisation against the published "
           "ED energy E/N = −0.50380965 (Schulz, Ziman & Poilblanc 1996): 6.4e-3 (590 steps), short of the 5e-3 "
           "goal; unprojected 7.9e-3 (1580 steps). Run 560 s of it and resume the checkpoint with --point-group "
           "full for 220 s more (the reflections restored): 5.4e-3 in 15 minutes (docs/results/research_recipes.md).",
           dict(hamiltonian="j1j2", lattice="square", L=6, bc="periodic", J1=1.0, J2=0.5, kernel=3,
                k=(0.0, 0.0), point_group="rotations", lr=0.03, diag_shift=0.01, time_budget=840.0,
                **{**_CONVNEXT, "dtype": "auto"})),
    Preset("heisenberg-10x10", "research", "Heisenberg 10×10 against QMC in 30 minutes",
           "The 100-site square antiferromagnet against the QMC energy E/N = −0.67155264(3) (Sandvik 1997), "
           "ConvNeXt with Marshall's sign (exact for this bipartite model) and SR, 1740 s of optimisation: "
           "1.9e-3 on shared cores (docs/results/research_recipes.md).",
           dict(hamiltonian="heisenberg", lattice="square", L=10, bc="periodic", kernel=3, k=(0.0, 0.0),
                lr=0.03, diag_shift=0.01, time_budget=1740.0, **{**_CONVNEXT, "sign": "marshall"})),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (*TALK, *RESEARCH)}
DEFAULT_PRESET = "heisenberg-4x4"


def presets(group: str | None = None) -> list[Preset]:
    """Every preset (talk first), or those of one group."""
    return [p for p in PRESETS.values() if group is None or p.group == group]


def get_preset(name: str) -> Preset:
    """The preset called ``name``; SettingsError naming the allowed names otherwise."""
    if name not in PRESETS:
        raise SettingsError("preset", f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
    return PRESETS[name]
