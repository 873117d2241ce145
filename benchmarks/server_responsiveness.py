"""How responsive is the lab's server while runs compute: thread workers vs process workers.

One Panel server process (the lab's page at ``/app``, built by ``app.lab.Lab`` as for a new tab) runs
``--runs`` lab runs through the chosen executor (``nqs_core.executors``), each drained 10 times a second
on the server's event loop as a session does.  Once every run has reported steps, for ``--seconds``:

* **loop lag**: a callback asks the event loop to call it again after 50 ms; how late it comes back
  (a starved loop delays every widget, every drain and every new session);
* **page**: a separate client process GETs ``/app`` every 2 s after one untimed warm-up GET (a fresh
  session each: the document is built on the loop) and times the answer;
* **steps/s**: the VMC steps all runs made per second (what the runs get).

    .venv/bin/python benchmarks/server_responsiveness.py                      # thread and process, 3 runs
    .venv/bin/python benchmarks/server_responsiveness.py --executor process --runs 2 --seconds 40

Each executor is measured in its own fresh server process, with a baseline without runs first.  Results
(JSON per line, then a table) are noisy on a shared machine: ``uptime`` is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLIENT = r"""
import json, sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
urllib.request.urlopen(url, timeout=120).read()  # warm-up, not timed
out, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=120) as r:
        r.read()
    out.append(time.monotonic() - t0)
    time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "max_ms": float(a.max())} if len(a) else {"n": 0}


class LagProbe:
    """Re-arms itself on the loop every ``period`` s and records how late each call came."""

    def __init__(self, loop, period: float = 0.05) -> None:
        self.loop, self.period, self.lags, self.recording = loop, period, [], False
        self._due = time.monotonic() + period
        loop.call_later(period, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        if self.recording:
            self.lags.append(now - self._due)
        self._due = now + self.period
        self.loop.call_later(self.period, self._tick)


def start_runs(executor_name: str, n: int, workdir: Path, live_pictures: bool) -> list:
    """``n`` lab runners (the lab's run kwargs, final and live pictures) on the engine's default settings."""
    from app.lab import RUN_KWARGS
    from app.pictures import final_pictures
    from app.runner import Runner
    from nqs_core.executors import executor_from_env
    from nqs_core.settings import RunSettings

    os.environ["NQS_EXECUTOR"] = executor_name
    executor = executor_from_env()
    runners = []
    for i in range(n):
        runner = Runner(name=f"bench{i}", after=final_pictures, run_kwargs=RUN_KWARGS, live_pictures=live_pictures,
                        executor=executor)
        runner.start(RunSettings(steps=100_000, seed=i), checkpoint=workdir / f"run{i}.npz")
        runners.append(runner)
    return runners


def measure(executor_name: str, n_runs: int, seconds: float, live_pictures: bool = True) -> dict:
    """One server process: baseline, then ``n_runs`` runs through ``executor_name``."""
    import panel as pn
    from panel.io.server import get_server

    from app.lab import Lab

    pn.extension(notifications=True)
    port = free_port()
    server = get_server({"/app": lambda: Lab().page}, port=port, address="127.0.0.1", start=False,
                        websocket_origin=[f"127.0.0.1:{port}"])
    loop = server.io_loop
    probe = LagProbe(loop)
    out: dict = {"executor": executor_name, "runs": n_runs, "seconds": seconds, "live_pictures": live_pictures}

    def window(label: str, runners: list) -> None:
        steps0 = sum(r.step for r in runners)
        probe.lags.clear()
        probe.recording = True
        client = subprocess.run([sys.executable, "-c", CLIENT, f"http://127.0.0.1:{port}/app", str(seconds)],
                                capture_output=True, text=True, timeout=seconds + 600)
        probe.recording = False
        out[label] = {"loop_lag": percentiles(probe.lags),
                      "page": percentiles(json.loads(client.stdout.strip().splitlines()[-1])),
                      "steps_per_s": (sum(r.step for r in runners) - steps0) / seconds,
                      "load": os.getloadavg()[0]}

    def drive() -> None:
        try:
            window("baseline", [])
            with tempfile.TemporaryDirectory(prefix="nqs-bench-") as tmp:
                runners = start_runs(executor_name, n_runs, Path(tmp), live_pictures)
                drains = [pn.io.PeriodicCallback(callback=r.drain, period=100) for r in runners]
                for d in drains:
                    loop.add_callback(d.start)
                while not all(r.step > 0 for r in runners):  # every run compiled and stepping
                    if any(r.phase == "error" for r in runners):
                        raise RuntimeError([r.message for r in runners])
                    time.sleep(0.5)
                window("with_runs", runners)
                for r in runners:
                    r.stop()
                for r in runners:
                    r.join(300)
        except Exception as exc:
            out["error"] = repr(exc)
        finally:
            loop.add_callback(loop.stop)

    threading.Thread(target=drive, daemon=True).start()
    server.start()
    loop.start()
    return out


def table(rows: list[dict]) -> str:
    lines = ["| executor | live pictures | runs | loop lag p50 / p95 / max (ms) | page p50 / p95 / max (ms) "
             "| steps/s | load |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        for label in ("baseline", "with_runs"):
            m = row.get(label)
            if not m:
                continue
            lag, page = m["loop_lag"], m["page"]
            lines.append(f"| {row['executor']} | {'yes' if row['live_pictures'] else 'no'} | "
                         f"{row['runs'] if label == 'with_runs' else 0} | "
                         f"{lag['p50_ms']:.1f} / {lag['p95_ms']:.1f} / {lag['max_ms']:.0f} | "
                         f"{page['p50_ms']:.0f} / {page['p95_ms']:.0f} / {page['max_ms']:.0f} | "
                         f"{m['steps_per_s']:.1f} | {m['load']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=("thread", "process", "both"), default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--no-live-pictures", action="store_true",
                        help="without the live sign picture, which the server computes from each run's checkpoint")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one executor
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.executor, args.runs, args.seconds, not args.no_live_pictures)), flush=True)
        return 0
    rows = []
    for name in (("thread", "process") if args.executor == "both" else (args.executor,)):
        extra = ["--no-live-pictures"] if args.no_live_pictures else []
        child = subprocess.run([sys.executable, __file__, "--one", "--executor", name, "--runs", str(args.runs),
                                "--seconds", str(args.seconds), *extra], capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if not lines:
            print(child.stderr[-3000:], file=sys.stderr)
            return 1
        print(lines[-1], flush=True)
        rows.append(json.loads(lines[-1]))
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
