"""The lab's page loads nothing from the internet: Panel's stylesheets come from this server.

Panel 1.10 resolves a component's stylesheets against the page's ``dist_url`` (the server's
``static/extensions/panel/``), but a model rendered where no document with a ``dist_url`` is at hand
falls back to ``https://cdn.holoviz.org/panel/<version>/dist/`` (``panel.reactive``, the ``dist_url``
of ``ReactiveData._resolve_stylesheets``).  On a loaded 2-core machine the views updated during a run
hit that fallback: the page asked the CDN for ``css/loading.css`` and the Material theme's
``material_variables.css`` (64 failed requests offline; a lecture hall without internet would lose the
styles).  The lab is only ever served by ``panel serve``, so the fallback is pointed at the server's
own copy (``LOCAL_DIST``), which Panel's ``patch_stylesheet`` then uses like any page's ``dist_url``.
"""

from __future__ import annotations

import panel.reactive
from panel.io.resources import CDN_DIST, LOCAL_DIST


def serve_panel_assets_locally() -> None:
    """Point Panel's no-document stylesheet fallback at this server (idempotent)."""
    if getattr(panel.reactive, "CDN_DIST", None) == CDN_DIST:
        panel.reactive.CDN_DIST = LOCAL_DIST


__all__ = ["serve_panel_assets_locally"]
