"""``nqs presets``: the named recipes (talk and research) that ``nqs run --preset NAME`` runs.

Without arguments: one block per preset (name, group, title, the settings it sets); with a name:
that preset's full settings; ``--json``: a list of objects with name, group, title, story,
overrides and the full settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nqs_core.presets import GROUPS, PRESETS, Preset, get_preset, presets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME",
                        help=f"show this preset's full settings (one of {', '.join(PRESETS)})")
    parser.add_argument("--group", choices=GROUPS, default=None, help="only this group")
    parser.add_argument("--json", action="store_true", help="a JSON list of presets, each with its full settings")


def _value(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(f"{x:g}" for x in v)
    return "none" if v is None else str(v)


def print_preset(p: Preset, full: bool = False, out: Any = None) -> None:
    """One preset: name, group and title, its story, and its overrides (or, with ``full``, all settings)."""
    out = out or sys.stdout
    print(f"{p.name}  [{p.group}]  {p.title}", file=out)
    print(f"  {p.story}", file=out)
    settings = p.settings()
    names = [name for name in settings.to_dict() if getattr(settings, name) is not None] if full else p.overrides
    items = [f"--{name.replace('_', '-')} {_value(getattr(settings, name))}" for name in names]
    print(f"  nqs run --preset {p.name}  # {'=' if full else 'sets'} " + " ".join(items), file=out)


def main(args: argparse.Namespace) -> int:
    """List the presets (or show one); an unknown name is a SettingsError (exit code 2)."""
    chosen = [get_preset(args.name)] if args.name else presets(args.group)
    if args.json:
        print(json.dumps([p.to_dict() for p in chosen], ensure_ascii=False, indent=1))
        return 0
    if args.name:
        print_preset(chosen[0], full=True)
        return 0
    for group in [args.group] if args.group else GROUPS:
        in_group = [p for p in chosen if p.group == group]
        print(f"# {group} presets" + ("" if in_group else ": none yet"))
        for p in in_group:
            print_preset(p)
    return 0
