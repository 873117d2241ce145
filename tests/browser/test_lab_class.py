"""A class in miniature (issue 11, the CI version of benchmarks/class_load.py): three sessions share a
server with one place in its run queue.  Behaviour only, no timings (class_load.py
measures them): the queued sessions see their place, Pause takes effect on the running one, Stop cancels
a queued run cleanly, a closed session frees its place, and the run that waited completes.

Run: .venv/bin/python -m pytest -q -p no:cacheprovider tests/browser/test_lab_class.py
"""

from __future__ import annotations

import re

import pytest

from tests.browser.test_lab_browser import LONG_RUN, button, status, step_of, tiny_link, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

LONG = tiny_link(steps=LONG_RUN)  # runs until stopped
SHORT = tiny_link(steps=20)


def server_line(page) -> str:
    return page.locator(".nqs-server").inner_text()


def waiting(page) -> int:
    m = re.search(r"(\d+) waiting", server_line(page))
    return int(m.group(1)) if m else 0


def test_a_class_queues_pauses_frees_places_and_ends_cleanly(open_lab, queue_lab_server):
    server = queue_lab_server
    first, console = open_lab(query=LONG, server=server)
    button(first, "Run").click()
    wait_for(lambda: step_of(first)[0] >= 1, 180, "the first session's run to step")  # hang guards, not bounds
    second, third = open_lab(query=SHORT, server=server)[0], open_lab(query=SHORT, server=server)[0]
    for place, page in enumerate((second, third), start=1):
        button(page, "Run").click()
        wait_for(lambda: f"waiting: place {place} in line" in status(page), 60, f"session {place + 1} in line")
    wait_for(lambda: waiting(first) == 2, 30, "the server line to count two waiting runs")

    # Pause takes effect on the running session: paused, Resume offered, its step held while the queue moves
    button(first, "Pause").click()
    wait_for(lambda: "paused" in status(first), 60, "the paused phase")
    held = step_of(first)[0]
    assert button(first, "Pause").is_disabled() and not button(first, "Resume").is_disabled()

    button(second, "Stop").click()  # a queued run is cancelled at once: the next one moves up
    wait_for(lambda: "idle" in status(second), 30, "the cancelled run to leave the queue")
    second.get_by_text("Stopped before the first step").first.wait_for(timeout=10_000)
    wait_for(lambda: "waiting: place 1 in line" in status(third), 30, "the third session to move up")
    third.context.close()  # the one in line closes its tab: its place goes
    wait_for(lambda: waiting(first) == 0, 60, "the closed session to leave the queue")
    button(second, "Run").click()  # Run again: in line behind the paused run
    wait_for(lambda: "waiting: place 1 in line" in status(second), 60, "the second session in line again")
    assert step_of(first)[0] == held  # still paused

    button(first, "Resume").click()
    wait_for(lambda: step_of(first)[0] > held, 60, "steps after Resume")
    button(first, "Stop").click()
    wait_for(lambda: "stopped" in status(first), 60, "the first run to stop")
    wait_for(lambda: "done" in status(second), 180, "the waiting run to get the place and complete")
    assert step_of(second) == (20, 20)
    wait_for(lambda: "0 run(s) active" in server_line(first) and waiting(first) == 0, 30, "an empty queue")
    assert console.errors == [], console.errors
