"""The lab on stage (issue 10): each numbered defect a lecturer met, kept fixed in Chromium.

Run: .venv/bin/python -m pytest -q tests/browser/test_lab_stage.py
"""

from __future__ import annotations

import re

import pytest

from tests.browser.test_lab_browser import button, set_field, status, step_of, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

# steps and energies of every energy-like source in the page (the browser's copy, not the server's)
SERIES = """
(column) => {
  const out = [];
  for (const doc of (window.Bokeh ? window.Bokeh.documents : [])) {
    for (const m of doc._all_models.values()) {
      if (m.type !== "ColumnDataSource" && !(m.constructor && m.constructor.__name__ === "ColumnDataSource")) continue;
      const d = m.data;
      const get = (k) => d instanceof Map ? d.get(k) : d[k];
      const col = get(column), step = get("step");
      if (col === undefined || col === null || step === undefined || step === null) continue;
      out.push(Array.from(step));
    }
  }
  return out;
}
"""


def series_steps(page, column: str) -> list[list[float]]:
    return page.evaluate(SERIES, column)


def short_run(page, steps: int) -> None:
    set_field(page, "Steps", str(steps))
    wait_for(lambda: f"/ {steps}" in status(page), 15, "the edited step count")
    button(page, "Run").click()
    wait_for(lambda: "done" in status(page), 180, "the short run to finish")
    wait_for(lambda: not button(page, "Run").is_disabled(), 15, "Run to be usable again")


def download(page, label: str, path) -> None:
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name=label).click()
    info.value.save_as(str(path))


def load(page, path) -> None:
    page.locator("input[type=file]").set_input_files(str(path))


@pytest.mark.parametrize("what", ["json", "npz"])
def test_1_a_loaded_run_draws_each_step_once(open_lab, tmp_path, what):
    """Item 1: load the exported JSON (or the checkpoint) of a run: every plot holds each step once,
    in order (no line from the last step back to step 0)."""
    page, console = open_lab()
    short_run(page, 12)
    path = tmp_path / ("run.json" if what == "json" else "checkpoint.npz")
    download(page, "Run (JSON)" if what == "json" else "Checkpoint (.npz)", path)

    other, console2 = open_lab()
    load(other, path)
    other.get_by_text(re.compile(r"Loaded a (run|checkpoint) of 12 steps")).first.wait_for(timeout=120_000)
    for column in ("energy", "variance", "marshall", "acceptance"):
        runs = [s for s in series_steps(other, column) if len(s) > 2]
        assert runs, f"no {column} series in the page"
        for steps in runs:
            assert steps == list(range(12)), f"{column}: {steps}"
    assert step_of(other) == (12, 12)
    assert console.errors == [] and console2.errors == [], console.errors + console2.errors


BAD_INPUTS = [  # (field, typed text, the range its message must name)
    ("L", "100", "from 2 to 64"), ("L", "-4", "from 2 to 64"), ("L", "", "needs a value"),
    ("Markov chains", "0", "whole number from 1"), ("Samples per step", "-10", "whole number from 1"),
    ("Steps", "0", "whole number from 1"), ("Learning rate", "-0.1", "above 0"), ("Learning rate", "0", "above 0"),
    ("Learning rate", "abc", "above 0"), ("Diagonal shift", "-1", "from 0"), ("J", "", "needs a value"),
]
GOOD = {"L": "4", "J": "1", "Markov chains": "16", "Samples per step": "512", "Steps": "100", "Learning rate": "0.05",
        "Diagonal shift": "0.01"}


def message_below(page, label: str, text: str):
    """The message under the field ``label`` (MUI helper text), checked to sit right below it."""
    field = page.get_by_label(label, exact=True)
    box = field.bounding_box()
    msg = page.locator(".MuiFormHelperText-root", has_text=text).first
    msg.wait_for(timeout=10_000)
    mbox = msg.bounding_box()
    assert 0 <= mbox["y"] - (box["y"] + box["height"]) < 40 and abs(mbox["x"] - box["x"]) < 40, (box, mbox)
    return msg


def test_4_every_bad_input_is_refused_next_to_its_field(open_lab, lab_server, screenshots):
    """Item 4: each bad value shows a message naming the setting and its range under the field,
    keeps the setting's value, blocks Run with the reason, logs no traceback; the message goes
    once the field is valid, and a cross-field message goes once its cause is fixed."""
    page, console = open_lab(viewport=(1366, 768))
    tracebacks = lab_server.log().count("Traceback")
    for label, text, allowed in BAD_INPUTS:
        set_field(page, label, text)
        msg = message_below(page, label, allowed)
        assert label in msg.inner_text(), msg.inner_text()
        if label == "L":
            page.screenshot(path=str(screenshots / "20-refused-input-1366.png"))
        button(page, "Run").click()
        page.get_by_text(re.compile(f"Not started: {re.escape(label)} ")).first.wait_for(timeout=10_000)
        assert "idle" in status(page)
        set_field(page, label, GOOD[label])
        msg.wait_for(state="detached", timeout=10_000)
        page.get_by_text("Not started").first.wait_for(state="detached", timeout=10_000)
    # a rule across settings: shown while it holds, gone once L is fixed
    set_field(page, "L", "5")
    message_below(page, "L", "even number of sites")
    button(page, "Run").click()
    page.get_by_text("Not started").first.wait_for(timeout=10_000)
    set_field(page, "L", "4")
    page.get_by_text("Not started").first.wait_for(state="detached", timeout=10_000)
    page.get_by_text("even number of sites").first.wait_for(state="detached", timeout=10_000)
    assert step_of(page) == (0, 100) and not button(page, "Run").is_disabled()
    assert lab_server.log().count("Traceback") == tracebacks, lab_server.log()[-3000:]
    assert console.errors == [], console.errors
