"""The suite's own scheduling (tests/_xdist_scheduling.py): a worker that crashes, in the browser tests
or elsewhere, costs the test it crashed on, and every other test still runs once and the suite ends."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

CONFTEST = """
import sys
sys.path.insert(0, {tests!r})
import pytest
from _xdist_scheduling import BrowserTestsTogether

@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return BrowserTestsTogether(config, log)
"""

TESTS = """
import os

def _ran(name, crash=False):
    with open({log!r}, "a") as f:
        f.write(name + "\\n")
    if crash:
        os._exit(1)  # the worker dies as in a segfault: no report, no teardown
{body}
"""


def _tests(log: Path, names: list[str], crash: str) -> str:
    body = "".join(f"\ndef {n}():\n    _ran({n!r}, crash={n == crash})\n" for n in names)
    return TESTS.format(log=str(log), body=body)


def test_a_crashed_worker_costs_one_test_and_the_suite_ends(tmp_path):
    log = tmp_path / "ran.txt"
    (tmp_path / "conftest.py").write_text(CONFTEST.format(tests=str(Path(__file__).parent)))
    browser = tmp_path / "tests" / "browser"
    browser.mkdir(parents=True)
    engine = [f"test_engine_{i}" for i in range(8)]
    pages = [f"test_page_{i}" for i in range(5)]
    (tmp_path / "tests" / "test_engine.py").write_text(_tests(log, engine, crash="test_engine_3"))
    (browser / "test_pages.py").write_text(_tests(log, pages, crash="test_page_1"))
    out = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q", "tests"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)  # a hang fails here
    assert "2 failed, 11 passed" in out.stdout, out.stdout[-3000:]
    assert Counter(log.read_text().split()) == Counter(engine + pages)  # each once, the crashed ones too
