"""The runtime every training loop needs, below both the experiments and the training code.

- :class:`Emitter`: where a running experiment sends what it wants recorded (the registry's
  ``RegistryEmitter`` in a worker, :class:`RecordingEmitter` in tests and notebooks).
- :func:`seed_everything`: python, numpy and torch seeded the way the original scripts did.
- :func:`resolve_device`: ``auto`` → ``cuda`` when a GPU is visible, else ``cpu``.
- :func:`torch_threads`: torch's intra-op thread count for a block, restored afterwards.

It lives here (not in :mod:`core.experiments.base`, which re-exports it) so that
``core.training`` and ``core.models`` never import upward from the experiment catalog.
torch and numpy are imported inside the functions: importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Emitter", "RecordingEmitter", "resolve_device", "seed_everything", "torch_threads"]


class Emitter(Protocol):
    """Where a running experiment sends what it wants recorded.

    ``stage`` is 0 for unstaged experiments; staged ones number their stages from 1 and
    announce each with :meth:`stage`. Metric values are plain floats (NaN allowed).
    """

    def info(self, **fields: Any) -> None:
        """Run metadata: ``params``, ``trainable_params``, ``data_source``, ``quirks`` (list of ids), ``progress``..."""

    def stage(self, stage: int, name: str, *, epochs: int | None = None) -> None:
        """A new stage starts (``epochs`` is its maximum, for progress bars)."""

    def epoch(
        self, epoch: int, metrics: Mapping[str, float], *, stage: int = 0, total: int | None = None,
        layers: Mapping[int, Mapping[str, float]] | None = None,
    ) -> None:
        """Per-epoch metrics (``train_loss``, ``val_loss``, ``val_ppl``, ...). ``total``: max epochs.

        ``layers``: the same epoch's per-layer metrics {layer: {key: value}}, recorded with it as one
        event (one transaction in the registry: never seen apart, one commit per epoch).
        """

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


@dataclass
class RecordingEmitter:
    """An in-memory Emitter for tests and notebooks: every call becomes a dict in ``events``."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def info(self, **fields: Any) -> None:
        self.events.append({"t": "info", "fields": fields})

    def stage(self, stage: int, name: str, *, epochs: int | None = None) -> None:
        self.events.append({"t": "stage", "stage": stage, "name": name, "epochs": epochs})

    def epoch(self, epoch, metrics, *, stage=0, total=None, layers=None) -> None:
        self.events.append({"t": "epoch", "epoch": epoch, "stage": stage, "total": total, "metrics": dict(metrics)})
        if layers is not None:  # recorded as the separate layers event it replaces, so tests read it the same way
            self.layers(epoch, layers, stage=stage)

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


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to ``n`` and restore the previous count after.

    ``0`` or ``None`` leaves torch's setting alone. The small char models run fastest (and the
    report's digits were produced) at one or two threads; a worker applies a run's ``cpu_threads``
    once around the whole experiment, and the training loops apply it again (a no-op when equal)
    so a direct ``EXPERIMENT.run(config, emit)`` from a notebook behaves the same.
    """
    import torch

    previous = torch.get_num_threads()
    if n and n > 0 and n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
