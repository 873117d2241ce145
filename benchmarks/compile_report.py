"""Where the compile time of a test run goes, every process counted (issue 13).

Record (an empty NQS_CACHE_DIR makes the run cold, as on a fresh machine):

    rm -rf /tmp/probe /tmp/probe-cache && mkdir /tmp/probe
    COMPILE_PROBE_DIR=/tmp/probe PYTHONPATH=benchmarks/compile_probe NQS_CACHE_DIR=/tmp/probe-cache \\
        .venv/bin/python -m pytest tests/test_vmc.py

then report: ``.venv/bin/python benchmarks/compile_report.py /tmp/probe [--tests N]``.

A subprocess inherits ``PYTEST_CURRENT_TEST`` from the test that started it, so a served lab's
compilations are all charged to the browser test that started the server.  "small" programs are
those under 0.5 s: mostly single primitives run eagerly (each shape compiles once per process).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
from pathlib import Path


def records(folder: str) -> tuple[list[tuple[str, str, str, float]], int]:
    """(process argv, test id, program name, seconds) of every compilation recorded in ``folder``, and the
    number of programs read from the persistent cache instead (recorded since the probe tells them apart)."""
    rows, hits = [], 0
    for path in glob.glob(str(Path(folder) / "*.jsonl")):
        argv = ""
        for line in open(path):
            item = json.loads(line)
            if isinstance(item, dict):
                argv = " ".join(item["argv"])[:60]
            elif len(item) > 3 and item[3]:
                hits += 1
            else:
                rows.append((argv, *item[:3]))
    return rows, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--tests", type=int, default=30, help="how many of the costliest tests to list")
    args = parser.parse_args()
    rows, hits = records(args.folder)
    print(f"{len(rows)} compilations, {sum(r[3] for r in rows):.0f} s; {hits} programs from the persistent cache")
    per_file: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0, 0.0])
    per_test: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0, 0.0])
    per_program: collections.Counter[str] = collections.Counter()
    for argv, test, name, seconds in rows:
        key = test or f"<{argv}>"
        for table, k in ((per_file, key.split("::")[0]), (per_test, key)):
            entry = table[k]
            offset = 2 if seconds > 0.5 else 0
            entry[offset] += 1
            entry[offset + 1] += seconds
        if seconds > 0.5:
            per_program[name] += seconds
    for title, table, limit in (("file", per_file, 40), ("test", per_test, args.tests)):
        print(f"\nper {title}: total s | small n, s | big n, s")
        for k, (n_small, s_small, n_big, s_big) in sorted(table.items(), key=lambda kv: -(kv[1][1] + kv[1][3]))[:limit]:
            print(f"{s_small + s_big:7.1f} | {n_small:5d} {s_small:6.1f} | {n_big:3d} {s_big:6.1f}  {k}")
    print("\nbig programs (> 0.5 s) by name, s")
    for name, seconds in per_program.most_common(20):
        print(f"{seconds:7.1f}  {name}")


if __name__ == "__main__":
    main()
