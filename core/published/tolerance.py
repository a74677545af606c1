"""Tolerance classes: what ``hrm compare --report … --check`` checks for one published number.

A number's class comes from its published file (row ``classes``, then column, table, file; former names
through :data:`~core.published.CLASS_ALIASES`); its kind (ppl, pct, count, …) picks the band. The
classes (see :mod:`core.published` for the file format):

- ``digits``: ours rounds to the printed number (CPU runs of the numbers the published variant
  reproduces bit for bit); a run that did not run on the CPU is checked ``close`` instead;
- ``close``: ±1 % or ±1 in the last printed digit for PPL, 0.5 points for percentages, counts printed equal;
- ``rule``: ours equals what the rule (a ``rule`` ref) gives on the run's own data; the published
  number is shown, not checked;
- ``loose``: a band per kind, narrowed or widened by the file; ``chaotic``: ordering only; ``info``: never.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from core.published import (
    CLASS_ALIASES, CLOSE_DEFAULT, CLOSE_TOLERANCE, DIGITS_TOLERANCE, LOOSE_DEFAULT, LOOSE_TOLERANCE, Printed,
)

__all__ = ["ran_on_cpu", "resolve_class", "resolve_kind", "resolve_tolerance", "tolerance_text", "within"]


def resolve_class(doc, table, col, row) -> str:
    cls = row.get("classes", {}).get(col["name"]) or col.get("class") or table.get("class") or doc["class"]
    return CLASS_ALIASES.get(cls, cls)


def ran_on_cpu(rec: Mapping[str, Any] | None) -> bool:
    """Whether a run record's experiment ran on the CPU (the device it reported, else the one it asked for)."""
    if rec is None:
        return False
    info = rec.get("info") or {}
    device = info.get("device") or (rec.get("config") or {}).get("device") or info.get("requested_device") or "auto"
    if device == "auto":
        return not info.get("cuda_visible_devices")
    return str(device) == "cpu"


def resolve_kind(col, row) -> str:
    return row.get("kinds", {}).get(col["name"]) or col["kind"]


def resolve_tolerance(doc, table, col, row, cls: str, kind: str) -> dict[str, float]:
    if cls == "digits":
        return dict(DIGITS_TOLERANCE)
    if cls == "rule":
        return {"digits": 0}
    if cls == "close":
        tol = dict(CLOSE_TOLERANCE.get(kind, CLOSE_DEFAULT))
    elif cls == "loose":
        tol = dict(LOOSE_TOLERANCE.get(kind, LOOSE_DEFAULT))
        for level in (doc.get("tolerance", {}), table.get("tolerance", {})):
            if kind in level:
                tol = dict(level[kind])
    else:
        return {}
    if "tol" in col:
        tol = dict(col["tol"])
    if col["name"] in row.get("tol", {}):
        tol = dict(row["tol"][col["name"]])
    return tol


def tolerance_text(cls: str, tol: Mapping[str, float], pub: Printed) -> str:
    if cls == "chaotic":
        return "ordering only"
    if cls == "info":
        return "not checked"
    if cls == "digits":
        return "to the printed digit"
    if cls == "rule":
        return "= the rule on our own data (published not checked)"
    parts = []
    if "rel" in tol:
        parts.append(f"±{tol['rel'] * 100:g}%")
    if "abs" in tol:
        parts.append(f"±{tol['abs']:g}{' pt' if pub.suffix == '%' else ''}")
    if "digits" in tol:
        parts.append("printed equal" if tol["digits"] == 0 else f"±{tol['digits']:g} in the last digit")
    return " or ".join(parts)


def within(ours_u: float, pub: Printed, tol: Mapping[str, float]) -> bool:
    """Our value (in the printed unit) against the published one: any of rel / abs / digits suffices."""
    diff = abs(ours_u - pub.value)
    eps = 1e-9 * max(1.0, abs(pub.value))
    if "abs" in tol and diff <= tol["abs"] + eps:
        return True
    if "rel" in tol and diff <= tol["rel"] * abs(pub.value) + eps:
        return True
    if "digits" in tol:
        if tol["digits"] == 0:
            factor = 10 ** pub.decimals
            if abs(round(ours_u * factor) - pub.value * factor) < 1e-6:
                return True
            if pub.scale != 1.0 and abs(math.floor(ours_u * factor + 1e-9) - pub.value * factor) < 1e-6:
                return True  # "69K" for 69,504: the scripts truncated thousands
        elif diff <= tol["digits"] * pub.unit + eps:
            return True
    return False
