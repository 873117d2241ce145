"""``nqs export``: figures, a Metropolis movie and a one-page report of a finished run.

``nqs export RUN [--checkpoint RUN.npz] [--png] [--svg] [--gif] [--mp4] [--report] [--out DIR]``.  RUN is the
lab's exported JSON, the output of ``nqs run --json`` saved to a file, or a checkpoint (.npz); the movie
(GIF and MP4) needs the run's state, i.e. a checkpoint (as RUN or ``--checkpoint``).  Without a format flag every
format the record allows is written.  Files: ``energy.png/.svg``, ``relative_error.png/.svg`` (with a
reference), ``metropolis.gif``, ``metropolis.mp4`` (H.264, at the even size nearest below ``--size``), ``report.html``.  A record without a reference (a checkpoint) gets one
from ``run_reference.find_reference`` (closed form, ED, stored DMRG or published values; no new DMRG).
Exit codes: 0 written, 2 unreadable record or impossible request (one line).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

FORMATS = ("png", "svg", "gif", "mp4", "report")
MOVIES = ("gif", "mp4")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
        if not (16 <= w <= 7680 and 16 <= h <= 4320):
            raise ValueError
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT in pixels, 16x16 to 7680x4320; got {text!r}")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 5000:
        raise argparse.ArgumentTypeError(f"must be an integer between 1 and 5000; got {text!r}")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="the saved run: the lab's JSON, nqs run --json output, or a checkpoint .npz")
    parser.add_argument("--checkpoint", metavar="NPZ", default=None, help="the same run's checkpoint (settings and state)")
    parser.add_argument("--out", "-o", metavar="DIR", default=None, help="output folder (default: RUN's name + '-export')")
    for fmt, text in zip(FORMATS, ("figures as PNG (1920×1080)", "figures as SVG (16:9)",
                                   "one chain's Metropolis movie as an animated GIF (needs a checkpoint)",
                                   "the same movie as an H.264 MP4 (needs a checkpoint)",
                                   "a one-page HTML report with the figures")):
        parser.add_argument(f"--{fmt}", action="store_true", help=text)
    parser.add_argument("--frames", type=_positive, default=120, help="Metropolis sub-steps in the movie (default 120)")
    parser.add_argument("--chain", type=int, default=0, help="which chain the movie follows (default 0)")
    parser.add_argument("--size", type=_size, default=(1920, 1080), help="movie frame size WIDTHxHEIGHT (default 1920x1080)")
    parser.add_argument("--frame-ms", type=_positive, default=150, help="milliseconds per movie frame (default 150)")
    parser.add_argument("--no-reference", action="store_true", help="do not look up a reference the record lacks")
    parser.add_argument("--json", action="store_true", help="print {\"files\": [...]} instead of one path per line")


def _with_reference(record: Any, enabled: bool) -> None:
    """Fill in the reference of a record that has none (checkpoints), where one is known without DMRG."""
    if record.reference is not None or record.settings is None or not enabled:
        return
    from nqs_core.run_reference import find_reference

    record.reference = find_reference(record.settings, compute_dmrg=False)


def main(args: argparse.Namespace) -> int:
    """Write the requested exports of ``args.run``; see the module docstring."""
    from nqs_core.exports import figures, movie, report
    from nqs_core.exports.record import load_record

    record = load_record(args.run, args.checkpoint)
    wanted = [f for f in FORMATS if getattr(args, f)] or [f for f in FORMATS if f not in MOVIES or record.checkpoint]
    movies = [f for f in MOVIES if f in wanted]
    if movies and record.checkpoint is None:
        raise ValueError(f"--{movies[0]} needs the run's state: give its checkpoint (.npz, from nqs run --checkpoint or "
                         "the lab's download) as RUN or with --checkpoint")
    _with_reference(record, not args.no_reference)
    out = Path(args.out) if args.out else Path(args.run).with_name(Path(args.run).stem + "-export")
    files: list[Path] = []
    image_formats = tuple(f for f in ("png", "svg") if f in wanted)
    if image_formats:
        files += figures.save_figure(figures.energy_figure(record), out, "energy", image_formats)
        rel = figures.relative_error_figure(record)
        if rel is not None:
            files += figures.save_figure(rel, out, "relative_error", image_formats)
    if movies:
        traj = movie.chain_trajectory(record.settings, record.checkpoint, args.frames, args.chain)
        writers = {"gif": movie.write_gif, "mp4": movie.write_mp4}
        files += [writers[f](traj, out / f"metropolis.{f}", args.size, args.frame_ms) for f in movies]
    if "report" in wanted:
        files.append(report.write_report(record, out / "report.html"))
    print(json.dumps({"files": [str(p) for p in files]}) if args.json else "\n".join(str(p) for p in files))
    return 0
