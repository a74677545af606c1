"""An :class:`~core.experiments.base.Emitter` that writes each event straight into the registry.

Every call is one committed transaction, so a row is durable the moment ``emit`` returns:
a SIGKILL of the worker (or of the scheduler) loses nothing that was emitted before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.registry import store
from core.registry.db import Database


class RegistryEmitter:
    """Emitter bound to one run of one registry."""

    def __init__(self, db: Database, run_id: int) -> None:
        self.db = db
        self.run_id = run_id

    def info(self, **fields: Any) -> None:
        store.merge_info(self.db, self.run_id, fields)

    def stage(self, stage: int, name: str, *, epochs: int | None = None) -> None:
        store.set_stage(self.db, self.run_id, stage, name, epochs)

    def epoch(self, epoch: int, metrics: Mapping[str, float], *, stage: int = 0, total: int | None = None) -> None:
        store.append_metrics(self.db, self.run_id, "epoch", metrics, stage=stage, epoch=epoch, total=total)

    def layers(self, epoch: int | None, per_layer: Mapping[int, Mapping[str, float]], *, stage: int = 0) -> None:
        store.append_metrics(self.db, self.run_id, "layer", per_layer, stage=stage, epoch=epoch)

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], *, stage: int = 0) -> None:
        store.add_table(self.db, self.run_id, name, rows, stage=stage)

    def summary(self, metrics: Mapping[str, float], *, stage: int = 0) -> None:
        store.append_metrics(self.db, self.run_id, "summary", metrics, stage=stage)

    def log(self, message: str) -> None:
        store.add_log(self.db, self.run_id, message)
