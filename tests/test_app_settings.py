"""The lab's settings logic: bounds, dependent visibility, validation messages, presets, momenta."""

import pytest

from app.settings import CONTROLS, DEFAULT_PRESET, NO_MOMENTUM, PRESETS, LabSettings, allowed_momenta
from nqs_core.settings import RunSettings, SettingsError


def test_default_is_the_fast_heisenberg_preset_and_valid():
    s = LabSettings()
    assert s.preset == DEFAULT_PRESET
    rs = s.to_run_settings()
    assert (rs.hamiltonian, rs.lattice, rs.L, rs.model, rs.optimizer) == ("heisenberg", "square", 4, "rbm", "sr")
    assert s.problems() == {}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_valid_and_sets_its_values(name):
    s = LabSettings(preset=name)
    rs = s.to_run_settings()
    assert s.problems() == {}
    for key, value in PRESETS[name].overrides.items():
        assert getattr(rs, key) == value, key
    for key, value in RunSettings().to_dict().items():  # what the preset leaves out is the engine's default
        if key not in PRESETS[name].overrides and key not in ("J", "J1", "J2", "h"):
            assert getattr(rs, key) == (tuple(value) if isinstance(value, list) else value), key


def test_a_convnext_chosen_after_the_default_preset_runs_in_its_own_precision():
    """The talk presets leave dtype at "auto": their RBMs run float64, and a lecturer who switches the model to the
    ConvNeXt gets its mixed precision (a preset pinning float64 had kept the ConvNeXt on the slower path)."""
    s = LabSettings()
    assert s.dtype == "auto" and s.to_run_settings().precision == "float64"
    s.model = "convnext"
    assert s.to_run_settings().precision == "mixed"


def test_chain_preset_projects_on_k_pi():
    s = LabSettings(preset="chain-18-k-pi")
    assert s.k == "π"
    assert s.to_run_settings().k == (1.0,)


def test_marshall_presets_differ_only_in_the_sign_prior():
    a = LabSettings(preset="j1j2-no-sign").to_run_settings()
    b = LabSettings(preset="j1j2-marshall").to_run_settings()
    assert (a.sign, b.sign) == ("none", "marshall")
    assert a.replace(sign="marshall") == b


def test_editing_a_control_switches_to_custom_and_preset_restores():
    s = LabSettings()
    s.L = 6
    assert s.preset == "custom"
    s.preset = DEFAULT_PRESET
    assert s.L == 4 and s.preset == DEFAULT_PRESET


@pytest.mark.parametrize("hamiltonian, shown, hidden", [
    ("heisenberg", {"J", "sign"}, {"J1", "J2", "h"}),
    ("j1j2", {"J1", "J2", "sign"}, {"J", "h"}),
    ("tfim", {"J", "h"}, {"J1", "J2", "sign"}),
])
def test_couplings_shown_as_relevant(hamiltonian, shown, hidden):
    s = LabSettings(hamiltonian=hamiltonian, preset="custom")
    visible = set(s.visible_parameters())
    assert shown <= visible and not (hidden & visible)


def test_model_optimizer_and_boundary_visibility():
    s = LabSettings()
    assert "alpha" in s.visible_parameters() and "depth" not in s.visible_parameters()
    s.model = "convnext"
    assert {"depth", "features", "patch", "kernel"} <= set(s.visible_parameters())
    assert "alpha" not in s.visible_parameters()
    s.model = "jastrow"
    assert not {"alpha", "depth", "features", "patch", "kernel"} & set(s.visible_parameters())
    assert {"diag_shift", "max_step"} <= set(s.visible_parameters())
    s.max_step = 0.1
    assert s.to_run_settings().max_step == 0.1
    s.optimizer = "adam"
    assert not {"diag_shift", "max_step"} & set(s.visible_parameters())
    assert s.to_run_settings().max_step is None  # a hidden bound is not sent (adam refuses one)
    assert "k" in s.visible_parameters()
    s.bc = "open"
    assert "k" not in s.visible_parameters()
    assert set(s.visible_parameters()) <= set(CONTROLS)


def test_bounds_refuse_out_of_range_values():
    s = LabSettings()
    with pytest.raises(ValueError):
        s.L = 65
    with pytest.raises(ValueError):
        s.lr = 0.0
    with pytest.raises(ValueError):
        s.samples = 0
    with pytest.raises(ValueError):
        s.h = -0.5


def test_cross_setting_problems_are_keyed_to_the_control():
    s = LabSettings()
    s.L = 5
    problems = s.problems()
    assert "even number of sites" in problems["L"] and "bipartite" in problems["sign"]
    with pytest.raises(SettingsError) as err:
        s.to_run_settings()
    assert err.value.setting == "L"
    s.L = 4
    s.samples = 100
    assert "divisible by chains" in s.problems()["samples"]
    s.samples = 512
    s.L = 17  # a square lattice is at most 16×16
    assert "between 2 and 16" in s.problems()["L"]


def test_point_group_control_follows_the_boundary_and_names_its_problem():
    s = LabSettings(preset="custom")
    assert "point_group" in s.visible_parameters() and s.run_settings().point_group == "none"
    s.point_group = "full"
    s.k = next(label for label, k in allowed_momenta(s.lattice, s.L, s.bc).items() if k == (1.0, 0.0))
    assert "maps momentum k to gk" in s.problems()["point_group"]
    s.k = next(label for label, k in allowed_momenta(s.lattice, s.L, s.bc).items() if k == (0.0, 0.0))
    assert s.to_run_settings().point_group == "full"
    s.bc = "open"  # no point group about a site of an open lattice: the control is hidden and not applied
    assert "point_group" not in s.visible_parameters() and s.to_run_settings().point_group == "none"


def test_convnext_patch_must_divide_L():
    s = LabSettings(model="convnext", preset="custom")
    s.L, s.patch = 6, 4
    assert "patch must divide L" in s.problems()["patch"]
    s.patch = 3
    s.kernel = 3
    assert "kernel" in s.problems()


def test_couplings_go_to_the_right_fields():
    s = LabSettings(preset="custom", hamiltonian="j1j2", J1=1.0, J2=0.3)
    rs = s.run_settings()
    assert (rs.J, rs.J1, rs.J2, rs.h) == (None, 1.0, 0.3, None)
    s.hamiltonian = "tfim"
    s.h = 2.5
    rs = s.run_settings()
    assert (rs.J, rs.J1, rs.J2, rs.h, rs.sign) == (1.0, None, None, 2.5, "none")


def test_momentum_picker_lists_the_allowed_k():
    chain = allowed_momenta("chain", 18, "periodic")
    assert len(chain) == 19 and chain["π"] == (1.0,) and chain["0"] == (0.0,)
    assert chain["2π/9"] == pytest.approx((2 / 9,))
    square = allowed_momenta("square", 4, "periodic")
    assert square["(π, π)"] == (1.0, 1.0) and square["(π/2, 0)"] == (0.5, 0.0)
    assert list(allowed_momenta("chain", 6, "open")) == [NO_MOMENTUM, "0"]
    s = LabSettings(preset="chain-18-k-pi")
    s.L = 12  # π still allowed
    assert s.k == "π"
    s.L = 10
    assert s.k == "π" and s.momentum_sector() == (1.0,)
    s.lattice = "square"
    s.L = 4
    assert s.k == NO_MOMENTUM  # a chain momentum is not a square one
    assert "(π, π)" in s.param.k.objects


def test_load_run_settings_round_trip():
    rs = LabSettings(preset="chain-18-k-pi").to_run_settings()
    s = LabSettings()
    s.load_run_settings(rs)
    assert s.preset == "custom" and s.to_run_settings() == rs
