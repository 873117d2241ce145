"""End-to-end: the real lab in Chromium (issue 5's "done when").

Run: .venv/bin/python -m pytest -q -m browser tests/browser
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

STEP = re.compile(r"step (\d+) / (\d+)")
DMRG_TIMEOUT_S = 150

COUNT_POINTS = """
([column, finiteOnly]) => {
  let best = -1;
  for (const doc of (window.Bokeh ? window.Bokeh.documents : [])) {
    for (const m of doc._all_models.values()) {
      if (m.type !== "ColumnDataSource" && !(m.constructor && m.constructor.__name__ === "ColumnDataSource")) continue;
      const d = m.data;
      const col = d instanceof Map ? d.get(column) : d[column];
      if (col === undefined || col === null) continue;
      best = Math.max(best, finiteOnly ? Array.from(col).filter(Number.isFinite).length : col.length);
    }
  }
  return best;
}
"""


def status(page) -> str:
    return page.locator(".nqs-status").first.inner_text()


def step_of(page) -> tuple[int, int]:
    m = STEP.search(status(page))
    assert m, f"no 'step N / M' in the status line: {status(page)!r}"
    return int(m.group(1)), int(m.group(2))


def wait_for(predicate, timeout: float, what: str, poll: float = 0.25):
    t_end = time.monotonic() + timeout
    last = None
    while time.monotonic() < t_end:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def show_tab(page, name: str, settle: float = 1.5) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.get_by_role("tab", name=name, exact=True).and_(page.locator("[aria-selected=true]")).wait_for(timeout=10_000)
    # a tab's models are built and sent the first time it is shown (app/lab.py, Lab._build_tabs)
    page.locator(f".nqs-tab-{name.lower().replace(' ', '-')}.nqs-filled").wait_for(state="attached", timeout=60_000)
    time.sleep(settle)


def button(page, name: str):
    return page.get_by_role("button", name=name, exact=True)


def count(page, column: str) -> int:
    return page.evaluate(COUNT_POINTS, [column, False])


def finite_count(page, column: str) -> int:
    return page.evaluate(COUNT_POINTS, [column, True])


def test_run_on_the_default_shows_progress_and_finishes(open_lab, lab_server, screenshots):
    """Run on the default: the status line counts steps and the energy plot fills while it runs, then
    the run ends done with every step plotted.  (How soon the first step shows is measured, not
    asserted: benchmarks/lab_first_progress.py.)"""
    page, console = open_lab()
    for name in ("Run", "Pause", "Resume", "Stop", "Reset"):
        assert button(page, name).count() == 1, name
    assert "idle" in status(page) and step_of(page) == (0, 100)
    page.screenshot(path=str(screenshots / "00-idle-light.png"))

    button(page, "Run").click()
    show_tab(page, "Energy", settle=0.2)
    wait_for(lambda: step_of(page)[0] >= 3, 240, "step N / M to advance")
    points = wait_for(lambda: count(page, "energy") > 0 and count(page, "energy"), 240,
                      "energy points in the plot")
    assert points >= 1
    assert "running" in status(page) and "it/s" in status(page)
    page.screenshot(path=str(screenshots / "01-energy-running.png"))
    wait_for(lambda: "done" in status(page), 240, "the default run to finish")
    assert step_of(page) == (100, 100)
    wait_for(lambda: not button(page, "Run").is_disabled(), 15, "Run to be usable again")
    show_tab(page, "Energy")
    assert count(page, "energy") == 100
    wait_for(lambda: count(page, "rel") > 0, 60, "the reference and the relative error")
    page.screenshot(path=str(screenshots / "05-energy-done.png"))
    show_tab(page, "Spins")
    page.screenshot(path=str(screenshots / "06-spins-done.png"))
    show_tab(page, "Sign")
    wait_for(lambda: count(page, "phase") > 0, 30, "the per-configuration sign picture")
    assert finite_count(page, "marshall") == 100
    page.screenshot(path=str(screenshots / "07-sign-done.png"))
    show_tab(page, "Momentum")
    page.screenshot(path=str(screenshots / "08-momentum-done.png"))
    show_tab(page, "Diagnostics")
    page.screenshot(path=str(screenshots / "09-diagnostics.png"))
    assert console.errors == [], console.errors


def test_pause_resume_and_stop_drive_the_run(open_lab, screenshots):
    """Pause, Resume and Stop on the default settings with 2000 steps (a run the 100 default steps could
    end before a Pause lands on a busy server).  Paused, the views hold every step so far and the
    checkpoint written on Pause gives the per-configuration sign picture; after Resume and Stop every
    step is drawn once."""
    page, console = open_lab()
    steps = page.get_by_label("Steps", exact=True)
    steps.fill("2000")  # long enough that Stop, not the end of the run, ends it
    steps.press("Tab")
    wait_for(lambda: "/ 2000" in status(page), 15, "the edited step count")
    button(page, "Run").click()
    wait_for(lambda: step_of(page)[0] >= 3, 90, "the run to advance")

    button(page, "Pause").click()
    wait_for(lambda: "paused" in status(page), 120, "the paused phase")  # a hang guard, not a bound
    # that no step runs while paused is shown where it can be waited on, without a sleep: the worker
    # blocked at its pause gate (tests/test_app_runner.py) and no step reported after it (tests/test_driver.py)
    held = step_of(page)[0]
    assert not button(page, "Resume").is_disabled() and button(page, "Pause").is_disabled()
    # the sign and momentum views hold the data of the steps so far (engine observables per step)
    show_tab(page, "Sign", settle=0.3)
    assert finite_count(page, "marshall") == held > 0, "Marshall agreement per step while running"
    wait_for(lambda: count(page, "phase") > 0, 30, "the per-configuration sign picture of the paused run")
    page.screenshot(path=str(screenshots / "02-sign-paused.png"))
    show_tab(page, "Momentum", settle=0.3)
    assert count(page, "im") >= 1, "translation eigenvalues while running"
    page.screenshot(path=str(screenshots / "03-momentum-paused.png"))
    show_tab(page, "Spins", settle=0.3)
    page.screenshot(path=str(screenshots / "04-spins-paused.png"))
    assert step_of(page)[0] == held

    button(page, "Resume").click()
    wait_for(lambda: step_of(page)[0] > held, 60, "steps to continue after Resume")

    button(page, "Stop").click()
    wait_for(lambda: "stopped" in status(page), 60, "the stopped phase")
    n_stop = step_of(page)[0]
    assert held < n_stop < 2000
    wait_for(lambda: not button(page, "Run").is_disabled(), 15, "Run to be usable again after Stop")
    show_tab(page, "Energy", settle=0.3)
    wait_for(lambda: count(page, "energy") == n_stop, 15, f"{n_stop} energy points (each step once across the pause)")
    assert console.errors == [], console.errors
    print(f"paused at {held}, stopped at {n_stop}")


def test_closing_the_page_stops_its_worker(open_lab, process_lab_server):
    """On the lab as served (a worker process per run): Run, then closing the tab stops the run's worker."""
    lab_server = process_lab_server
    observer, _ = open_lab(server=lab_server)
    page, console = open_lab(server=lab_server)
    page.bring_to_front()
    button(page, "Run").click()
    wait_for(lambda: step_of(page)[0] >= 1, 120, "the run to start")
    observer.bring_to_front()
    wait_for(lambda: "1 run(s) active" in observer.locator(".nqs-server").inner_text(), 30,
             "the observer to see one active run")
    session_log = lab_server.log().count("worker of")
    t0 = time.monotonic()
    page.context.close()
    # a hang guard, not a bound: a worker process stops at its next call boundary (seconds on a loaded machine)
    wait_for(lambda: "0 run(s) active" in observer.locator(".nqs-server").inner_text(), 90,
             "the worker to stop after its tab closed")
    print(f"worker stopped {time.monotonic() - t0:.1f} s after the tab closed")
    assert lab_server.log().count("worker of") > session_log
    assert "session closed: worker stop requested" in lab_server.log()
    assert console.errors == [], console.errors


def test_classical_ising_tab_streams_its_lattice(open_lab, screenshots):
    page, console = open_lab()
    show_tab(page, "Classical Ising")
    page.get_by_role("button", name="Animate the Ising lattice").click()
    readout = page.get_by_text(re.compile(r"sweep \d+ · T ="))

    def sweeps() -> int:
        return int(re.search(r"sweep (\d+)", readout.first.inner_text()).group(1))

    wait_for(lambda: sweeps() >= 20, 30, "Ising sweeps")
    s1 = sweeps()
    wait_for(lambda: sweeps() > s1, 30, "the Ising sweeps to keep advancing")
    page.screenshot(path=str(screenshots / "11-classical-ising.png"))
    assert console.errors == [], console.errors


def set_field(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")


def choose(page, combobox: str, option: str) -> None:
    box = page.get_by_role("combobox", name=combobox).first
    item = page.locator("li", has_text=re.compile(f"^{re.escape(option)}$")).last
    for attempt in range(3):  # a sidebar re-rendered by the previous choice can close the menu again
        box.click()
        try:
            item.wait_for(state="visible", timeout=5_000)
            item.click(timeout=5_000)
            break
        except Exception:
            if attempt == 2:
                raise
    page.get_by_role("listbox").wait_for(state="detached", timeout=10_000)  # the menu closed: the next click lands
    expect(box).to_have_text(option, timeout=10_000)


def test_large_fonts_dark_theme_and_a_diverged_run(open_lab, screenshots):
    page, console = open_lab(viewport=(1500, 1150))
    page.get_by_role("switch", name="Large fonts (projector)").or_(
        page.get_by_label("Large fonts (projector)")).first.click()
    wait_for(lambda: page.evaluate("getComputedStyle(document.documentElement).fontSize") == "21px", 10,
             "the larger root font")
    set_field(page, "Steps", "40")
    wait_for(lambda: "/ 40" in status(page), 15, "the edited step count")
    button(page, "Run").click()
    wait_for(lambda: "done" in status(page), 180, "the short run to finish")
    page.get_by_text("Export and load").first.scroll_into_view_if_needed()
    time.sleep(1.0)
    page.screenshot(path=str(screenshots / "12-large-fonts-light.png"))
    page.get_by_text("Preset (talk or research)").first.scroll_into_view_if_needed()

    page.get_by_role("button", name=re.compile("dark|theme", re.I)).first.click()
    wait_for(lambda: page.evaluate("document.documentElement.dataset.theme || ''") == "dark"
             or page.evaluate("getComputedStyle(document.body).backgroundColor") in ("rgb(18, 18, 18)",
                                                                                        "rgb(33, 33, 33)"),
             10, "the dark theme")
    for i, tab in enumerate(("Energy", "Spins", "Sign", "Momentum", "Diagnostics")):
        show_tab(page, tab)
        page.screenshot(path=str(screenshots / f"13-dark-large-{i}-{tab.lower()}.png"))

    # a run that diverges says why it stopped, next to the buttons, and Run stays usable
    set_field(page, "Learning rate", "10")
    set_field(page, "Diagonal shift", "0")
    set_field(page, "Steps", "200")
    # no wait needed: the session's websocket delivers the three field changes before the click
    button(page, "Run").click()
    try:
        wait_for(lambda: "/ 200" in status(page), 30, "the new run")
    except BaseException:
        page.screenshot(path=str(screenshots / "failed-diverge.png"))
        raise
    wait_for(lambda: "diverged" in status(page), 120, "the run to diverge")
    page.get_by_text("smaller learning rate").first.wait_for(timeout=10_000)
    # the status line stays one line (the sidebar does not jump); the reason is in the message below it
    line = page.locator(".nqs-status").first
    assert line.evaluate("e => e.getBoundingClientRect().height") < 2 * float(
        line.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")), status(page)
    wait_for(lambda: not button(page, "Run").is_disabled(), 15, "Run to be usable after divergence")
    show_tab(page, "Energy")
    page.screenshot(path=str(screenshots / "14-dark-diverged-run.png"))
    assert console.errors == [], console.errors


def test_chain_preset_space_time_strip_and_momentum(open_lab, screenshots):
    page, console = open_lab()
    choose(page, "Preset (talk or research)", "An 18-site chain lives at k = π")
    wait_for(lambda: "/ 80" in status(page), 30, "the preset's step count")

    def typed() -> bool:  # the preset may still be applying its 80 steps over the typed 6: type again
        if "/ 6" not in status(page):
            set_field(page, "Steps", "6")
        return "/ 6" in status(page)

    wait_for(typed, 30, "the edited step count", poll=1.0)
    button(page, "Run").click()
    wait_for(lambda: "done" in status(page) or "stopped" in status(page), 240, "the short chain run to end")
    assert step_of(page) == (6, 6)
    show_tab(page, "Spins")
    page.screenshot(path=str(screenshots / "15-chain-space-time-strip.png"))
    show_tab(page, "Momentum")
    wait_for(lambda: count(page, "s") > 0, 20, "S(q) of the chain")
    page.screenshot(path=str(screenshots / "16-chain-momentum.png"))
    assert console.errors == [], console.errors


def test_dmrg_reference_computed_in_the_background(open_lab, screenshots):
    """Chain L = 28, J1-J2 at J2 = 0.3: beyond ED, no closed form, not stored (fresh cache), so the
    session runs DMRG in a background process and shows its progress next to the running run, then
    (the run paused meanwhile) the labelled line."""
    page, console = open_lab()
    choose(page, "Hamiltonian", "J1-J2")
    choose(page, "Lattice", "chain")
    set_field(page, "L", "28")
    set_field(page, "J2", "0.3")
    set_field(page, "Samples per step", "256")
    set_field(page, "Steps", "100000")
    wait_for(lambda: "/ 100000" in status(page), 15, "the edited step count")
    button(page, "Run").click()
    show_tab(page, "Energy", settle=0.2)
    # the progress and the label are captions under the energy figure's title
    page.get_by_text("DMRG (TeNPy) running in the background: stage").first.wait_for(timeout=90_000)
    wait_for(lambda: step_of(page)[0] >= 1, 180, "the run's first step next to the DMRG process")
    page.screenshot(path=str(screenshots / "17-dmrg-progress.png"))
    # Pause parks the run (its worker waits at the pause gate) but not the session's reference job: the
    # DMRG process goes on alone, so it is not slowed down by the run's steps on a small machine
    button(page, "Pause").click()
    wait_for(lambda: "paused" in status(page), 120, "the paused phase")
    page.get_by_text(re.compile(r"reference \(dashed\): DMRG \(TeNPy [0-9.]+, χ=\d+\)")).first.wait_for(
        timeout=DMRG_TIMEOUT_S * 1000)
    time.sleep(1.0)
    page.screenshot(path=str(screenshots / "18-dmrg-reference.png"))
    button(page, "Stop").click()
    wait_for(lambda: "stopped" in status(page), 60, "the run to stop")
    assert console.errors == [], console.errors
