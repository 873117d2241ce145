"""A class on one server (issue 11): what a session leaves behind when it ends, and what it builds when it
starts (benchmarks/class_load.py measures the served lab; these check the causes it found)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.lab import Lab


# The sessions' own threads (their reference lookups, a test's server loop) end before the collection: while
# another thread runs a garbage collection, gc.collect() returns 0 at once and a dead Lab looks alive.
COLLECT = """
for thread in threading.enumerate():
    if thread.name.startswith("nqs-"):
        thread.join(120)  # a hang guard
gc.collect()
"""

ENDED_SESSION = r"""
import gc, sys, threading, weakref
import panel as pn
from app.lab import Lab, release_page

lab = Lab()
page = weakref.ref(lab.page)
assert any(getattr(getattr(w.fn, "__self__", None), "self", None) is lab.page
           for ws in pn.state.param.watchers.get("busy", {}).values() for w in ws)
lab._on_session_destroyed(None)  # what Bokeh calls when it discards the session
gone = weakref.ref(lab)
del lab
""" + COLLECT + r"""
if gone() is not None:  # who holds it (for the failure message)
    holders = [type(r).__name__ + ":" + repr(r)[:120] for r in gc.get_referrers(gone()) if r is not sys._getframe()]
    sys.exit("the Lab is alive, held by " + "; ".join(holders))
assert page() is None, "the page is alive"
assert release_page(pn.ui.Page()) == 1  # one watcher per page
"""


def in_a_fresh_interpreter(script: str) -> None:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-3000:]


def test_an_ended_session_leaves_nothing_alive() -> None:
    """panel-material-ui's Page watches the process-wide ``pn.state.busy``: without ``release_page`` every
    closed session's Lab (views, figures, documents) stayed reachable from ``pn.state`` for the life of
    the server.  In a fresh interpreter, as a served session's process starts.  The session's reference
    lookup may still be reading its table when the session ends: while that thread runs a garbage
    collection, ``gc.collect()`` here returns 0 at once, which left the Lab "alive" in some runs (held by
    nothing), so the check waits for the session's threads first."""
    in_a_fresh_interpreter(ENDED_SESSION)


SERVED_SESSIONS = r"""
import gc, sys, threading, time, urllib.request
from bokeh.command.util import build_single_handler_application
from bokeh.server.server import Server
from app.lab import Lab

# the app as `panel serve app` runs it, on a free port; sessions nobody connects to are discarded after 0.5 s
server = Server({"/app": build_single_handler_application("app")}, port=0, address="127.0.0.1",
                unused_session_lifetime_milliseconds=500, check_unused_sessions_milliseconds=100)
server.start()
threading.Thread(target=server.io_loop.start, daemon=True, name="nqs-test-server").start()
for _ in range(3):  # three sessions opened (each GET builds one) and left
    urllib.request.urlopen(f"http://127.0.0.1:{server.port}/app", timeout=300).read()
deadline = time.monotonic() + 120  # a hang guard: Bokeh discards them within a second or two
while server.get_sessions("/app") and time.monotonic() < deadline:
    time.sleep(0.1)
assert not server.get_sessions("/app"), "Bokeh did not discard the sessions"
server.io_loop.add_callback(server.io_loop.stop)
""" + COLLECT + r"""
alive = [o for o in gc.get_objects() if isinstance(o, Lab)]
if alive:  # who holds one (for the failure message)
    holders = [type(r).__name__ + ":" + repr(r)[:120] for r in gc.get_referrers(alive[0]) if r is not alive]
    sys.exit(f"{len(alive)} Labs of discarded sessions alive, one held by " + "; ".join(holders[:12]))
"""


def test_discarded_served_sessions_leave_no_lab_alive() -> None:
    """Served, Panel 1.10 kept every session's notification area registered with its document after the
    session ended (``release_document_views``): each opened and discarded session kept its whole document
    and Lab, +9 MB of server memory per session."""
    in_a_fresh_interpreter(SERVED_SESSIONS)


def test_only_the_shown_tab_is_built_until_another_is_shown() -> None:
    lab = Lab()
    try:
        filled = [bool(slot.objects) for slot in lab._slots]
        assert filled == [True] + [False] * (len(lab.views) - 1)
        # the tool tabs' figures are not even built (Lab() cost 1.5 s, of which 0.7 s theirs: benchmarks/README)
        lazy = [lab.compare, lab.sweep, lab.diagnostics, lab.ising]
        assert not any("figures" in view.__dict__ for view in lazy)
        compare = lab.views.index(lab.compare)
        lab.tabs.active = compare
        assert "figures" in lab.compare.__dict__ and not any("figures" in v.__dict__ for v in lazy[1:])
        assert lab._slots[compare].objects == [lab.compare.panel] and "nqs-filled" in lab._slots[compare].css_classes
        assert lab._shown_view() is lab.compare
        lab.tabs.active = 0  # shown again: the first tab keeps its models
        assert lab._slots[0].objects == [lab.views[0].panel] and lab._slots[compare].objects
    finally:
        lab.shutdown()
