"""``hrm run X`` without the catalog or SQLAlchemy: one experiment's config, checked as ``core.api.submit`` checks it.

Importing the catalog loads every experiment module, and ``core.api`` loads SQLAlchemy and the
SQLModel tables; together they are most of a ``hrm run`` process. A built-in experiment lives in one
module of ``core.experiments`` (its name with ``-`` as ``_``), so only that module is imported here,
and :func:`checked_config` validates and preflights exactly as ``core.api.submit`` does, raising the
same :class:`~core.errors.UserError` lines and exit codes (``tests/test_fast_submit.py`` compares them).
The row itself is written by :mod:`core.registry.fastwrite`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from core import experiments
from core.errors import UserError
from core.experiments.base import Experiment, ExperimentConfig, Unavailable


def builtin_experiment(name: str) -> Experiment | None:
    """The built-in experiment called ``name``, importing its module alone; None for any other name
    (a plugin, a typo: the catalog answers those). Plugins cannot take a built-in's name."""
    stem = name.replace("-", "_")
    for module_name in experiments._MODULES:
        tail = module_name.rsplit(".", 1)[-1]
        if tail != stem and not tail.startswith(stem + "_"):
            continue
        experiment = getattr(importlib.import_module(module_name), "EXPERIMENT", None)
        if isinstance(experiment, Experiment) and experiment.name == name:
            return experiment
    return None


def checked_config(experiment: Experiment, values: Mapping[str, Any]) -> ExperimentConfig:
    """The validated, preflighted config: ``core.api.validate_config`` then ``config.preflight()``,
    with the same one-line errors (2 for invalid values, 1 for what this machine lacks)."""
    from pydantic import ValidationError

    try:
        config = experiment.make_config(**dict(values))
    except ValidationError as exc:
        from core.api import format_validation_error  # the error path may pay for core.api

        raise UserError(f"invalid config for {experiment.name}: {format_validation_error(exc)}", 2) from None
    try:
        config.check_requirements()
        config.preflight()
    except Unavailable as exc:
        raise UserError(f"{experiment.name}: {exc}", 1) from None
    return config
