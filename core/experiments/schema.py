"""Describe an experiment's config for front ends: names, types, defaults, bounds, choices."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from core.experiments.base import Experiment


def unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def bounds_text(field: FieldInfo) -> str:
    """``0 < x < 1``-style text from the field's annotated-types constraints ('' when unbounded)."""
    low = high = ""
    for meta in field.metadata:
        if isinstance(meta, Ge):
            low = f"{meta.ge} ≤ "
        elif isinstance(meta, Gt):
            low = f"{meta.gt} < "
        elif isinstance(meta, Le):
            high = f" ≤ {meta.le}"
        elif isinstance(meta, Lt):
            high = f" < {meta.lt}"
    return f"{low}x{high}" if (low or high) else ""


def field_choices(field: FieldInfo) -> list[str] | None:
    annotation = unwrap_optional(field.annotation)
    if typing.get_origin(annotation) is Literal:
        return [str(v) for v in typing.get_args(annotation)]
    return None


def type_name(field: FieldInfo) -> str:
    annotation = unwrap_optional(field.annotation)
    if typing.get_origin(annotation) is Literal:
        return "choice"
    if typing.get_origin(annotation) in (list, tuple):
        inner = typing.get_args(annotation)
        return f"list[{getattr(inner[0], '__name__', 'str')}]" if inner else "list"
    return getattr(annotation, "__name__", str(annotation))


def describe(experiment: Experiment) -> dict[str, Any]:
    """The catalog entry as JSON-ready data (``hrm experiments --json``, the dashboard's form)."""
    params = []
    for name, field in experiment.config_cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        params.append({
            "name": name,
            "type": type_name(field),
            "default": list(default) if isinstance(default, tuple) else default,
            "bounds": bounds_text(field) or None,
            "choices": field_choices(field),
            "description": field.description or "",
        })
    return {
        "name": experiment.name,
        "description": experiment.description,
        "report": experiment.report,
        "headline": experiment.headline,
        "parameters": params,
    }
