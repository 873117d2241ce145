"""Per-session limits on problem size (app/limits.py): read from the environment with the variable named
when a value is bad, a refusal that names the setting, the maximum and the variable, and the lab's Run
refused beyond a limit without starting anything."""

from __future__ import annotations

import pytest

from app.limits import CLASS_DEFAULTS, Limits, network_parameters
from nqs_core.settings import RunSettings

SQUARE_6 = RunSettings(lattice="square", L=6)  # 36 sites


def test_the_limits_come_from_the_environment_and_the_class_has_defaults() -> None:
    assert Limits.from_env({}).maxima == dict.fromkeys(CLASS_DEFAULTS)  # make lab: none unless set
    assert Limits.from_env({}, defaults=True).maxima == CLASS_DEFAULTS  # make class
    env = {"NQS_MAX_SITES": " 36 ", "NQS_MAX_SAMPLES": "none"}
    assert Limits.from_env(env, defaults=True).maxima == {**CLASS_DEFAULTS, "NQS_MAX_SITES": 36,
                                                          "NQS_MAX_SAMPLES": None}
    assert Limits.from_env(env, defaults=True).environment()["NQS_MAX_SAMPLES"] == "none"
    for bad in ("0", "-4", "lots", "2.5"):
        with pytest.raises(ValueError, match=f"NQS_MAX_PARAMETERS='{bad}' is not a whole number"):
            Limits.from_env({"NQS_MAX_PARAMETERS": bad})


@pytest.mark.parametrize("limits, settings, message", [
    ({"NQS_MAX_SITES": 24}, SQUARE_6, "L = 6 on the square (36 sites) is more than this server allows a session: "
                                      "at most 24 sites (NQS_MAX_SITES)"),
    ({"NQS_MAX_SAMPLES": 2048}, RunSettings(samples=4096), "samples = 4096 is more than this server allows a "
                                                            "session: at most 2048 samples per step (NQS_MAX_SAMPLES)"),
    ({"NQS_MAX_PARAMETERS": 100}, RunSettings(), "model = rbm with these settings (288 parameters) is more than "
                                                 "this server allows a session: at most 100 network parameters "
                                                 "(NQS_MAX_PARAMETERS)"),
])
def test_a_problem_beyond_a_limit_is_refused_naming_the_setting_and_the_limit(
        limits: dict[str, int], settings: RunSettings, message: str) -> None:
    assert Limits(limits).problem(settings) == message
    assert Limits(dict.fromkeys(limits, 10**6)).problem(settings) is None  # within the limit
    assert Limits({}).problem(settings) is None  # no limit set


def test_the_parameters_are_those_of_the_run() -> None:
    """The count is the one a run's summary reports (4x4 RBM, alpha 1: 16 x 16 weights, 16 + 16 biases)."""
    assert network_parameters(RunSettings()) == 288
    assert network_parameters(RunSettings(alpha=2)) == 2 * 256 + 32 + 16


def test_the_lab_refuses_a_run_beyond_a_limit() -> None:
    from app.lab import Lab

    lab = Lab()
    assert lab.limits is None  # a Lab is unlimited unless its server gives it limits (app/main.py)
    lab.limits = Limits({"NQS_MAX_SITES": 16})
    lab.settings.param.update(preset="custom", lattice="square", L=6)
    lab._on_run()
    assert not lab.runner.alive and lab.runner.phase == "idle" and not lab.run_button.disabled
    assert "Not started: L = 6 on the square (36 sites)" in lab.message.object
    assert "at most 16 sites (NQS_MAX_SITES)" in lab.message.object and "Traceback" not in lab.message.object
    lab.settings.L = 4  # within the limit: the message goes
    assert lab.message.object == ""
    lab.shutdown()


def test_the_lab_refuses_a_sweep_beyond_a_limit() -> None:
    """The Sweep tab checks the server's limits as Run does: refused, naming the setting, nothing started."""
    from app.lab import Lab

    lab = Lab()
    lab.limits = Limits({"NQS_MAX_SITES": 16})
    lab.settings.param.update(preset="custom", hamiltonian="tfim", lattice="square", L=6)
    assert not lab.sweep.start() and lab.sweep.job is None and not lab.sweep.sweep_button.disabled
    assert lab.sweep.message == ("Not started: L = 6 on the square (36 sites) is more than this server allows a "
                                 "session: at most 16 sites (NQS_MAX_SITES).")
    lab.shutdown()


def test_the_parameter_count_is_cached_on_the_static_settings() -> None:
    """A new seed, learning rate, step count or coupling builds the same network: counted once."""
    from app.limits import _network_parameters

    _network_parameters.cache_clear()
    base = RunSettings(hamiltonian="tfim", h=1.0)
    counts = {network_parameters(base.replace(**change)) for change in
              ({}, {"seed": 7}, {"lr": 0.02}, {"steps": 500}, {"h": 0.5})}
    assert counts == {288} and _network_parameters.cache_info().misses == 1
    assert network_parameters(base.replace(alpha=2)) == 2 * 256 + 32 + 16  # the network changes: counted again
    assert _network_parameters.cache_info().misses == 2
