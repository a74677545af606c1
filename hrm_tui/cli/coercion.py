"""Cheap option parsing for the values almost every ``hrm`` call has: a string, a whole number.

Typer (0.29) coerces every parameter through a pydantic ``TypeAdapter``; building the first one
imports pydantic, about a third of ``hrm ls --json``'s whole run. Here a ``str`` stays a ``str`` and
a valid in-range ``int``/``float`` is converted directly; anything else (a malformed or out-of-range
number, lists, choices, paths) goes to Typer's own coercion, so every error message is Typer's.

:func:`install` is called by hrm's command classes before they parse. It relies on Typer's
``_runtime_param`` hook; if a future Typer lacks it, nothing is installed and Typer parses as usual.
"""

from __future__ import annotations

import math
from typing import Any

try:
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # pragma: no cover - a Typer without the hook: parse the usual way
    RuntimeParam = None

_FLOAT_CHARS = frozenset("0123456789+-.eE")
_SIMPLE = (str, int, float, bool)

if RuntimeParam is not None:

    class DirectRuntimeParam(RuntimeParam):  # a frozen dataclass by inheritance (same fields)
        """Plain values converted here; the rest handed to the runtime param Typer would build."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            converted = _direct(self.annotation, value, self.parameter_info)
            if converted is not _UNHANDLED:
                return converted
            typer_param = build_runtime_param(param.type_descriptor)
            return typer_param._coerce_value(value, param=param, ctx=ctx)


_UNHANDLED = object()


def _direct(annotation: Any, value: Any, info: Any) -> Any:
    if isinstance(value, bool):
        return value if annotation is bool else _UNHANDLED
    if annotation is str:
        return value if isinstance(value, str) else _UNHANDLED
    if annotation == list[str]:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return list(value) if ok else _UNHANDLED
    if annotation is int:
        digits = value[1:] if isinstance(value, str) and value[:1] in ("+", "-") else value
        if isinstance(value, str) and 0 < len(digits) <= 18 and digits.isascii() and digits.isdigit():
            number = int(value)
        elif isinstance(value, int):
            number = value
        else:
            return _UNHANDLED
    elif annotation is float:
        if isinstance(value, str) and value and len(value) <= 40 and _FLOAT_CHARS.issuperset(value):
            try:
                number = float(value)
            except ValueError:
                return _UNHANDLED
        elif isinstance(value, (int, float)):
            number = float(value)
        else:
            return _UNHANDLED
        if not math.isfinite(number):
            return _UNHANDLED
    else:
        return _UNHANDLED
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if (low is not None and number < low) or (high is not None and number > high):
        return _UNHANDLED  # Typer says what is wrong (or clamps)
    if getattr(info, "min_open", False) or getattr(info, "max_open", False):
        return _UNHANDLED
    return number


def install(params) -> None:
    """Give plain str/int/float parameters the direct conversion (once per parameter)."""
    if RuntimeParam is None:
        return
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", False) is not None:
            continue
        simple = descriptor.annotation in _SIMPLE or descriptor.annotation == list[str]
        if simple and descriptor.file_annotation is None and not descriptor.is_path:
            param._runtime_param = DirectRuntimeParam(parameter_info=descriptor.parameter_info,
                                                      annotation=descriptor.annotation)
