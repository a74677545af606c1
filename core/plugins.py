"""Experiments and reports from installed packages: entry point groups ``hrm.experiments`` and ``hrm.reports``.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."hrm.experiments"]
    myexp = "mypkg.exp:EXPERIMENT"          # an core.experiments.base.Experiment named "myexp"
    [project.entry-points."hrm.reports"]
    mylab = "mypkg.exp:REPORT"              # a published-numbers document (dict, or path to its JSON)

and after ``pip install`` the CLI, the scheduler, the worker and the dashboard all see it, because
they all resolve names through :func:`core.experiments.catalog` and :func:`core.published.load`,
which call :func:`load_group` here (reports through :func:`core.published.report_plugins`: the
published package owns every published-numbers document, and this module never imports it). A
plugin that fails to import, exports the wrong kind of object or clashes with a built-in is skipped
and described by one :class:`PluginProblem`; it never breaks the rest of the catalog.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPERIMENT_GROUP = "hrm.experiments"
REPORT_GROUP = "hrm.reports"


@dataclass(frozen=True)
class PluginProblem:
    """Why one entry point was skipped, in words a user can act on."""

    group: str
    name: str
    target: str
    distribution: str | None
    message: str

    def line(self) -> str:
        """One line: ``plugin experiment 'x' (mypkg.exp:EXPERIMENT from mypkg 0.1): failed to import: ...``."""
        kind = "experiment" if self.group == EXPERIMENT_GROUP else "report"
        origin = f"{self.target} from {self.distribution}" if self.distribution else self.target
        return f"plugin {kind} {self.name!r} ({origin}): {self.message}"


@dataclass(frozen=True)
class Plugin:
    """One entry point that loaded: its name, where it came from and the object it exports."""

    group: str
    name: str
    target: str
    distribution: str | None
    obj: Any

    @property
    def origin(self) -> str:
        return f"plugin {self.distribution or '?'} ({self.target})"


def _distribution(entry_point: Any) -> str | None:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None
    return f"{dist.metadata['Name']} {dist.version}"


def entry_points(group: str) -> list[Any]:
    """The group's entry points, one per (name, target), sorted by name (stable across runs).

    ``HRM_NO_PLUGINS=1`` disables discovery (a way out when a plugin misbehaves at import).
    """
    if os.environ.get("HRM_NO_PLUGINS"):
        return []
    from importlib.metadata import entry_points as _all

    unique = {(ep.name, ep.value): ep for ep in _all(group=group)}
    return [unique[key] for key in sorted(unique)]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_group(group: str, check: Callable[[str, Any], str | None], *, reserved: set[str] = frozenset()
               ) -> tuple[list[Plugin], list[PluginProblem]]:
    """Import every entry point of ``group``; ``check(name, obj)`` returns a problem message or None.

    Names in ``reserved`` (the built-ins) and names already taken by an earlier plugin are refused.
    """
    loaded: list[Plugin] = []
    problems: list[PluginProblem] = []
    taken: dict[str, str] = {}
    for ep in entry_points(group):
        dist = _distribution(ep)

        def problem(message: str, ep=ep, dist=dist) -> None:
            problems.append(PluginProblem(group, ep.name, ep.value, dist, message))

        if ep.name in reserved:
            problem(f"clashes with the built-in {ep.name!r}; skipped")
            continue
        if ep.name in taken:
            problem(f"name already provided by {taken[ep.name]}; skipped")
            continue
        try:
            obj = ep.load()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin must not break the catalog
            problem(f"failed to import: {first_line(exc)}")
            continue
        message = check(ep.name, obj)
        if message:
            problem(message)
            continue
        taken[ep.name] = dist or ep.value
        loaded.append(Plugin(group, ep.name, ep.value, dist, obj))
    return loaded, problems


# --- report plugins -----------------------------------------------------------------------------

def report_document(obj: Any) -> dict[str, Any]:
    """What a ``hrm.reports`` entry point exports, as a published-numbers document.

    Accepted: the document itself (a dict), a path or ``importlib.resources`` file of its JSON, or a
    callable returning either (so a plugin can build its document lazily).
    """
    if callable(obj) and not isinstance(obj, (dict, str, Path)) and not hasattr(obj, "read_text"):
        obj = obj()
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, (str, Path)):
        obj = Path(obj)
    if hasattr(obj, "read_text"):
        doc = json.loads(obj.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("the report's JSON is not an object")
        return doc
    raise TypeError(f"expected a dict, a JSON path or a callable, got {type(obj).__name__}")


def schema_problems(doc: Any, schema: dict[str, Any]) -> list[str]:
    """JSON-schema errors of ``doc`` (``jsonschema`` when installed, else the required top-level keys)."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    try:
        import jsonschema
    except ImportError:
        missing = [key for key in schema.get("required", []) if key not in doc]
        return [f"missing {', '.join(missing)}"] if missing else []
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    return [f"{'/'.join(str(p) for p in e.path) or 'document'}: {e.message}" for e in errors[:1]]
