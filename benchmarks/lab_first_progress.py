"""How soon the lab shows a run: seconds from pressing Run on the default settings to the first
steps in the status line and the first point in the energy plot, in a real Chromium.

    .venv/bin/python benchmarks/lab_first_progress.py [--repeats 3]

Starts ``panel serve app`` on a free localhost port (the user's persistent JAX compile cache, as
``make lab`` has it), opens a fresh page per repeat (each its own session), presses Run and times
the status line reaching step 3 and the energy plot's first point.  The first repeat includes the
compile (or the persistent cache's load); the later ones show a warm server.  The goal (DESIGN.md §1,
the browser test it replaces the old 30 s bound of): progress within 30 s of Run on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP = re.compile(r"step (\d+) / (\d+)")
POINTS = """() => Math.max(-1, ...[...(window.Bokeh ? window.Bokeh.documents : [])].flatMap(doc =>
  [...doc._all_models.values()].map(m => { const d = m.data; if (!d) return -1;
    const c = d instanceof Map ? d.get("energy") : d["energy"]; return c ? c.length : -1; })))"""


def serve(env: dict[str, str] | None = None, log_path: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``panel serve app`` on a free localhost port (``env`` on top of this one's), its output to ``log_path``
    (default: discarded): (process, page url)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    panel = Path(sys.executable).with_name("panel")
    with open(log_path or os.devnull, "wb") as log:  # the server keeps its own copy of the descriptor
        proc = subprocess.Popen([str(panel), "serve", "app", "--port", str(port), "--address", "127.0.0.1",
                                 "--allow-websocket-origin", f"127.0.0.1:{port}", "--unused-session-lifetime", "2000",
                                 "--check-unused-sessions", "1000"], cwd=ROOT, env={**os.environ, **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/app"
    for _ in range(360):
        try:
            urllib.request.urlopen(url, timeout=30).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("panel serve did not answer within 3 minutes")


def _until(predicate, timeout: float = 300.0) -> float:
    """Seconds until ``predicate()`` holds (polled every 50 ms)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"gave up after {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def _one(browser, url: str) -> tuple[float, float]:
    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    page.goto(url, wait_until="domcontentloaded", timeout=180_000)
    run = page.get_by_role("button", name="Run", exact=True)
    run.wait_for(timeout=180_000)
    page.wait_for_function("() => !document.querySelector('.pn-loading')", timeout=180_000)
    # only the shown tab's models are in the page (app/lab.py, Lab._build_tabs): show the energy plot's
    page.get_by_role("tab", name="Energy", exact=True).click()
    page.locator(".nqs-tab-energy.nqs-filled").wait_for(state="attached", timeout=60_000)
    status = page.locator(".nqs-status").first
    t0 = time.monotonic()
    run.click()
    steps = _until(lambda: (m := STEP.search(status.inner_text())) is not None and int(m.group(1)) >= 3)
    _until(lambda: page.evaluate(POINTS) > 0)
    points = time.monotonic() - t0
    page.context.close()
    return steps, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    proc, url = serve()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            for i in range(args.repeats):
                steps, points = _one(browser, url)
                print(f"repeat {i}: step 3 after {steps:5.1f} s, energy plot's first point after {points:5.1f} s")
            browser.close()
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
