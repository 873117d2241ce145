"""A one-page run report (self-contained HTML, prints on one A4 landscape page): the system and its
convention, the final energy ± error (E and E/N), V-score N·Var(E)/E² (Wu et al., Science 2024), the
reference with its provenance and the relative error, the verdict, the settings, and the main
figures (energy curve, relative error) embedded as inline SVG.
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Any

from matplotlib import rc_context
from matplotlib.figure import Figure

from nqs_core.exports.figures import STYLE, describe, energy_figure, relative_error_figure
from nqs_core.exports.record import RunRecord
from nqs_core.settings import RunSettings, schema

CSS = """
@page { size: A4 landscape; margin: 8mm; }
body { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; font-size: 10pt; margin: 0 auto; max-width: 1400px; color: #111; }
h1 { font-size: 15pt; margin: 4px 0; } h2 { font-size: 11pt; margin: 6px 0 2px; }
.conv { color: #444; margin-bottom: 6px; }
.cols { display: flex; gap: 14px; } .cols > div { flex: 1; min-width: 0; }
table { border-collapse: collapse; width: 100%; } td { padding: 1px 6px; border-bottom: 1px solid #ddd; vertical-align: top; }
td:first-child { color: #555; white-space: nowrap; }
.settings td { font-size: 8.5pt; } .settings td:nth-child(odd) { color: #555; } .figs { display: flex; gap: 8px; } .figs figure { flex: 1; margin: 0; }
.figs svg { width: 100%; height: auto; } .ok { color: #1a7f37; } .warning { color: #b07800; } .failed { color: #c0392b; }
"""


def _fmt(x: Any, spec: str = ".6f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _rows(items: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items)


def settings_table(settings: RunSettings, per_row: int = 3) -> str:
    """Every setting as ``name  value`` pairs, ``per_row`` pairs a row; unset ones as the schema says
    (e.g. ``h``: "the model's 1")."""
    sch = schema()
    cells = [(name, value if value is not None else sch[name].default_text())
             for name, value in settings.to_dict().items()]
    rows = []
    for i in range(0, len(cells), per_row):
        tds = "".join(f"<td>{html.escape(k)}</td><td>{html.escape(str(v))}</td>" for k, v in cells[i:i + per_row])
        rows.append(f"<tr>{tds}</tr>")
    return f'<table class="settings">{"".join(rows)}</table>'


def inline_svg(fig: Figure, element_id: str) -> str:
    """The figure as an inline ``<svg>`` element (XML prolog and doctype dropped) with an id."""
    buf = io.StringIO()
    with rc_context(STYLE):
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return svg.replace("<svg", f'<svg id="{element_id}"', 1)


def result_items(record: RunRecord) -> list[tuple[str, Any]]:
    """Final energy ± error, E/N, V-score, relative error, verdict (from the summary, else the last step)."""
    s, n = record.summary or {}, record.n_sites or 1
    if s.get("final_energy") is not None:
        e, err, src = s["final_energy"], s.get("final_error"), s.get("final_source", "")
    elif record.history:
        last = record.history[-1]
        e, err, src = last.energy, last.error, f"last step ({last.step}); the saved run has no final evaluation"
    else:
        e, err, src = None, None, "no steps"
    v = s.get("v_score") if s else (record.history[-1].v_score if record.history else None)
    items = [("final energy E", f"{_fmt(e)} ± {_fmt(err)}"), ("E/N", f"{_fmt(e / n if e is not None else None)} ± "
             f"{_fmt(err / n if err is not None else None)}"), ("from", src), ("V-score N·Var(E)/E²", _fmt(v, ".3e"))]
    ref = record.reference_energy
    if ref is not None and e is not None:
        items.append(("relative error |E − E_ref|/|E_ref|", _fmt(abs(e - ref) / abs(ref), ".3e")))
    for key, label in (("fidelity", "fidelity |⟨ψ₀|ψ⟩|²"), ("sign_agreement", "sign agreement"),
                       ("marshall_agreement", "Marshall-sign agreement"), ("measured_momentum", "measured k/π"),
                       ("steps", "steps"), ("iterations_per_second", "iterations per second"),
                       ("wall_seconds", "wall time (s)"), ("verdict", "verdict")):
        if s.get(key) is not None:
            items.append((label, _fmt(s[key], ".6g") if isinstance(s[key], float) else s[key]))
    items += [("warning", w) for w in s.get("warnings") or []]
    return items


def reference_items(record: RunRecord) -> list[tuple[str, Any]]:
    """Method, E and E/N of the reference and every provenance entry."""
    ref, n = record.reference, record.n_sites or 1
    if not ref or ref.get("energy") is None:
        note = (record.summary or {}).get("reference_note") or "none recorded"
        return [("reference", note)]
    items = [("method", ref.get("method")), ("E_ref", _fmt(float(ref["energy"]), ".8f")),
             ("E_ref/N", _fmt(float(ref["energy"]) / n, ".8f"))]
    prov = ref.get("provenance")
    items += [(f"provenance: {k}", v) for k, v in prov.items() if v is not None] if isinstance(prov, dict) else \
        [("provenance", prov)] if prov else []
    items += [(k, ref[k]) for k in ("source", "sector_note") if ref.get(k)]
    return items


def report_html(record: RunRecord) -> str:
    """The one-page report of ``record`` (see the module docstring)."""
    system, convention = describe(record)
    verdict = (record.summary or {}).get("verdict")
    figs = [f'<figure id="energy-figure">{inline_svg(energy_figure(record), "energy-svg")}'
            f"<figcaption>Energy per site against the reference</figcaption></figure>"]
    rel = relative_error_figure(record)
    if rel is not None:
        figs.append(f'<figure id="relative-error-figure">{inline_svg(rel, "relative-error-svg")}'
                    f"<figcaption>Relative error (log)</figcaption></figure>")
    settings_html = (settings_table(record.settings) if record.settings is not None else
                     "<p>not recorded (nqs run --json prints none; give the run's checkpoint with --checkpoint)</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>NQS Lab run report: {html.escape(system)}</title>
<style>{CSS}</style></head><body>
<h1>NQS Lab run report: {html.escape(system)}{f' — <span class="{html.escape(verdict)}">{html.escape(verdict)}</span>' if verdict else ''}</h1>
<div class="conv">convention: {html.escape(convention)} · source: {html.escape(record.source)}</div>
<div class="figs">{''.join(figs)}</div>
<div class="cols"><div><h2>Result</h2><table>{_rows(result_items(record))}</table></div>
<div><h2>Reference</h2><table>{_rows(reference_items(record))}</table>
<h2>Settings</h2>{settings_html}</div></div>
</body></html>
"""


def write_report(record: RunRecord, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(record), encoding="utf-8")
    return path
