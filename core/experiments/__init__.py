"""The experiment catalog: the one place where a name maps to an :class:`Experiment`.

Registering an experiment is one line in ``_MODULES``: the module must define ``EXPERIMENT``.
Modules are imported lazily, and must keep torch/transformers imports inside their run
function, so that listing the catalog or validating a config stays fast.
"""

from __future__ import annotations

import importlib
from functools import cache

from core.experiments.base import Emitter, Experiment, ExperimentConfig, RecordingEmitter

__all__ = ["Emitter", "Experiment", "ExperimentConfig", "RecordingEmitter", "catalog", "get_experiment", "UnknownExperiment"]

_MODULES: list[str] = [
    "core.experiments.smoke",
    # -- registrations: one line per experiment module --
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
]


class UnknownExperiment(KeyError):
    """Raised for a name that is not in the catalog."""

    def __str__(self) -> str:
        names = ", ".join(sorted(catalog()))
        return f"unknown experiment {self.args[0]!r} (known: {names})"


@cache
def catalog() -> dict[str, Experiment]:
    """All registered experiments by name, in registration order."""
    experiments: dict[str, Experiment] = {}
    for module_name in _MODULES:
        experiment = importlib.import_module(module_name).EXPERIMENT
        if experiment.name in experiments:
            raise RuntimeError(f"experiment name {experiment.name!r} registered twice")
        experiments[experiment.name] = experiment
    return experiments


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; raises :class:`UnknownExperiment`."""
    try:
        return catalog()[name]
    except KeyError:
        raise UnknownExperiment(name) from None
