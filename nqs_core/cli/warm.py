"""``nqs warm``: compile the default's and the presets' steps into the persistent compilation cache."""

from __future__ import annotations

import argparse
import os

from nqs_core.devices import start_devices
from nqs_core.presets import GROUPS
from nqs_core.warm import warm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", action="append", choices=GROUPS, default=None,
                        help="preset groups to warm besides the default settings (repeatable; default: talk)")
    parser.add_argument("--preset", action="append", default=None, metavar="NAME",
                        help="warm only this preset (repeatable; see nqs presets)")
    parser.add_argument("--nice", type=int, default=0, choices=range(0, 20), metavar="N",
                        help="lower this process's priority by N (0-19) first: the served lab starts it with 10, "
                             "behind the server's threads (default: 0)")


def main(args: argparse.Namespace) -> int:
    if args.nice:
        os.nice(args.nice)
    start_devices()  # as the lab's run workers do: the programs warmed are theirs
    warm(tuple(args.group or ("talk",)), tuple(args.preset or ()))
    return 0
