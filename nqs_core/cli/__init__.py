"""The ``nqs`` command line: ``nqs reference …``, ``nqs run …`` and ``nqs presets`` (also ``python -m nqs_core``).

Each subcommand module exposes ``add_arguments(parser)`` and ``main(args) -> int``.  Invalid
settings end with exit code 2 and one line on stderr naming the setting, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "reference": ("nqs_core.cli.reference", "exact, ED, DMRG or published ground-state energies"),
    "run": ("nqs_core.cli.run", "a variational Monte Carlo run"),
    "presets": ("nqs_core.cli.presets", "the named recipes (talk and research) that nqs run --preset runs"),
    "sweep": ("nqs_core.cli.sweep", "one VMC run per value of one coupling, with a final table"),
    "warm": ("nqs_core.cli.warm", "compile the default's and the presets' steps into the persistent compile cache"),
    "export": ("nqs_core.cli.export", "figures (PNG, SVG), a Metropolis movie (GIF, MP4) and a report of a saved run"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def usage_error(prog: str, message: str) -> int:
    """Print a one-line error for an invalid setting and return exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="nqs", description="NQS Lab engine: references and VMC runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``nqs ARGV``; the exit code (2 and one stderr line for an invalid setting)."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except ValueError as err:  # SettingsError and other invalid-setting errors
        return usage_error(f"nqs {args.command}", str(err))
    except KeyboardInterrupt:
        return 130
