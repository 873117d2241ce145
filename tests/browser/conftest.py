"""Serve the real lab (`panel serve app`, as `make lab` does) and drive it with Debian's Chromium.

Playwright cannot download browsers here; it launches /usr/bin/chromium.  The server runs as a
subprocess with the Makefile's short unused-session lifetime, so closing a tab ends its session
(and its worker) within seconds.  Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    def __init__(self, url: str, log_path: Path, proc: subprocess.Popen):
        self.url, self.log_path, self.proc = url, log_path, proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("lab") / "server.log"
    panel = Path(sys.executable).with_name("panel")
    cmd = [str(panel), "serve", "app", "--port", str(port), "--address", "127.0.0.1",
           "--allow-websocket-origin", f"127.0.0.1:{port}", "--unused-session-lifetime", "2000",
           "--check-unused-sessions", "1000"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}/app"
    t_end = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=30).read()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > t_end:
                proc.kill()
                pytest.fail(f"panel serve did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.5)
    yield LabServer(url, log_path, proc)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class ConsoleLog:
    """Errors reported by the page (console.error and uncaught exceptions)."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} ({r.failure})"))


@pytest.fixture
def open_lab(browser, lab_server):
    """Open a fresh lab page (its own browser context = its own session)."""
    contexts = []

    def _open(viewport=(1500, 1000)):
        ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(ctx)
        page = ctx.new_page()
        console = ConsoleLog(page)
        page.bring_to_front()  # a background page defers its rendering and its "document ready"
        page.goto(lab_server.url)
        page.get_by_role("button", name="Run", exact=True).wait_for(timeout=60_000)
        # the page renders from the embedded document before its websocket is up; the server marks
        # the status line once the session has loaded (pn.state.onload), and only then clicks arrive
        page.locator(".nqs-status[data-connected='1']").wait_for(timeout=90_000)
        return page, console

    yield _open
    for ctx in contexts:
        try:
            ctx.close()
        except Exception:
            pass
