"""Entry of ``panel serve app`` (Bokeh directory-app format): one Lab page per browser session.

Module-level state of imported modules (the engine's compiled-code cache, ``nqs_core.vmc.engine_for``,
JAX's persistent compilation cache, the run queue ``app.run_queue.server_queue`` and its executor) is shared by all
sessions of the server process; this script itself runs once per session.  The per-session limits on problem
size (``app.limits``) come from the environment: ``make class`` sets them, ``make lab`` only where set.
"""

import logging
from pathlib import Path

import panel as pn

from app.lab import Lab
from app.limits import Limits
from app.offline import serve_panel_assets_locally
from app.run_queue import server_executor, server_queue
from nqs_core.compile_cache import enable_compile_cache

# JAX decides once per process, at its first compilation, whether to use the persistent cache: switched on
# here, before any session computes, so every program of this server (pictures and exact states included,
# not only the runs' steps, which ``driver.run`` switches it on for) comes from and goes to the cache
enable_compile_cache()
serve_panel_assets_locally()  # no stylesheet from cdn.holoviz.org, also on a loaded machine (app/offline.py)
pn.extension(notifications=True, raw_css=[(Path(__file__).resolve().parents[1] / "assets" / "lab.css").read_text()])
_log = logging.getLogger("nqs_lab")
_log.setLevel(logging.INFO)
if not _log.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    _log.addHandler(_handler)
    _log.propagate = False

lab = Lab()
lab.runner.run_queue = server_queue()  # at most NQS_MAX_RUNS runs of all sessions compute at once
lab.runner.executor = server_executor()  # where they compute: NQS_EXECUTOR / NQS_DASK_SCHEDULER
lab.limits = Limits.from_env()  # NQS_MAX_SITES, _SAMPLES, _PARAMETERS (make class sets them; app/limits.py)
lab.start_session()
lab.page.servable(title="NQS Lab")
