"""The lab's page asks no CDN for Panel's stylesheets, also for models rendered without a page's dist_url."""

import panel as pn
import panel.reactive
from bokeh.document import Document
from bokeh.models import ImportedStyleSheet
from panel.io.resources import CDN_DIST

from app.offline import serve_panel_assets_locally


def stylesheet_urls(model) -> list[str]:
    urls = []
    for m in model.references():
        for sheet in getattr(m, "stylesheets", None) or []:
            if isinstance(sheet, ImportedStyleSheet):
                urls.append(sheet.url)
    return urls


def test_models_rendered_without_a_page_use_this_servers_stylesheets(monkeypatch):
    monkeypatch.setattr(panel.reactive, "CDN_DIST", CDN_DIST)  # Panel's own fallback, as before the lab starts
    view = lambda: pn.Column(pn.widgets.Button(label="Run"), pn.pane.Markdown("energy"))  # noqa: E731
    assert any(url.startswith(CDN_DIST) for url in stylesheet_urls(view().get_root(Document()))), \
        "Panel no longer falls back to its CDN: app/offline.py can go"
    serve_panel_assets_locally()
    serve_panel_assets_locally()  # idempotent
    urls = stylesheet_urls(view().get_root(Document()))
    assert urls and not [url for url in urls if url.startswith("http")], urls
