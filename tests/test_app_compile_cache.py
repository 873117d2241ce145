"""The served lab keeps every compiled program in the persistent compilation cache.

JAX decides once per process, at its first compilation, whether to use the cache; ``driver.run`` switches it
on, but a served lab compiles before its first run: the parameter count of the per-session limits
(``app.limits``, ``jax.random.PRNGKey``) when Run is pressed, the pictures of a loaded run.  Then none of the
server's programs were ever cached.  ``app/main.py`` switches it on when a session is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FIRST_SESSION_THEN_COMPILE = r"""
import sys
from bokeh.command.util import build_single_handler_application
import jax, jax.numpy as jnp
application = build_single_handler_application("app")
doc = application.create_document()  # runs app/main.py as a served session does
jax.jit(lambda x: jnp.sin(x) * 3.0)(jnp.ones(7)).block_until_ready()  # the server's first compilation
"""


def test_a_served_session_switches_the_compile_cache_on_before_anything_compiles(tmp_path: Path) -> None:
    env = {**os.environ, "NQS_CACHE_DIR": str(tmp_path), "NQS_COMPILE_CACHE": "1"}
    out = subprocess.run([sys.executable, "-c", FIRST_SESSION_THEN_COMPILE], capture_output=True, text=True,
                         timeout=600, cwd=Path(__file__).resolve().parents[1], env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    entries = [p for p in (tmp_path / "jax").rglob("*") if p.is_file()]
    assert entries, "the served lab's first compilation did not reach the persistent cache"
