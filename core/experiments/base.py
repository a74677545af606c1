"""The experiment API: the seam every catalog entry plugs into.

An experiment is a typed config (a pydantic model with defaults and bounds; the CLI options
and the TUI's new-run form are generated from it) plus a ``run(config, emit)`` function.
The run function computes; it never opens the registry, prints metrics or parses arguments.
Everything it wants recorded goes through the :class:`Emitter` it is handed.

Adding an experiment is one module that defines ``EXPERIMENT = Experiment(...)`` and one
line in :mod:`core.experiments` that registers it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

Variant = Literal["published", "corrected"]


class ExperimentConfig(BaseModel):
    """Fields every experiment has. Subclass it and add your own ``Field``s with bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: Variant = Field(
        "corrected",
        description="published: the code path behind the report, quirks included; corrected: the fixes",
    )
    seed: int = Field(42, ge=0, le=2**31 - 1, description="random seed")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu or cuda[:N]")

    @model_validator(mode="after")
    def _local_paths_exist(self) -> ExperimentConfig:
        """A missing data file or model path is the user's mistake: refuse it before anything is queued."""
        import os

        for name in ("data_dir", "data_file", "model"):
            value = getattr(self, name, None)
            if not isinstance(value, str) or not value:
                continue
            local = name != "model" or value.startswith(("/", "./", "../", "~")) or value.endswith(".gguf")
            if local and not os.path.exists(os.path.expanduser(value)):
                raise ValueError(f"--{name.replace('_', '-')}: {value!r} does not exist")
        return self


class Emitter(Protocol):
    """Where a running experiment sends what it wants recorded.

    ``stage`` is 0 for unstaged experiments; staged ones number their stages from 1 and
    announce each with :meth:`stage`. Metric values are plain floats (NaN allowed).
    """

    def info(self, **fields: Any) -> None:
        """Run metadata: ``params``, ``trainable_params``, ``data_source``, ``quirks`` (list of ids)..."""

    def stage(self, stage: int, name: str, *, epochs: int | None = None) -> None:
        """A new stage starts (``epochs`` is its maximum, for progress bars)."""

    def epoch(
        self, epoch: int, metrics: Mapping[str, float], *, stage: int = 0, total: int | None = None
    ) -> None:
        """Per-epoch metrics (``train_loss``, ``val_loss``, ``val_ppl``, ...). ``total``: max epochs."""

    def layers(
        self, epoch: int | None, per_layer: Mapping[int, Mapping[str, float]], *, stage: int = 0
    ) -> None:
        """Per-layer metrics of one epoch (or of an analysis when ``epoch`` is None): {layer: {key: value}}."""

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], *, stage: int = 0) -> None:
        """A structured analysis table (threshold sweep, difficulty classes, early-exit table...)."""

    def summary(self, metrics: Mapping[str, float], *, stage: int = 0) -> None:
        """Headline numbers of the run or of a stage (``best_val_ppl``, ``best_epoch``, ...)."""

    def log(self, message: str) -> None:
        """A free-form line for the run's log."""


@dataclass(frozen=True)
class Experiment:
    """A catalog entry: name, what it does, its config type and its run function."""

    name: str
    description: str
    config_cls: type[ExperimentConfig]
    run: Callable[[Any, Emitter], None]
    report: str | None = None
    """The seed report this experiment reproduces (e.g. ``"004"``), if any."""
    headline: str = "best_val_ppl"
    """The summary metric shown as the run's headline in lists and comparisons."""
    lower_is_better: bool = True

    def make_config(self, **values: Any) -> ExperimentConfig:
        """Validate ``values`` into this experiment's config (raises pydantic.ValidationError)."""
        return self.config_cls(**values)


@dataclass
class RecordingEmitter:
    """An in-memory Emitter for tests and notebooks: every call becomes a dict in ``events``."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def info(self, **fields: Any) -> None:
        self.events.append({"t": "info", "fields": fields})

    def stage(self, stage: int, name: str, *, epochs: int | None = None) -> None:
        self.events.append({"t": "stage", "stage": stage, "name": name, "epochs": epochs})

    def epoch(self, epoch, metrics, *, stage=0, total=None) -> None:
        self.events.append({"t": "epoch", "epoch": epoch, "stage": stage, "total": total, "metrics": dict(metrics)})

    def layers(self, epoch, per_layer, *, stage=0) -> None:
        rows = {int(k): dict(v) for k, v in per_layer.items()}
        self.events.append({"t": "layers", "epoch": epoch, "stage": stage, "layers": rows})

    def table(self, name, rows, *, stage=0) -> None:
        self.events.append({"t": "table", "name": name, "stage": stage, "rows": [dict(r) for r in rows]})

    def summary(self, metrics, *, stage=0) -> None:
        self.events.append({"t": "summary", "stage": stage, "metrics": dict(metrics)})

    def log(self, message: str) -> None:
        self.events.append({"t": "log", "message": message})

    # Convenience accessors for tests.
    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["t"] == kind]

    def summary_metrics(self, stage: int = 0) -> dict[str, float]:
        merged: dict[str, float] = {}
        for e in self.of("summary"):
            if e["stage"] == stage:
                merged.update(e["metrics"])
        return merged

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        return {e["name"]: e["rows"] for e in self.of("table")}

    def infos(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for e in self.of("info"):
            merged.update(e["fields"])
        return merged


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch the way the original scripts' ``set_seed`` did."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible (the scheduler sets CUDA_VISIBLE_DEVICES), else ``cpu``."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
