"""Warm start (issue 11): ``nqs warm`` fills the persistent compilation cache with exactly the programs
a later run of the same settings asks for, in another process, and the served lab starts it."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

from conftest import nqs_main

ROOT = Path(__file__).resolve().parents[1]
NEW = re.compile(r"warm: tfim-critical: [0-9.]+ s, (\d+) new programs")


def _warm_in_a_fresh_process(cache: Path) -> int:
    env = {**os.environ, "NQS_CACHE_DIR": str(cache), "NQS_COMPILE_CACHE": "1"}
    out = subprocess.run([sys.executable, "-m", "nqs_core", "warm", "--preset", "tfim-critical"], env=env,
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    (match,) = NEW.findall(out.stdout)
    return int(match)


def test_a_second_process_finds_every_program_the_first_one_compiled(tmp_path):
    assert _warm_in_a_fresh_process(tmp_path) > 0  # a cold cache: the step, the evaluation, …
    assert _warm_in_a_fresh_process(tmp_path) == 0  # a new process (a worker, tomorrow's server): all hits


def test_an_unknown_preset_is_refused_naming_the_allowed_ones(capsys):
    code, _, err = nqs_main(["warm", "--preset", "nope"], capsys)
    assert code == 2 and "preset must be one of" in err and "tfim-critical" in err and "\n" == err[-1]


def test_the_served_lab_starts_nqs_warm_in_the_background(monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: started.append(cmd))
    monkeypatch.setenv("NQS_WARM", "1")
    runpy.run_path(str(ROOT / "app" / "warm_start.py"))
    assert started == [[sys.executable, "-m", "nqs_core", "warm", "--nice", "10"]]
    monkeypatch.setenv("NQS_WARM", "0")
    runpy.run_path(str(ROOT / "app" / "warm_start.py"))
    assert len(started) == 1
    assert "--setup app/warm_start.py" in (ROOT / "Makefile").read_text()  # make lab
    assert "--setup app/warm_start.py" in (ROOT / "scripts" / "serve_class.sh").read_text()  # make class


def test_nqs_warm_lowers_its_own_priority_before_it_warms(monkeypatch, capsys):
    import nqs_core.cli.warm as cli

    calls = []
    monkeypatch.setattr(cli.os, "nice", lambda n: calls.append(("nice", n)))
    monkeypatch.setattr(cli, "warm", lambda groups, presets: calls.append(("warm", presets)))
    code, _, err = nqs_main(["warm", "--nice", "10", "--preset", "tfim-critical"], capsys)
    assert code == 0 and calls == [("nice", 10), ("warm", ("tfim-critical",))], err
    calls.clear()
    assert nqs_main(["warm", "--preset", "tfim-critical"], capsys)[0] == 0 and calls == [("warm", ("tfim-critical",))]
    code, _, err = nqs_main(["warm", "--nice", "20"], capsys)
    assert code == 2 and "--nice" in err and calls == [("warm", ("tfim-critical",))]
