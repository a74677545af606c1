"""Tolerant decoding of the JSON text columns (``config_json``, ``info_json``, ``rows_json``).

One damaged row (a hand edit, a disk error, another tool writing the file) must not break
``hrm ls``, ``show``, ``compare`` or the dashboard for every other run: readers decode through
:func:`decode_json_object` / :func:`decode_json_list`, show the row as damaged, and go on.
No SQLAlchemy or pydantic here, so any reader (``core.registry.view`` included) may import it.
"""

from __future__ import annotations

import json
from typing import Any

DAMAGED_KEY = "_damaged"
"""Set in a decoded object that could not be read: its value says what was wrong."""


def _problem(text: object, exc: Exception | None, expected: str) -> str:
    shown = repr(text)[:40] if text is not None else "NULL"
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}" if exc else f"not a JSON {expected}"
    return f"damaged JSON {shown} ({reason})"


def decode_json_object(text: str | bytes | None, *, default: dict[str, Any] | None = None) -> tuple[dict[str, Any], str | None]:
    """``(object, None)``, or ``({}, problem)`` when ``text`` is not a JSON object.

    ``None`` or ``""`` is ``default`` (``{}``) without a problem: an empty column is not damage.
    """
    if text is None or text == "" or text == b"":
        return dict(default or {}), None
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        return {}, _problem(text, exc, "object")
    if not isinstance(value, dict):
        return {}, _problem(text, None, "object")
    return value, None


def decode_json_list(text: str | bytes | None) -> tuple[list[Any], str | None]:
    """``(list, None)``, or ``([], problem)`` when ``text`` is not a JSON array."""
    if text is None or text == "" or text == b"":
        return [], None
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        return [], _problem(text, exc, "array")
    if not isinstance(value, list):
        return [], _problem(text, None, "array")
    return value, None


def json_object_or_damaged(text: str | bytes | None) -> dict[str, Any]:
    """The decoded object, or ``{"_damaged": problem}`` so that displays can say which row is broken."""
    value, problem = decode_json_object(text)
    return {DAMAGED_KEY: problem} if problem else value
