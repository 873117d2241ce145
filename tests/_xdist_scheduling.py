"""How the suite's tests are spread over the pytest-xdist workers (``-n 2``, see tests/conftest.py).

``--dist load`` with the browser tests as one unit of work: each test goes to whichever worker is
free, but the browser tests share a session-scoped lab server and Chromium, so they run in order on
one worker while the other takes the rest.  (``--dist loadgroup`` would do this with an
``xdist_group`` mark, but pytest-xdist 3.8 cannot rename node ids under pytest 9.)

It also mends two faults of pytest-xdist 3.8's ``LoadScopeScheduling`` that turn a crashed worker
(a segfault, or pytest-timeout stopping a hung test) into a suite that waits forever:

* the crashed worker's finished units went back on the queue, and the empty work they became was
  never reported done (pytest-xdist #1323, #1378); the test it crashed on was run again (#1371);
* the replacement worker got one test, and a worker runs a test only once it knows the next one or is
  told to shut down, so it waited for ever (#1327).
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

BROWSER_TESTS = "tests/browser/"


class BrowserTestsTogether(LoadScopeScheduling):
    """``LoadScopeScheduling`` with one scope per test, except one for every browser test."""

    def _split_scope(self, nodeid: str) -> str:
        return BROWSER_TESTS if nodeid.startswith(BROWSER_TESTS) else nodeid

    def remove_node(self, node: Any) -> str | None:
        """Forget ``node``; after a crash, queue again only the tests it had not run, less the one it
        crashed on (which xdist reports as failed).  Returns that test, or None after a clean finish."""
        workload = self.assigned_work.pop(node)
        pending = [nodeid for unit in workload.values() for nodeid, done in unit.items() if not done]
        if not pending:
            return None
        crashed = pending[0]
        for scope, unit in workload.items():
            unit.pop(crashed, None)
            if not all(unit.values()):
                self.workqueue[scope] = unit
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed

    def _reschedule(self, node: Any) -> None:
        """Give ``node`` work until it holds more than two tests, and tell it to shut down once the
        queue is empty (so that it runs the last test it holds)."""
        if node.shutting_down or node not in self.registered_collections:
            return  # a replacement worker still collecting gets its work when it has collected
        try:
            while self.workqueue and self._pending_of(self.assigned_work[node]) <= 2:
                self._assign_work_unit(node)
        except OSError:  # the worker died before xdist heard of it: remove_node puts its work back
            return
        if not self.workqueue:
            node.shutdown()
