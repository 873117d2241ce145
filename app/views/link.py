"""Deep links: the page URL holds the preset or the settings, so a slide can link to a configured run.

``?preset=chain-18-k-pi`` opens a preset; ``?lattice=chain&L=10&steps=50`` opens the default preset
with those settings changed (the preset then reads "custom").  While the page is open its URL follows
every change (``pn.state.location``), so reloading keeps the settings.  A link's values pass the same
checks as typed ones: a refused value is marked next to its field and named in the sidebar message.
"""

from __future__ import annotations

from typing import Any

import param

from app.views.fields import NumberField, _fmt


def choices(p: param.Selector) -> list[Any]:
    """The values a selector accepts."""
    return list(p.objects)


def link_query(settings: param.Parameterized, controls: list[str], defaults: dict[str, Any]) -> dict[str, str]:
    """The query that reopens ``settings``: its preset's name, or the controls that differ from ``defaults``."""
    if settings.preset != "custom":
        return {"preset": str(settings.preset)}
    out: dict[str, str] = {}
    for name in controls:
        value = getattr(settings, name)
        if value != defaults.get(name):
            out[name] = _fmt(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return out


def apply_link(settings: param.Parameterized, query: dict[str, Any], controls: list[str],
               fields: dict[str, NumberField]) -> list[str]:
    """Set the preset, then each control named in ``query`` (in sidebar order); returns the refusals."""
    refused: list[str] = []
    preset = query.get("preset")
    if preset is not None and str(preset) != "custom":
        if str(preset) in choices(settings.param.preset):
            settings.preset = str(preset)
        else:
            refused.append(f"preset must be one of {', '.join(map(str, choices(settings.param.preset)))} "
                           f"(got {preset!r})")
    for name in controls:
        if name not in query:
            continue
        text = str(query[name])
        if name in fields:
            fields[name].widget.value = text  # checked like typed text; a refusal stays next to the field
            if fields[name].error:
                refused.append(fields[name].error)
            continue
        p = settings.param[name]
        if text in choices(p):
            setattr(settings, name, text)
        else:
            refused.append(f"{p.label or name} must be one of {', '.join(map(str, choices(p)))} (got {text!r})")
    return refused


__all__ = ["apply_link", "link_query"]
