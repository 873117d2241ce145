"""A class on one server (issue 11): what a session leaves behind when it ends, and what it builds when it
starts (benchmarks/class_load.py measures the served lab; these check the causes it found)."""

from __future__ import annotations

import gc
import weakref

import panel as pn

from app.lab import Lab, release_page


def test_an_ended_session_leaves_nothing_alive() -> None:
    """panel-material-ui's Page watches the process-wide ``pn.state.busy``: without ``release_page`` every
    closed session's Lab (views, figures, documents) stayed reachable from ``pn.state`` for the life of
    the server."""
    lab = Lab()
    page = weakref.ref(lab.page)
    assert any(getattr(getattr(w.fn, "__self__", None), "self", None) is lab.page
               for ws in pn.state.param.watchers.get("busy", {}).values() for w in ws)
    lab._on_session_destroyed(None)  # what Bokeh calls when it discards the session
    gone = weakref.ref(lab)
    del lab
    gc.collect()
    assert gone() is None and page() is None
    assert release_page(pn.ui.Page()) == 1  # one watcher per page


def test_only_the_shown_tab_is_built_until_another_is_shown() -> None:
    lab = Lab()
    try:
        filled = [bool(slot.objects) for slot in lab._slots]
        assert filled == [True] + [False] * (len(lab.views) - 1)
        compare = lab.views.index(lab.compare)
        lab.tabs.active = compare
        assert lab._slots[compare].objects == [lab.compare.panel] and "nqs-filled" in lab._slots[compare].css_classes
        assert lab._shown_view() is lab.compare
        lab.tabs.active = 0  # shown again: the first tab keeps its models
        assert lab._slots[0].objects == [lab.views[0].panel] and lab._slots[compare].objects
    finally:
        lab.shutdown()
