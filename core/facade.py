"""The rest of the façade: what the front ends need beside :mod:`core.api`, loaded on first use.

Two kinds of things live here rather than in ``core.api``:

* the light paths, which must not pay for ``core.api`` (SQLAlchemy, pydantic, the catalog) at start-up:
  ``hrm ls --json`` / ``show --json`` and the dashboard's first page read through ``fastread``,
  ``hrm run`` queues through ``fastsubmit`` and ``fastwrite``, ``hrm models`` fetches through
  ``models_fetch``, and an error is explained by ``missing_extra``;
* the workflows built on ``core.api`` (reproduce, report, sweep, search): ``core.api`` cannot import
  them without an import cycle, so they are reached from here, above it.

Importing this module costs nothing: each name is imported when it is first asked for (PEP 562), by
an explicit import statement, so the import graph (``lint-imports``) still sees every edge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core import models_fetch
    from core.experiments import ExperimentConfig, UnknownExperiment, catalog, get_experiment, plugin_problems
    from core.extras import missing_extra
    from core.fastsubmit import builtin_experiment, checked_config
    from core.registry import fastread, fastwrite
    from core.report import write_report
    from core.reproduce import compare_report, plan_reproduce, queue_reproduce, reproduce_tag
    from core.run_gc import human_bytes
    from core.sweep import plan_sweep, queue_sweep
    from core.sweep_search import (
        Event,
        parse_objective,
        plan_search,
        rank_records,
        ranked_trials,
        recorded_objective,
        run_search,
    )

_HOMES = {
    # standard-library readers and writers of a SQLite registry (no SQLAlchemy)
    "fastread": "fastread", "fastwrite": "fastwrite",
    # one experiment module and its config, without the catalog or core.api
    "builtin_experiment": "fastsubmit", "checked_config": "fastsubmit",
    # the catalog itself
    "catalog": "experiments", "get_experiment": "experiments", "plugin_problems": "experiments",
    "UnknownExperiment": "experiments", "ExperimentConfig": "experiments",
    "models_fetch": "models_fetch", "missing_extra": "extras", "human_bytes": "run_gc",
    # the workflows above core.api
    "compare_report": "reproduce", "plan_reproduce": "reproduce", "queue_reproduce": "reproduce",
    "reproduce_tag": "reproduce", "write_report": "report", "plan_sweep": "sweep", "queue_sweep": "sweep",
    "Event": "sweep_search", "parse_objective": "sweep_search", "plan_search": "sweep_search",
    "rank_records": "sweep_search", "ranked_trials": "sweep_search", "recorded_objective": "sweep_search",
    "run_search": "sweep_search",
}

__all__ = sorted(_HOMES)


def _home(kind: str) -> Any:
    """The module behind ``kind``, imported now (one explicit statement per module, for the import graph)."""
    if kind == "fastread":
        from core.registry import fastread as module
    elif kind == "fastwrite":
        from core.registry import fastwrite as module
    elif kind == "fastsubmit":
        from core import fastsubmit as module
    elif kind == "experiments":
        from core import experiments as module
    elif kind == "models_fetch":
        from core import models_fetch as module
    elif kind == "extras":
        from core import extras as module
    elif kind == "run_gc":
        from core import run_gc as module
    elif kind == "reproduce":
        from core import reproduce as module
    elif kind == "report":
        from core import report as module
    elif kind == "sweep":
        from core import sweep as module
    else:
        from core import sweep_search as module
    return module


def __getattr__(name: str) -> Any:
    kind = _HOMES.get(name)
    if kind is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _home(kind)
    return module if kind == name else getattr(module, name)  # not cached: a patched name is seen
