"""Sidebar fields for numeric settings: one rule for every Integer / Number parameter.

The text a person types is checked against the parameter itself (its type, its bounds, whether
it may be empty), so the rule keeps working when the parameters are generated from a schema.
A valid value is set on the parameter; anything else is refused with a message next to the
field that names the setting and the allowed range, and the parameter keeps its value.  Nothing
raises: an out-of-range value never reaches ``param`` (whose ``ValueError`` Panel would log as a
traceback).  The message goes away as soon as the field holds a valid value again.
"""

from __future__ import annotations

import math
from typing import Any

import panel as pn
import param


def _fmt(x: float | int) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def allowed_text(p: param.Parameter) -> str:
    """``a whole number from 2 to 64``, ``a number above 0 up to 10``, ``a number ≥ 0``."""
    kind = "a whole number" if isinstance(p, param.Integer) else "a number"
    lo, hi = p.bounds if p.bounds is not None else (None, None)
    inc_lo, inc_hi = getattr(p, "inclusive_bounds", (True, True))
    if lo is not None and hi is not None:
        if inc_lo and inc_hi:
            return f"{kind} from {_fmt(lo)} to {_fmt(hi)}"
        low = f"from {_fmt(lo)}" if inc_lo else f"above {_fmt(lo)}"
        return f"{kind} {low} {'up to' if inc_hi else 'and below'} {_fmt(hi)}"
    if lo is not None:
        return f"{kind} {'≥' if inc_lo else '>'} {_fmt(lo)}"
    if hi is not None:
        return f"{kind} {'≤' if inc_hi else '<'} {_fmt(hi)}"
    return kind


def parse_value(p: param.Parameter, text: str) -> tuple[Any, str]:
    """(value, "") for text that ``p`` accepts, else (None, the message naming the setting and range)."""
    label = p.label or p.name
    text = (text or "").strip().replace("−", "-")
    want = allowed_text(p)
    if not text:
        return (None, "") if p.allow_None else (None, f"{label} needs a value: {want}")
    try:
        number = float(text)
    except ValueError:
        return None, f"{label} must be {want} (got {text!r})"
    if not math.isfinite(number):
        return None, f"{label} must be {want} (got {text})"
    if isinstance(p, param.Integer):
        if not number.is_integer():
            return None, f"{label} must be {want} (got {text})"
        number = int(number)
    lo, hi = p.bounds if p.bounds is not None else (None, None)
    inc_lo, inc_hi = getattr(p, "inclusive_bounds", (True, True))
    below = lo is not None and (number < lo or (number == lo and not inc_lo))
    above = hi is not None and (number > hi or (number == hi and not inc_hi))
    if below or above:
        return None, f"{label} must be {want} (got {text})"
    return number, ""


class NumberField:
    """A text field bound to one numeric parameter of ``obj`` (two-way, refusing invalid text)."""

    def __init__(self, obj: param.Parameterized, name: str, on_change: Any = None, **widget_kwargs: Any):
        self.obj, self.name, self.on_change = obj, name, on_change
        self.p = obj.param[name]
        self.error = ""  # the field's own message (its text was refused); "" when valid
        help_text = (self.p.doc + " · " if self.p.doc else "") + f"allowed: {allowed_text(self.p)}"
        self.widget = pn.ui.TextInput(label=self.p.label or name, value=self._text(), description=help_text,
                                      **widget_kwargs)
        self.widget.param.watch(self._on_text, "value")
        obj.param.watch(self._on_param, name)

    def _text(self) -> str:
        value = getattr(self.obj, self.name)
        return "" if value is None else _fmt(value)

    def set_text(self, text: str) -> str:
        """Apply typed (or linked) text; returns the message ("" when accepted)."""
        value, message = parse_value(self.p, text)
        self.error = message
        if not message and value != getattr(self.obj, self.name):
            try:
                setattr(self.obj, self.name, value)
            except ValueError as err:  # a rule of the parameter beyond type and bounds
                self.error = str(err)
        return self.error

    def _on_text(self, event: Any) -> None:
        self.set_text(event.new)
        if self.on_change is not None:
            self.on_change()  # the page re-checks every rule and marks the fields
        else:
            self.show("")

    def _on_param(self, event: Any) -> None:
        """The parameter changed elsewhere (a preset, a loaded run): show it, drop a stale message."""
        self.error = ""
        if self.widget.value != self._text():
            self.widget.value = self._text()

    def show(self, problem: str) -> None:
        """Mark the field: its own message first, else ``problem`` (a rule across settings)."""
        message = self.error or problem
        self.widget.error_state = bool(message)
        self.widget.helper_text = message


__all__ = ["NumberField", "allowed_text", "parse_value"]
