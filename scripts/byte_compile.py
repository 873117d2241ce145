"""Byte-compile the modules that the lab and the tests import, beside their sources (run by bootstrap.sh).

bootstrap.sh installs with ``pip --no-compile``: compiling every module of every package cost 95 s of CPU.
Python would then compile a module when a process first imports it and keep the ``.pyc`` for the next
process, but not where ``PYTHONDONTWRITEBYTECODE`` is set, as on these machines: there every process compiled
JAX, Panel, Bokeh, SciPy... from source again.  Measured (2-core machine, idle): ``import app.lab`` 7.9 s of
CPU without ``.pyc`` and 2.8 s with; a short ``nqs run`` 7.7 s and 3.0 s.  Importing them here once, with
writing allowed in this process only, leaves the ``.pyc`` files every later process reads, whatever its setting.

    .venv/bin/python scripts/byte_compile.py [--test]
"""

from __future__ import annotations

import importlib
import subprocess
import sys

# what `panel serve app`, its run workers (nqs_core.fork_server.PRELOAD), DMRG jobs and `nqs` import
# (Panel loads its Material UI components, and narwhals, when a session's page is first built), in two
# groups of about equal import time that two processes compile side by side (13.7 s one after the other,
# 7.5 s side by side on 2 cores); modules both groups import are written by whichever gets there first
# (Python writes a .pyc to a temporary name and renames it, so the two never see half a file)
LAB = [["app.lab", "app.limits", "app.offline", "app.run_queue", "panel_material_ui", "panel.ui", "panel.io.convert",
        "panel.io.location", "narwhals.stable.v1", "narwhals.stable.v2", "nqs_core.exports.figures",
        "nqs_core.exports.report", "imageio.v2"],
       ["nqs_core.cli.run", "nqs_core.driver", "nqs_core.executors", "nqs_core.references.dmrg", "tenpy",
        "scipy.sparse.linalg", "jax.scipy.linalg"]]
# and what the test processes add: pytest with its workers, Playwright, the Dask cluster of the executor tests
TEST = ["pytest", "xdist", "xdist.remote", "playwright.sync_api", "dask.distributed"]


def import_all(names: list[str]) -> None:
    """Import ``names`` here, writing the .pyc of every module they load."""
    sys.dont_write_bytecode = False  # this process writes what it imports, whatever PYTHONDONTWRITEBYTECODE says
    for name in names:
        importlib.import_module(name)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--import"]:
        import_all(argv[1:])
        return 0
    groups = [LAB[0], LAB[1] + (TEST if "--test" in argv else [])]
    children = [subprocess.Popen([sys.executable, __file__, "--import", *group]) for group in groups]
    return max(child.wait() for child in children)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
