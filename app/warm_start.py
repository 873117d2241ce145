"""``panel serve --setup app/warm_start.py`` (``make lab``, ``make class``): start ``nqs warm`` in a
background process at low priority when the server starts, so the first Run of the day finds the
default's and the talk presets' compiled steps in the persistent compilation cache (issue 11, warm
start).  The server does not wait for it; its lines ("warm: NAME: … s") go to the server's log.
``NQS_WARM=0`` skips it.
"""

from __future__ import annotations

import os
import subprocess
import sys

if os.environ.get("NQS_WARM", "1").strip().lower() not in ("0", "false", "no", "off"):
    # the child lowers its own priority (``--nice``): no Python code between fork and exec in a threaded server
    subprocess.Popen([sys.executable, "-m", "nqs_core", "warm", "--nice", "10"])
