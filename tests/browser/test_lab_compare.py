"""Issue 12 in Chromium: two runs overlay with legend labels naming their difference (show, hide, clear);
a TFIM sweep through h/J = 1 on a 12-site chain lies on the exact curve, refuses a bad range and stops.
The two runs are the suite's TINY (tests/conftest.py) at two learning rates (a run-time setting: the second run
reuses the first one's compiled programs).

Values are read from the page's own Bokeh models (the browser's copy), never from the engine.
Run: .venv/bin/python -m pytest -q -n 0 tests/browser/test_lab_compare.py
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_lab_browser import (FINISH_TIMEOUT_S, button, drawn, set_field, show_tab, status, tiny_link,
                                            wait_for)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

# visible legend entries of every figure in the page
LEGEND = """
() => { const out = [];
  for (const doc of Bokeh.documents) for (const m of doc.all_models) {
    if (m.type !== "LegendItem" || !m.visible) continue;
    const l = m.label; out.push(typeof l === "string" ? l : (l && (l.value ?? l.field)) || ""); }
  return out; }
"""
# the columns of the sweep's points source
SWEEP_POINTS = """
() => { for (const doc of Bokeh.documents) for (const m of doc.all_models) {
    if (m.type !== "ColumnDataSource") continue;
    const d = m.data, get = (k) => d instanceof Map ? d.get(k) : d[k];
    if (get("exact_energy") === undefined) continue;
    const out = {}; for (const k of ["value", "energy", "exact_energy", "order", "order_exact"]) out[k] = Array.from(get(k));
    return out; }
  return null; }
"""
CURVE_POINTS = """
() => { for (const doc of Bokeh.documents) for (const m of doc.all_models) {
    if (m.type !== "ColumnDataSource") continue;
    const d = m.data, get = (k) => d instanceof Map ? d.get(k) : d[k];
    if (get("sigma_x") !== undefined && get("exact_energy") === undefined) return Array.from(get("value")).length; }
  return 0; }
"""
LR1, LR2 = 0.05, 0.02
RUN1, RUN2 = f"run 1 · learning rate: {LR1:g}", f"run 2 · learning rate: {LR2:g}"


def legend(page) -> list[str]:
    return page.evaluate(LEGEND)


def run_to_end(page) -> None:
    button(page, "Run").click()
    wait_for(lambda: "done" in status(page), 240, "the run to finish")
    wait_for(lambda: not button(page, "Run").is_disabled(), FINISH_TIMEOUT_S, "Run to be usable again")


def test_two_runs_overlay_with_labels_naming_their_difference(open_lab, screenshots):
    page, console = open_lab(viewport=(1366, 768), query=tiny_link(steps=25, lr=LR1))
    run_to_end(page)
    set_field(page, "Learning rate", f"{LR2:g}")
    button(page, "Run").click()
    show_tab(page, "Compare")  # a tab's figures reach the page when it is first shown
    # a run is kept (and labelled) when it has finished: the second one's label says it is done
    wait_for(lambda: {RUN1, RUN2} <= set(legend(page)), 300, "both runs in the Compare legend")
    wait_for(lambda: not button(page, "Run").is_disabled(), FINISH_TIMEOUT_S, "Run to be usable again")
    show_tab(page, "Energy")  # the first run behind the second, named by what differs
    page.screenshot(path=str(screenshots / "40-energy-overlay-1366.png"))
    show_tab(page, "Momentum")  # the correlation map of the final state, beside S(q)
    final_map = page.get_by_text("⟨S_0·S_r⟩ of the final state").first
    final_map.wait_for(timeout=120_000)
    final_map.evaluate("e => e.scrollIntoView({block: 'start'})")
    drawn(page)
    page.screenshot(path=str(screenshots / "43-momentum-correlations-1366.png"))
    show_tab(page, "Compare")
    page.screenshot(path=str(screenshots / "41-compare-1366.png"))
    page.get_by_label(RUN1, exact=True).uncheck()  # hide run 1
    wait_for(lambda: RUN1 not in legend(page) and RUN2 in legend(page), 30, "run 1 hidden, run 2 shown")
    page.get_by_role("button", name="Clear the kept runs").click()
    wait_for(lambda: not any(label.startswith("run ") for label in legend(page)), 30, "the overlays cleared")
    assert console.errors == [], console.errors


def test_tfim_sweep_through_the_critical_point_lies_on_the_exact_curve(open_lab, screenshots):
    page, console = open_lab(viewport=(1366, 768))
    show_tab(page, "Sweep")
    values = page.get_by_label("Values (START:STOP:N or V1,V2,…)", exact=True)
    values.fill("0.5:1.5:1")
    values.press("Tab")
    button(page, "Sweep").click()
    page.get_by_text(re.compile(r"Not started: (J|h) must be a range")).first.wait_for(timeout=30_000)

    page.get_by_role("button", name=re.compile("TFIM across the critical point")).click()
    page.get_by_text("Sweep done: 5 of 5 points").wait_for(timeout=420_000)
    points = page.evaluate(SWEEP_POINTS)
    assert points["value"] == pytest.approx([0.5, 0.75, 1.0, 1.25, 1.5])
    for h, e, exact in zip(points["value"], points["energy"], points["exact_energy"]):
        assert abs(e - exact) / abs(exact) < 1e-3, (h, e, exact)
    for h, m, exact in zip(points["value"], points["order"], points["order_exact"]):
        assert abs(m - exact) < 0.05, (h, m, exact)  # the magnetisation against its exact curve
    assert page.evaluate(CURVE_POINTS) >= 20
    drawn(page)
    page.screenshot(path=str(screenshots / "42-sweep-tfim-1366.png"))
    page.get_by_text("Order parameter", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
    drawn(page)
    page.screenshot(path=str(screenshots / "44-sweep-tfim-order-1366.png"))

    button(page, "Sweep").click()  # the same sweep again, stopped in its first point
    page.get_by_text(re.compile(r"point 1 of 5")).first.wait_for(timeout=60_000)
    button(page, "Stop the sweep").click()
    page.get_by_text(re.compile(r"Sweep stopped")).first.wait_for(timeout=120_000)
    expect(button(page, "Sweep")).to_be_enabled(timeout=30_000)
    assert console.errors == [], console.errors
