"""The experiment catalog: the one place where a name maps to an :class:`Experiment`.

Built-in experiments are one line each in ``_MODULES`` (the module defines ``EXPERIMENT``);
installed packages add theirs through the ``hrm.experiments`` entry point group (see
:mod:`core.plugins`). The CLI, the scheduler, the worker and the dashboard all resolve names here,
so a run queued from one environment finds its experiment in a worker of the same environment.
Modules are imported lazily and keep torch/transformers imports inside their run function, so
that listing the catalog or validating a config stays fast.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from core.experiments.base import Emitter, Experiment, ExperimentConfig, RecordingEmitter
from core.plugins import EXPERIMENT_GROUP, PluginProblem, load_group

__all__ = ["Emitter", "Experiment", "ExperimentConfig", "RecordingEmitter", "catalog", "get_experiment",
           "UnknownExperiment", "plugin_problems", "origin"]

_MODULES: list[str] = [
    "core.experiments.smoke",
    "core.experiments.lpt",
    "core.experiments.irt",
    "core.experiments.infini_hrm",
    "core.experiments.hrm",
    "core.experiments.confidence_routing",
    "core.experiments.lpt_routing",
    "core.experiments.saturation",
    "core.experiments.hard_tokens",
    "core.experiments.cascade",
    "core.experiments.layer_freezing",
    "core.experiments.layer_contribution",
    "core.experiments.early_exit",
    "core.experiments.greedy_layerwise",
    "core.experiments.progressive",
    "core.experiments.exec_cmd",
]

_PROBLEMS: list[PluginProblem] = []
_ORIGINS: dict[str, str] = {}


class UnknownExperiment(KeyError):
    """Raised for a name that is not in the catalog."""

    def __str__(self) -> str:
        name = self.args[0]
        broken = [p for p in plugin_problems() if p.name == name]
        if broken:
            return f"experiment {name!r} is not available: {broken[0].line()}"
        names = ", ".join(sorted(catalog()))
        return f"unknown experiment {name!r} (known: {names})"


def _check_plugin(name: str, obj: Any) -> str | None:
    if not isinstance(obj, Experiment):
        return f"exports a {type(obj).__name__}, not a core.experiments.base.Experiment; skipped"
    if obj.name != name:
        return f"the entry point is named {name!r} but the experiment calls itself {obj.name!r}; skipped"
    if not (isinstance(obj.config_cls, type) and issubclass(obj.config_cls, ExperimentConfig)):
        return "its config_cls is not an ExperimentConfig subclass; skipped"
    return None


@cache
def catalog() -> dict[str, Experiment]:
    """All experiments by name: the built-ins in registration order, then installed plugins by name."""
    experiments: dict[str, Experiment] = {}
    origins: dict[str, str] = {}
    for module_name in _MODULES:
        experiment = importlib.import_module(module_name).EXPERIMENT
        if experiment.name in experiments:
            raise RuntimeError(f"experiment name {experiment.name!r} registered twice")
        experiments[experiment.name] = experiment
        origins[experiment.name] = "built-in"
    plugins, problems = load_group(EXPERIMENT_GROUP, _check_plugin, reserved=set(experiments))
    for plugin in plugins:
        experiments[plugin.name] = plugin.obj
        origins[plugin.name] = plugin.origin
    _PROBLEMS[:] = problems
    _ORIGINS.clear()
    _ORIGINS.update(origins)
    return experiments


def plugin_problems() -> list[PluginProblem]:
    """The ``hrm.experiments`` entry points that were skipped, and why (empty when all loaded)."""
    catalog()
    return list(_PROBLEMS)


def origin(name: str) -> str:
    """``built-in`` or ``plugin <distribution> (<module:attr>)`` for a catalog name."""
    catalog()
    return _ORIGINS.get(name, "unknown")


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; raises :class:`UnknownExperiment`."""
    try:
        return catalog()[name]
    except KeyError:
        raise UnknownExperiment(name) from None
