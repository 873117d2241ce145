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
