"""Typer options generated from an experiment's pydantic config.

``hrm run cascade --hard-ratio 0.3`` exists because ``CascadeConfig`` has ``hard_ratio``: each
field becomes an option with its default, its bounds in the help text and, for ``Literal``
fields, a fixed set of choices. Validation itself stays with pydantic (one source of truth for
the CLI and the dashboard's form).
"""

from __future__ import annotations

import enum
import inspect
import re
import typing
from typing import Annotated, Any, Literal

import typer
from pydantic.fields import FieldInfo

from core.facade import ExperimentConfig
from core.experiments.schema import bounds_text, field_choices, unwrap_optional


def cli_type(field: FieldInfo) -> Any:
    """The Python type Typer should parse this field as."""
    annotation = unwrap_optional(field.annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return str
    if origin in (list, tuple):
        inner = typing.get_args(annotation)[0] if typing.get_args(annotation) else str
        return list[inner]
    if annotation in (int, float, bool, str):
        return annotation
    return str


def option_parameters(config_cls: type[ExperimentConfig]) -> list[inspect.Parameter]:
    """One keyword-only parameter per config field, annotated for Typer."""
    params = []
    for name, field in config_cls.model_fields.items():
        help_text = field.description or ""
        bounds = bounds_text(field)
        if bounds:
            help_text = f"{help_text} [{bounds}]"
        choices = field_choices(field)
        kwargs: dict[str, Any] = {"help": escape_markup(help_text), "show_default": True, "rich_help_panel": "Experiment"}
        flag = "--" + name.replace("_", "-")
        py_type = choice_enum(name, choices) if choices else cli_type(field)
        decls = [f"{flag}/--no-{name.replace('_', '-')}"] if py_type is bool else [flag]
        default = field.get_default(call_default_factory=True)
        if isinstance(default, tuple):
            default = list(default)
        if choices and default is not None:
            default = py_type(str(default))
        params.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default,
            annotation=Annotated[py_type, typer.Option(*decls, **kwargs)],
        ))
    return params


_MARKUP_TAG = re.compile(r"(?<!\\)\[(?=[a-zA-Z#/@])")


def escape_markup(text: str) -> str:
    """Keep ``[like this]`` in a help text visible: Rich would read it as a style tag and drop it."""
    return _MARKUP_TAG.sub(r"\\[", text)


def choice_enum(name: str, choices: list[str]) -> type[enum.Enum]:
    """Typer shows an Enum as a fixed choice list: ``{published|corrected}``."""
    return enum.Enum(f"{name}_choices", {c: c for c in choices}, type=str)


def plain_values(values: dict[str, Any]) -> dict[str, Any]:
    """Option values back to plain Python (Enum choices → their strings) for pydantic."""
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in values.items()}


def with_signature(func, params: list[inspect.Parameter]):
    """Give ``func(**kwargs)`` an explicit signature so Typer builds options from ``params``."""
    func.__signature__ = inspect.Signature(params)
    func.__annotations__ = {p.name: p.annotation for p in params}
    return func
