"""End-to-end: the real lab in Chromium (issue 5's "done when").

The runs are the suite's small run ``TINY`` (tests/conftest.py), opened by a deep link (:func:`tiny_link`), or,
where a view of the square lattice is the point, the lab's default problem sampled as TINY (:func:`square_link`):
the runs of all browser tests then share the compiled programs of a few configurations (the served labs and the
rest of the suite hand them on through the persistent compilation cache).

Run: .venv/bin/python -m pytest -q -n 0 -m browser tests/browser
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import TINY
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

STEP = re.compile(r"step (\d+) / (\d+)")
DMRG_TIMEOUT_S = 150
LONG_RUN = 100_000  # the steps of a run that Stop (or closing its page) ends, however fast the machine
# a hang guard, not a bound: after its last step a run's worker evaluates the final state and draws its pictures
# (Run is offered again then), programs a configuration's first run compiles, on a machine shared with the suite
FINISH_TIMEOUT_S = 180

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
# every figure of the page has its view (a tab's figures are built when it is first shown), and each one on screen
# has painted (BokehJS marks a plot view finished once it drew)
DRAWN = """
() => {
  if (!window.Bokeh) return false;
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      if (!m.type || !m.type.endsWith("Figure")) continue;
      const view = window.Bokeh.index.find_one_by_id(m.id);
      if (!view) return false;
      if (view.el.isConnected && view.el.offsetParent !== null && !view.has_finished()) return false;
    }
  }
  return true;
}
"""
# two animation frames: data that reached a drawn figure is painted in the next one (a background page gets no
# frames: a timer ends the wait there)
NEXT_FRAME = "() => new Promise((done) => { requestAnimationFrame(() => requestAnimationFrame(done)); " \
             "setTimeout(done, 2000); })"


def _lab_default() -> Any:
    """The settings a plain lab page opens with: the default preset's."""
    from nqs_core.presets import DEFAULT_PRESET, get_preset

    return get_preset(DEFAULT_PRESET).settings()


def link(settings: Any) -> str:
    """The deep link (``?…``) that opens the lab on ``settings`` (a RunSettings), written as the lab writes its own
    (``app.views.link.link_query``); a setting that differs from the default preset's must be a sidebar control."""
    from app.settings import CONTROLS, LabSettings
    from app.views.link import link_query

    default = _lab_default()
    unlinkable = [f.name for f in dataclasses.fields(settings)
                  if f.name not in CONTROLS and getattr(settings, f.name) != getattr(default, f.name)]
    if unlinkable:
        raise ValueError(f"the lab's link cannot set {', '.join(unlinkable)}")
    shown, opened = LabSettings(preset="custom"), LabSettings()
    shown.load_run_settings(settings)
    return "?" + urlencode(link_query(shown, CONTROLS, {name: getattr(opened, name) for name in CONTROLS}))


def tiny_link(**changes: Any) -> str:
    """The lab on the suite's ``TINY`` run with ``changes`` (its steps at least): the served lab compiles exactly
    TINY's programs (the link also turns off the default preset's Marshall sign, which TINY does not have)."""
    from nqs_core.settings import RunSettings

    return link(RunSettings(**{**TINY, **changes}))


def square_link(**changes: Any) -> str:
    """The lab's default problem (Heisenberg 4×4, RBM, Marshall's sign) sampled as ``TINY``, with ``changes``."""
    return link(_lab_default().replace(samples=TINY["samples"], chains=TINY["chains"], **changes))


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
        time.sleep(poll)  # a poll interval, not a wait for something not to happen
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def drawn(page) -> None:
    """Wait until every figure of the page is built and those on screen have painted, and two frames more for
    the data that reached them: what a screenshot or a look at the drawn figures needs."""
    page.wait_for_function(DRAWN, timeout=60_000)
    page.evaluate(NEXT_FRAME)


def movie_playing(page) -> None:
    """Wait until the Spins view (shown) plays the Metropolis movie of the run's checkpoint, a chain's as its
    space–time strip, and it is drawn: the movie is computed in the background from a checkpoint, which a
    short run may write only when it pauses or ends."""
    page.locator(".nqs-movie-caption", has_text=re.compile(r"frame \d+/\d+")).first.wait_for(
        timeout=FINISH_TIMEOUT_S * 1000)
    drawn(page)


def show_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.get_by_role("tab", name=name, exact=True).and_(page.locator("[aria-selected=true]")).wait_for(timeout=10_000)
    # a tab's models are built and sent the first time it is shown (app/lab.py, Lab._build_tabs)
    page.locator(f".nqs-tab-{name.lower().replace(' ', '-')}.nqs-filled").wait_for(state="attached", timeout=60_000)
    drawn(page)


def button(page, name: str):
    return page.get_by_role("button", name=name, exact=True)


def count(page, column: str) -> int:
    return page.evaluate(COUNT_POINTS, [column, False])


def finite_count(page, column: str) -> int:
    return page.evaluate(COUNT_POINTS, [column, True])


def test_a_run_finishes_with_every_step_plotted(open_lab, screenshots):
    """A run to its end (TINY, 100 steps): done, every step plotted, the reference and the relative error, the
    Marshall agreement of every step and the per-configuration sign picture, every view drawn.  (What a run shows
    while it runs is checked on the long run of test_pause_resume_and_stop_drive_the_run; how soon the first step
    shows is measured, not asserted: benchmarks/lab_first_progress.py.)"""
    page, console = open_lab(query=tiny_link(steps=100))
    for name in ("Run", "Pause", "Resume", "Stop", "Reset"):
        assert button(page, name).count() == 1, name
    assert "idle" in status(page) and step_of(page) == (0, 100)
    page.screenshot(path=str(screenshots / "00-idle-light.png"))

    button(page, "Run").click()
    show_tab(page, "Energy")
    wait_for(lambda: "done" in status(page), 240, "the run to finish")
    assert step_of(page) == (100, 100)
    wait_for(lambda: not button(page, "Run").is_disabled(), FINISH_TIMEOUT_S, "Run to be usable again")
    wait_for(lambda: count(page, "energy") == 100, 15, "100 energy points, one per step")
    wait_for(lambda: count(page, "rel") > 0, 60, "the reference and the relative error")
    drawn(page)
    page.screenshot(path=str(screenshots / "05-energy-done.png"))
    show_tab(page, "Spins")
    movie_playing(page)
    page.screenshot(path=str(screenshots / "06-spins-done.png"))
    show_tab(page, "Sign")
    wait_for(lambda: count(page, "phase") > 0, 30, "the per-configuration sign picture")
    wait_for(lambda: finite_count(page, "marshall") == 100, 15, "the Marshall agreement of every step")
    drawn(page)
    page.screenshot(path=str(screenshots / "07-sign-done.png"))
    show_tab(page, "Momentum")
    page.screenshot(path=str(screenshots / "08-momentum-done.png"))
    show_tab(page, "Diagnostics")
    page.screenshot(path=str(screenshots / "09-diagnostics.png"))
    assert console.errors == [], console.errors


def test_pause_resume_and_stop_drive_the_run(open_lab, screenshots):
    """A run that only Stop ends (TINY, LONG_RUN steps).  While it runs, the status line counts steps at a rate
    and the energy plot fills.  Paused, the views hold every step so far and the checkpoint written on Pause gives
    the per-configuration sign picture; after Resume and Stop every step is drawn once."""
    from app.views.common import ROLLOVER

    page, console = open_lab(query=tiny_link(steps=LONG_RUN))
    button(page, "Run").click()
    show_tab(page, "Energy")
    wait_for(lambda: step_of(page)[0] >= 3, 240, "step N / M to advance")
    wait_for(lambda: count(page, "energy") > 0, 240, "energy points in the plot")
    wait_for(lambda: "running" in status(page) and "it/s" in status(page), 30, "the running phase and its rate")
    drawn(page)
    page.screenshot(path=str(screenshots / "01-energy-running.png"))

    # a page that streams a fast run on a loaded machine can answer late: the clicks do not wait for it (the
    # phases the server reports next are the checks)
    button(page, "Pause").click(no_wait_after=True)
    wait_for(lambda: "paused" in status(page), 120, "the paused phase")  # a hang guard, not a bound
    # that no step runs while paused is shown where it can be waited on, without a sleep: the worker
    # blocked at its pause gate (tests/test_app_runner.py) and no step reported after it (tests/test_driver.py)
    held = step_of(page)[0]
    assert held > 0
    assert not button(page, "Resume").is_disabled() and button(page, "Pause").is_disabled()
    # the sign and momentum views hold the data of the steps so far (engine observables per step)
    show_tab(page, "Sign")
    wait_for(lambda: finite_count(page, "marshall") == held, 30, "the Marshall agreement of every step so far")
    wait_for(lambda: count(page, "phase") > 0, 30, "the per-configuration sign picture of the paused run")
    drawn(page)
    page.screenshot(path=str(screenshots / "02-sign-paused.png"))
    show_tab(page, "Momentum")
    wait_for(lambda: count(page, "im") >= 1, 30, "translation eigenvalues while running")
    drawn(page)
    page.screenshot(path=str(screenshots / "03-momentum-paused.png"))
    show_tab(page, "Spins")
    movie_playing(page)  # from the checkpoint written on Pause
    page.screenshot(path=str(screenshots / "04-spins-paused.png"))
    assert step_of(page)[0] == held

    button(page, "Resume").click()
    wait_for(lambda: step_of(page)[0] > held, 60, "steps to continue after Resume")

    button(page, "Stop").click(no_wait_after=True)
    wait_for(lambda: "stopped" in status(page), 60, "the stopped phase")
    n_stop = step_of(page)[0]
    assert held < n_stop < LONG_RUN
    wait_for(lambda: not button(page, "Run").is_disabled(), FINISH_TIMEOUT_S,
             "Run to be usable again after Stop")
    show_tab(page, "Energy")
    shown = min(n_stop, ROLLOVER)  # a live plot keeps the last ROLLOVER steps
    wait_for(lambda: count(page, "energy") == shown, 15, f"{shown} energy points (each step once across the pause)")
    assert console.errors == [], console.errors
    print(f"paused at {held}, stopped at {n_stop}")


def test_closing_the_page_stops_its_worker(open_lab, process_lab_server):
    """On the lab as served (a worker process per run): Run, then closing the tab stops the run's worker."""
    lab_server = process_lab_server
    observer, _ = open_lab(server=lab_server)
    page, console = open_lab(query=tiny_link(steps=LONG_RUN), server=lab_server)
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


def type_until_shown(page, values: dict[str, str]) -> None:
    """Type ``values`` (field label → text, Steps among them) until the page shows them all: a preset chosen just
    before may still be applying its own values over the typed ones, so type again."""
    def typed() -> bool:
        for label, value in values.items():
            if page.get_by_label(label, exact=True).input_value() != value:
                set_field(page, label, value)
        return (f"/ {values['Steps']}" in status(page)
                and all(page.get_by_label(label, exact=True).input_value() == v for label, v in values.items()))

    wait_for(typed, 30, f"the typed settings {values}", poll=1.0)


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
    page, console = open_lab(viewport=(1500, 1150), query=tiny_link(steps=40))
    page.get_by_role("switch", name="Large fonts (projector)").or_(
        page.get_by_label("Large fonts (projector)")).first.click()
    wait_for(lambda: page.evaluate("getComputedStyle(document.documentElement).fontSize") == "21px", 10,
             "the larger root font")
    assert step_of(page) == (0, 40)
    button(page, "Run").click()
    wait_for(lambda: "done" in status(page), 180, "the short run to finish")
    exports = page.get_by_text("Export and load").first
    exports.scroll_into_view_if_needed()
    # what the screenshot shows: the finished run's exports offered, in view
    expect(page.get_by_role("button", name="Run (JSON)")).to_be_enabled(timeout=FINISH_TIMEOUT_S * 1000)
    movie_playing(page)  # the Spins view, shown beside the sidebar
    expect(exports).to_be_in_viewport(timeout=10_000)
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
    wait_for(lambda: not button(page, "Run").is_disabled(), FINISH_TIMEOUT_S, "Run to be usable after divergence")
    show_tab(page, "Energy")
    page.screenshot(path=str(screenshots / "14-dark-diverged-run.png"))
    assert console.errors == [], console.errors


def test_chain_preset_space_time_strip_and_momentum(open_lab, screenshots):
    """The chain preset applies from the menu and the settings typed or chosen after it override it (down to the
    suite's TINY: its chain at TINY's length and sampling, without the k = π projection and Marshall's sign); the
    run's chain is drawn as a space–time strip, with S(q) in the Momentum view."""
    page, console = open_lab()
    choose(page, "Preset (talk or research)", "An 18-site chain lives at k = π")
    wait_for(lambda: "/ 80" in status(page), 30, "the preset's step count")
    assert page.get_by_label("L", exact=True).input_value() == "18"
    type_until_shown(page, {"Steps": "6", "L": str(TINY["L"]), "Samples per step": str(TINY["samples"]),
                            "Markov chains": str(TINY["chains"])})
    choose(page, "Momentum sector k", "no projection")
    choose(page, "Sign prior", "none")
    button(page, "Run").click()
    wait_for(lambda: "done" in status(page) or "stopped" in status(page), 240, "the short chain run to end")
    assert step_of(page) == (6, 6)
    show_tab(page, "Spins")
    movie_playing(page)
    page.screenshot(path=str(screenshots / "15-chain-space-time-strip.png"))
    show_tab(page, "Momentum")
    wait_for(lambda: count(page, "s") > 0, 20, "S(q) of the chain")
    drawn(page)
    page.screenshot(path=str(screenshots / "16-chain-momentum.png"))
    assert console.errors == [], console.errors


def test_dmrg_reference_computed_in_the_background(open_lab, screenshots):
    """J1-J2 at J2 = 0.3 on an open chain of 24 sites: beyond ED (2.7e6 states with Sᶻ = 0, no translations to
    reduce them), no closed form, not stored (fresh cache), so the session runs DMRG in a background process and
    shows its progress while the run starts (TINY's sampling), then (the run paused meanwhile) the labelled line."""
    page, console = open_lab()
    choose(page, "Hamiltonian", "J1-J2")
    choose(page, "Lattice", "chain")
    choose(page, "Boundary", "open")
    set_field(page, "L", "24")
    set_field(page, "J2", "0.3")
    set_field(page, "Samples per step", str(TINY["samples"]))
    set_field(page, "Markov chains", str(TINY["chains"]))
    set_field(page, "Steps", str(LONG_RUN))
    wait_for(lambda: f"/ {LONG_RUN}" in status(page), 15, "the edited step count")
    button(page, "Run").click()
    show_tab(page, "Energy")
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
    drawn(page)
    page.screenshot(path=str(screenshots / "18-dmrg-reference.png"))
    button(page, "Stop").click()
    wait_for(lambda: "stopped" in status(page), 60, "the run to stop")
    assert console.errors == [], console.errors
