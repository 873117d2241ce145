"""Per-session limits on problem size of the served lab (issue 11, item 2), set by the server's operator.

``NQS_MAX_SITES`` bounds the lattice's sites (what the ED and DMRG references and the exact observer
cost), ``NQS_MAX_SAMPLES`` the samples per step, ``NQS_MAX_PARAMETERS`` the network's parameters (the
SR matrix grows as their square).  A value is a whole number ≥ 1, or ``none`` for no limit.

``make class`` (scripts/serve_class.sh) applies :data:`CLASS_DEFAULTS` where a variable is not set
(``python -m app.limits`` prints what it will use, or names the bad variable and exits 2); ``make lab``
applies only the variables set; the headless CLI and API have no limits.  The lab refuses a Run beyond a
limit with :meth:`Limits.problem`'s message, which names the setting, the maximum and the variable.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import Callable, Mapping

from nqs_core.settings import RunSettings


def network_parameters(settings: RunSettings) -> int:
    """Parameters of the network ``settings`` build (a complex one counts once, as in the run's summary);
    cached on the settings' static part (``nqs_core.vmc.static_settings``: the seed, lr, steps and the
    couplings do not change the network)."""
    from nqs_core.vmc import static_settings

    return _network_parameters(static_settings(settings))


@functools.lru_cache(maxsize=64)
def _network_parameters(settings: RunSettings) -> int:
    import jax
    import jax.numpy as jnp

    from nqs_core.driver import count_parameters
    from nqs_core.models import make_model
    from nqs_core.problem import build_problem

    lattice, _ = build_problem(settings)
    sigma = jnp.ones((1, lattice.n_sites), jnp.int8)
    return count_parameters(jax.eval_shape(make_model(settings, lattice).init, jax.random.PRNGKey(0), sigma))


@dataclass(frozen=True)
class Limit:
    """One limit: its variable, class default, what it counts and how a message names the settings."""

    variable: str
    default: int
    unit: str
    measure: Callable[[RunSettings], int]
    subject: Callable[[RunSettings, int], str]  # e.g. ``L = 8 on the square (64 sites)``


# the class defaults, measured on one core (numbers in README, "Serving a class"): 32 sites keep an ED
# reference (chains up to 24 sites: 39 s) and a DMRG one (periodic chain of 32: 67 s) near a minute;
# 1200 parameters a dense-SR step near 0.2 s (300 steps a minute); 4096 samples a step under 0.3 s
LIMITS = (
    Limit("NQS_MAX_SITES", 32, "sites", lambda s: s.n_sites,
          lambda s, n: f"L = {s.L} on the {s.lattice} ({n} sites)"),
    Limit("NQS_MAX_SAMPLES", 4096, "samples per step", lambda s: s.samples, lambda s, n: f"samples = {n}"),
    Limit("NQS_MAX_PARAMETERS", 1200, "network parameters", network_parameters,
          lambda s, n: f"model = {s.model} with these settings ({n} parameters)"),
)
CLASS_DEFAULTS = {limit.variable: limit.default for limit in LIMITS}


def parse_limit(variable: str, raw: str) -> int | None:
    """The value of ``variable``: a whole number ≥ 1, or None for ``none``; ValueError naming it otherwise."""
    text = raw.strip().lower()
    if text == "none":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"{variable}={raw!r} is not a whole number >= 1 (or 'none' for no limit)")


class Limits:
    """The maxima of one server (None: unlimited) and the check of a Run's settings against them."""

    def __init__(self, maxima: Mapping[str, int | None]) -> None:
        unknown = set(maxima) - set(CLASS_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
        self.maxima = {limit.variable: maxima.get(limit.variable) for limit in LIMITS}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, defaults: bool = False) -> "Limits":
        """The variables set in ``environ`` (default: os.environ); with ``defaults`` the class defaults
        for those not set.  Raises ValueError naming a variable whose value is not allowed."""
        env = os.environ if environ is None else environ
        maxima: dict[str, int | None] = {}
        for limit in LIMITS:
            raw = env.get(limit.variable, "").strip()
            maxima[limit.variable] = parse_limit(limit.variable, raw) if raw else (
                limit.default if defaults else None)
        return cls(maxima)

    def problem(self, settings: RunSettings) -> str | None:
        """Why this server refuses ``settings`` (naming the setting, the maximum and the variable), or None."""
        for limit in LIMITS:
            maximum = self.maxima[limit.variable]
            if maximum is None:
                continue
            value = limit.measure(settings)
            if value > maximum:
                return (f"{limit.subject(settings, value)} is more than this server allows a session: at most "
                        f"{maximum} {limit.unit} ({limit.variable})")
        return None

    def describe(self) -> str:
        """``at most 24 sites, 4096 samples per step, no limit on network parameters`` (the start line)."""
        maxima = [(self.maxima[limit.variable], limit.unit) for limit in LIMITS]
        return ", ".join(f"at most {m} {unit}" if m is not None else f"no limit on {unit}" for m, unit in maxima)

    def environment(self) -> dict[str, str]:
        """The variables that give these limits to the server (``none`` for no limit)."""
        return {name: "none" if value is None else str(value) for name, value in self.maxima.items()}


def main() -> int:
    """``python -m app.limits``: the class's limits as ``NAME=value`` lines, or the bad variable (exit 2)."""
    try:
        limits = Limits.from_env(defaults=True)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    print("\n".join(f"{name}={value}" for name, value in limits.environment().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
