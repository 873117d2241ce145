"""One settings schema: every RunSettings field's type, default, bounds, choices and help are
written once (``nqs_core.settings``), and ``nqs run --help``, the lab's parameters and the API
show the same; the stopping-rule fields and their flags."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from app.settings import NO_MOMENTUM, LabSettings, parameter
from nqs_core.cli import build_parser
from nqs_core.cli.run import flag_kwargs, settings_from_args
from nqs_core.settings import RunSettings, schema

STOP_FIELDS = ("time_budget", "target_error", "target_v_score")


def run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def cli_help() -> str:
    return flat(run_parser().format_help())


@pytest.mark.parametrize("name", list(schema()))
def test_cli_lab_and_api_show_the_same_schema(name, cli_help):
    """For every field: the API's default, the CLI flag's help/choices/type and the lab's parameter
    (default, bounds, objects, doc) all come from the one Spec."""
    setting = schema()[name]
    spec = setting.spec
    assert getattr(RunSettings(), name) == setting.default  # API
    action = next(a for a in run_parser()._actions if a.dest == name)  # CLI
    assert action.option_strings == [setting.flag] and action.help == setting.help_text()
    assert flat(setting.help_text()) in cli_help
    assert action.choices == spec.choices
    p = LabSettings.param[name]  # lab
    assert p.doc == setting.help_text()
    if spec.choices is not None:
        assert list(p.names.values()) == list(spec.choices) and p.default == setting.default
    elif setting.kind == "k":
        assert p.default == NO_MOMENTUM and setting.default is None
    else:
        assert p.bounds == (spec.lo, spec.hi) and p.inclusive_bounds == (not spec.lo_open, True)
        assert p.default == (spec.unset if setting.default is None and spec.unset is not None else setting.default)


def test_flags_left_out_give_the_api_defaults():
    args = build_parser().parse_args(["run"])
    assert settings_from_args(args) == RunSettings()


def test_lab_without_a_preset_shows_the_engine_defaults():
    """The lab has no defaults of its own (it used to start at diag shift 0.01, sign marshall, 150 steps)."""
    rs = LabSettings(preset="custom").run_settings()
    assert rs == RunSettings(J=1.0)  # the lab spells out the Heisenberg coupling the engine leaves as None
    assert (rs.diag_shift, rs.sign, rs.steps) == (0.05, "none", 300)


def test_couplings_left_as_none_take_the_documented_value():
    """``unset`` in the schema is what the Hamiltonian uses for a coupling left as None."""
    from nqs_core.hamiltonians import make_hamiltonian
    from nqs_core.lattice import make_lattice

    lat = make_lattice("chain", 8, "periodic")
    u = {n: schema()[n].spec.unset for n in ("J", "J1", "J2", "h")}
    assert make_hamiltonian("heisenberg", lat).J == u["J"]
    assert (make_hamiltonian("j1j2", lat).J, make_hamiltonian("j1j2", lat).J2) == (u["J1"], u["J2"])
    assert make_hamiltonian("tfim", lat).h == u["h"]


@pytest.mark.parametrize("name, default, hi", [("diag_shift", 0.2, 50.0), ("samples", 2048, 4096)])
def test_changing_a_default_or_bound_is_one_line(name, default, hi):
    """The CLI flag, the lab parameter and the API's check are functions of the Setting alone: a
    Setting with another default and upper bound (what editing its one line does) shows in all three."""
    old = schema()[name]
    new = dataclasses.replace(old, default=default, spec=dataclasses.replace(old.spec, hi=hi))
    assert f"default: {default:g}" in flag_kwargs(new)["help"] and f"and {hi:g}" in flag_kwargs(new)["help"]
    p = parameter(new)
    assert p.default == default and p.bounds[1] == hi
    between = type(default)((hi + old.spec.hi) / 2)  # allowed before the edit, not after
    assert old.check(between) is None and new.check(hi) is None
    assert new.check(between) == f"{name} must be {'an integer ' if old.kind == 'int' else ''}" \
                                 f"between {old.spec.lo:g} and {hi:g}; got {between:g}"


def test_validation_messages_name_the_setting_and_the_range():
    msgs = {p.setting: str(p) for p in RunSettings(lr=0.0, alpha=0, h=30.0, model="mlp", sweep=0).problems()}
    assert msgs == {
        "lr": "lr must be > 0 and ≤ 10; got 0",
        "alpha": "alpha must be an integer between 1 and 16; got 0",
        "h": "h must be between 0 and 20; got 30",
        "model": "model must be one of rbm, jastrow, convnext; got 'mlp'",
        "sweep": "sweep must be an integer between 1 and 10000; got 0",
    }
    assert RunSettings(sweep=None, J=None).problems() == []
    assert RunSettings(alpha=True).problems()[0].setting == "alpha"  # a bool is not an integer


@pytest.mark.parametrize("name", STOP_FIELDS)
def test_stop_rules_default_off_and_take_positive_numbers(name):
    assert getattr(RunSettings(), name) is None
    assert RunSettings(**{name: 0.5}).problems() == []
    for bad in (0.0, -1.0, math.nan, "soon"):
        problems = RunSettings(**{name: bad}).problems()
        assert [p.setting for p in problems] == [name], bad
        assert name in str(problems[0])


@pytest.mark.parametrize("name", STOP_FIELDS)
def test_stop_rules_are_cli_flags(name):
    flag = "--" + name.replace("_", "-")
    args = build_parser().parse_args(["run", flag, "2.5"])
    assert getattr(args, name) == 2.5 and settings_from_args(args) == RunSettings(**{name: 2.5})


def test_stop_rules_are_run_time_values():
    """They do not split the compiled-step cache: the normalised settings ignore them."""
    from nqs_core.vmc import RUNTIME_FIELDS

    a = RunSettings().replace(**RUNTIME_FIELDS)
    b = RunSettings(time_budget=60.0, target_error=1e-3, target_v_score=1e-2).replace(**RUNTIME_FIELDS)
    assert a == b and hash(a) == hash(b)


def test_the_trust_region_is_a_run_time_value():
    """max_step enters the compiled step as an array: any bound, or none, shares one engine."""
    from nqs_core.vmc import RUNTIME_FIELDS, hyperparameters

    assert RunSettings(max_step=0.1).replace(**RUNTIME_FIELDS) == RunSettings().replace(**RUNTIME_FIELDS)
    assert float(hyperparameters(RunSettings(max_step=0.1))["max_step"]) == 0.1
    assert float(hyperparameters(RunSettings())["max_step"]) == float("inf")
