"""The run settings schema: the stopping-rule fields, their flags and their validation."""

from __future__ import annotations

import pytest

from nqs_core.cli import build_parser
from nqs_core.settings import RunSettings

STOP_FIELDS = ("time_budget", "target_error", "target_v_score")


@pytest.mark.parametrize("name", STOP_FIELDS)
def test_stop_rules_default_off_and_take_positive_numbers(name):
    assert getattr(RunSettings(), name) is None
    assert RunSettings(**{name: 0.5}).problems() == []
    for bad in (0.0, -1.0, float("nan"), "soon"):
        problems = RunSettings(**{name: bad}).problems()
        assert [p.setting for p in problems] == [name], bad
        assert name in str(problems[0])


@pytest.mark.parametrize("name", STOP_FIELDS)
def test_stop_rules_are_cli_flags(name):
    flag = "--" + name.replace("_", "-")
    args = build_parser().parse_args(["run", flag, "2.5"])
    assert getattr(args, name) == 2.5


def test_stop_rules_are_run_time_values():
    """They do not split the compiled-step cache: the normalised settings ignore them."""
    from nqs_core.vmc import RUNTIME_FIELDS

    a = RunSettings().replace(**RUNTIME_FIELDS)
    b = RunSettings(time_budget=60.0, target_error=1e-3, target_v_score=1e-2).replace(**RUNTIME_FIELDS)
    assert a == b and hash(a) == hash(b)
