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
from conftest import dying_with_this_process

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CONNECT_TIMEOUT_MS = int(os.environ.get("NQS_CONNECT_TIMEOUT_MS", "180000"))
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


LOG_LINES_ON_FAILURE = 80


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """A failed browser test's report ends with the last lines of every served lab it used: the server's
    side of a page that stopped answering (its log lives in a temporary folder pytest soon removes)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when == "call":
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, LabServer):
                tail = "\n".join(value.log().splitlines()[-LOG_LINES_ON_FAILURE:])
                report.sections.append((f"served lab log ({name}, last {LOG_LINES_ON_FAILURE} lines)", tail))


def _server_env(cache: Path) -> dict[str, str]:
    """The server's environment: a fresh reference cache (so a DMRG reference is really computed
    in the background), sharing the user's persistent JAX compilation cache (fast compiles)."""
    from nqs_core.compile_cache import cache_dir as compile_cache_dir

    env = {k: v for k, v in os.environ.items() if k != "NQS_CACHE_DIR"}
    jax_cache = compile_cache_dir() if "NQS_CACHE_DIR" not in os.environ else Path(os.environ["NQS_CACHE_DIR"]) / "jax"
    jax_cache.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "jax").symlink_to(jax_cache, target_is_directory=True)
    env["NQS_CACHE_DIR"] = str(cache)
    return env


def _start_server(root: Path, executor: str, extra_env: dict[str, str] | None = None) -> LabServer:
    """``panel serve app`` on a free localhost port, its runs on ``executor`` (NQS_EXECUTOR), ``extra_env``
    on top of its environment."""
    port = _free_port()
    log_path = root / "server.log"
    panel = Path(sys.executable).with_name("panel")
    cmd = [str(panel), "serve", "app", "--port", str(port), "--address", "127.0.0.1",
           "--allow-websocket-origin", f"127.0.0.1:{port}", "--unused-session-lifetime", "2000",
           "--check-unused-sessions", "1000"]
    env = {**_server_env(root / "cache"), "NQS_EXECUTOR": executor, **(extra_env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(dying_with_this_process(cmd), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    url = f"http://127.0.0.1:{port}/app"
    t_end = time.monotonic() + 180  # imports and the first session under load
    while True:
        try:
            urllib.request.urlopen(url, timeout=30).read()
            return LabServer(url, log_path, proc)
        except Exception:
            if proc.poll() is not None or time.monotonic() > t_end:
                proc.kill()
                pytest.fail(f"panel serve did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.5)


def _stop_server(server: LabServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """The lab with its runs on threads: what every view shows does not depend on where a run computes,
    and a worker process per run would add its start to every run of these tests."""
    server = _start_server(tmp_path_factory.mktemp("lab"), "thread")
    yield server
    _stop_server(server)


@pytest.fixture(scope="session")
def process_lab_server(tmp_path_factory):
    """The lab as ``make lab`` serves it: each run in a worker process (app/run_queue.DEFAULT_EXECUTOR)."""
    server = _start_server(tmp_path_factory.mktemp("lab-process"), "process")
    yield server
    _stop_server(server)


@pytest.fixture(scope="session")
def queue_lab_server(tmp_path_factory):
    """A class in miniature: one place in the server's run queue (``NQS_MAX_RUNS=1``), runs on threads."""
    server = _start_server(tmp_path_factory.mktemp("lab-queue"), "thread", {"NQS_MAX_RUNS": "1"})
    yield server
    _stop_server(server)


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
    """Errors reported by the page (console.error, uncaught exceptions, failed requests: with no network
    here, a request to another host fails too)."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.messages: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else
                self.messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} ({r.failure})"))


@pytest.fixture
def open_lab(browser, lab_server):
    """Open a fresh lab page (its own browser context = its own session)."""
    contexts = []

    def _open(viewport=(1500, 1000), query: str = "", server: LabServer | None = None):
        ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(ctx)
        page = ctx.new_page()
        console = ConsoleLog(page)
        page.set_default_timeout(60_000)  # a worker shared by three engineers: load 4+ is normal
        page.bring_to_front()  # a background page defers its rendering and its "document ready"
        page.goto((server or lab_server).url + query, timeout=180_000, wait_until="domcontentloaded")
        page.get_by_role("button", name="Run", exact=True).wait_for(timeout=180_000)
        # the page renders from the embedded document before its websocket is up; the server marks
        # the status line once the session has loaded (pn.state.onload), and only then clicks arrive
        try:
            page.locator(".nqs-status[data-connected='1']").wait_for(timeout=CONNECT_TIMEOUT_MS)
        except Exception as err:
            raise AssertionError(f"the page's session never connected ({err.__class__.__name__}); console: "
                                 f"{console.errors + console.messages[-20:]}") from None
        return page, console

    yield _open
    for ctx in contexts:
        try:
            ctx.close()
        except Exception:
            pass
