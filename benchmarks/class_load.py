"""A class on one server (issue 11): N browser sessions each press Run; how soon a new session is
interactive, how soon Pause takes effect, whether every queued run ends cleanly, and the server's
memory over a soak with sessions opening and closing.  Only against 127.0.0.1; it stops by itself.

    .venv/bin/python benchmarks/class_load.py --sessions 30 --soak 900        # the issue's test
    .venv/bin/python benchmarks/class_load.py --sessions 6 --soak 60          # a short one

Starts ``panel serve app`` on a free localhost port (``NQS_MAX_RUNS`` = ``--max-runs``, the served
lab's executor, no warm-up process) and one Chromium.  Phase 1: the sessions arrive one after the
other; each is timed from ``goto`` to its session being connected (the status line's
``data-connected``, set on the server's ``onload``) and then presses Run on a small deep-linked
problem (``--query``).  Phase 2: every running session presses Pause (timed until its status says
"paused"), then Resume.  Phase 3 (soak): for ``--soak`` seconds the oldest session closes and a new one
arrives and runs, while the server's resident memory is sampled.  Phase 4: every session still going
presses Stop; each must end "done", "stopped" or leave the queue.  Prints p50/p95 of both latencies,
the end states and the memory range after the first wave (goal: interactive ≤ 5 s p95, Pause ≤ 1 s
p95, memory within ±10 %); exit code 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from lab_first_progress import serve  # benchmarks/: the same localhost server

STEP = re.compile(r"step (\d+) / (\d+)")


def rss_mb(pid: int) -> float:
    """Resident memory of the server process (not its worker processes, which come and go), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def status(page) -> str:
    return page.locator(".nqs-status").first.inner_text()


def until(predicate, timeout: float) -> float | None:
    """Seconds until ``predicate()`` holds (polled every 50 ms), None after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def arrive(browser, url: str, query: str) -> tuple[object, float | None]:
    """A new session: (page, seconds until interactive), then Run pressed."""
    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    t0 = time.monotonic()
    page.goto(url + query, wait_until="domcontentloaded", timeout=180_000)
    page.locator(".nqs-status[data-connected='1']").wait_for(timeout=180_000)
    ready = time.monotonic() - t0
    page.get_by_role("button", name="Run", exact=True).click()
    return page, ready


def press(page, name: str) -> bool:
    """Click the button ``name`` if it is enabled now (a run may end between a look and a click)."""
    button = page.get_by_role("button", name=name, exact=True)
    if not button.is_enabled():
        return False
    button.click(timeout=10_000)
    return True


def pause_latency(page) -> float | None:
    """Pause a running session: seconds until its status says paused; then Resume."""
    if "running" not in status(page) or not press(page, "Pause"):
        return None
    seconds = until(lambda: "paused" in status(page), 60)
    press(page, "Resume")
    return seconds


def percentile(values: list[float], q: float) -> float:
    values = sorted(v for v in values if v is not None)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def soak(browser, url: str, query: str, pages: list, seconds: float, pid: int) -> tuple[list, list, list[float]]:
    """For ``seconds``: the running sessions press Pause (timed) and Resume, the oldest session closes and
    a new one arrives and runs.  (interactive latencies, pause latencies, memory samples in MB)"""
    until(lambda: any("running" in status(p) for p in pages), 300)  # the first runs compiled
    ready, pauses, memory, t_end = [], [], [rss_mb(pid)], time.monotonic() + seconds
    while time.monotonic() < t_end:
        pauses += [pause_latency(page) for page in pages if "running" in status(page)]
        print(f"soak: pauses so far {[round(p, 2) for p in pauses if p is not None]}, "
              f"server {rss_mb(pid):.0f} MB", flush=True)
        pages.pop(0).context.close()
        page, r = arrive(browser, url, query)
        pages.append(page)
        ready.append(r)
        memory.append(rss_mb(pid))
        time.sleep(min(5.0, max(0.0, t_end - time.monotonic())))
    return ready, pauses, memory


def finish(pages: list) -> dict[str, int]:
    """Stop every session still going; count how each ended."""
    ends: dict[str, int] = {}
    for page in pages:
        text = status(page)
        if "done" not in text and press(page, "Stop"):
            until(lambda: any(w in status(page) for w in ("stopped", "done", "idle")), 120)
        end = next((w for w in ("done", "stopped", "idle", "cancelled") if w in status(page)), status(page))
        ends[end] = ends.get(end, 0) + 1
    return ends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--soak", type=float, default=900.0, help="seconds of sessions closing and arriving")
    parser.add_argument("--max-runs", type=int, default=2)
    parser.add_argument("--query", default="?lattice=chain&L=10&steps=300")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    proc, url = serve({"NQS_MAX_RUNS": str(args.max_runs)})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            pages, ready = [], []
            for i in range(args.sessions):
                page, seconds = arrive(browser, url, args.query)
                pages.append(page)
                ready.append(seconds)
                print(f"session {i + 1}: interactive after {seconds:.1f} s", flush=True)
            more_ready, pauses, memory = soak(browser, url, args.query, pages, args.soak, proc.pid)
            ends = finish(pages)
            browser.close()
    finally:
        proc.terminate()
    return report(ready + more_ready, pauses, memory, ends)


def report(ready: list, pauses: list, memory: list[float], ends: dict[str, int]) -> int:
    p95_ready, p95_pause = percentile(ready, 0.95), percentile(pauses, 0.95)
    low, high = min(memory), max(memory)
    drift = (high - memory[0]) / memory[0], (low - memory[0]) / memory[0]
    print(f"interactive: p50 {percentile(ready, 0.5):.2f} s, p95 {p95_ready:.2f} s over {len(ready)} sessions")
    print(f"pause: p50 {percentile(pauses, 0.5):.2f} s, p95 {p95_pause:.2f} s over "
          f"{sum(x is not None for x in pauses)} running sessions")
    print(f"server memory: {memory[0]:.0f} MB after the first wave, {low:.0f}–{high:.0f} MB during the "
          f"soak ({drift[1]:+.1%} … {drift[0]:+.1%})")
    print(f"how the sessions ended: {ends}")
    ok = p95_ready <= 5 and p95_pause <= 1 and max(abs(d) for d in drift) <= 0.10
    print("goals met" if ok else "goals missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
