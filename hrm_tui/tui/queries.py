"""The dashboard's own reads: lean, indexed, SQLAlchemy Core against the registry's tables.

``store.list_runs`` returns full ``Run`` models (``stderr_tail`` included) and
``api.list_records`` loads every run's latest metrics; for a list of 10,000 runs the dashboard
wants less: the columns it shows, and one latest value (``val_ppl``'s minimum) for runs whose
headline is not written yet. Everything here is read-only and safe to call from a thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from core.registry.db import Database
from core.registry.models import LatestMetric, Metric, Run, RunTag

RUN = Run.__table__
METRIC = Metric.__table__
LATEST = LatestMetric.__table__
TAG = RunTag.__table__

FALLBACK_KEY = "val_ppl"
"""While a run trains, ``best_val_ppl`` is not written yet: the list shows ``val_ppl``'s minimum."""

_COLUMNS = (
    RUN.c.id, RUN.c.experiment, RUN.c.variant, RUN.c.config_json, RUN.c.status, RUN.c.priority,
    RUN.c.created_at, RUN.c.updated_at, RUN.c.started_at, RUN.c.finished_at, RUN.c.host, RUN.c.pid, RUN.c.gpu,
    RUN.c.cancel_requested, RUN.c.stage, RUN.c.stage_name, RUN.c.epoch, RUN.c.total_epochs,
    RUN.c.headline_key, RUN.c.headline_value, RUN.c.retry_of,
)


@dataclass(slots=True)
class RunRow:
    """One line of the runs table: what the list shows, filters and sorts on."""

    id: int
    experiment: str
    variant: str
    config: dict[str, Any]
    status: str
    priority: int
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    host: str | None
    pid: int | None
    gpu: str | None
    cancel_requested: bool
    stage: int
    stage_name: str | None
    epoch: int
    total_epochs: int | None
    headline_key: str | None
    headline_value: float | None
    retry_of: int | None
    fallback: float | None = None
    """``val_ppl``'s minimum so far (only read when ``headline_value`` is empty)."""
    tags: list[str] = field(default_factory=list)

    @property
    def headline(self) -> float | None:
        """The run's headline, as ``render.headline_value`` computes it for a full record."""
        if self.headline_value is None and self.headline_key == "best_val_ppl":
            return self.fallback
        return self.headline_value

    def elapsed(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or now) - self.started_at

    @property
    def progress(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_name": self.stage_name, "epoch": self.epoch,
                "total_epochs": self.total_epochs}


def run_rows(
    db: Database, *, updated_since: float | None = None, ids: Sequence[int] | None = None, limit: int | None = None
) -> list[RunRow]:
    """Runs (newest first) changed after ``updated_since``, with their tags and headline fallback."""
    query = select(*_COLUMNS).order_by(RUN.c.id.desc())
    if updated_since is not None:
        query = query.where(RUN.c.updated_at > updated_since)
    if ids is not None:
        query = query.where(RUN.c.id.in_(list(ids)))
    if limit is not None:
        query = query.limit(limit)
    with db.read() as conn:
        rows = [_row(r) for r in conn.execute(query)]
        if not rows:
            return rows
        everything = updated_since is None and ids is None and limit is None
        subset = None if everything else [r.id for r in rows]
        tags = _tags(conn, subset)
        fallback = _fallback(conn, [r.id for r in rows if r.headline_value is None] if subset is not None else None)
    for row in rows:
        row.tags = tags.get(row.id, [])
        row.fallback = fallback.get(row.id)
    return rows


def _row(r: Sequence[Any]) -> RunRow:
    """A result row (in ``_COLUMNS`` order, which is ``RunRow``'s field order) → RunRow."""
    return RunRow(r[0], r[1], r[2], json.loads(r[3] or "{}"), *r[4:13], bool(r[13]), *r[14:])


def _tags(conn, ids: Sequence[int] | None) -> dict[int, list[str]]:
    query = select(TAG.c.run_id, TAG.c.tag).order_by(TAG.c.run_id, TAG.c.tag)
    out: dict[int, list[str]] = {}
    for chunk in _chunks(ids):
        q = query if chunk is None else query.where(TAG.c.run_id.in_(chunk))
        for run_id, tag in conn.execute(q):
            out.setdefault(run_id, []).append(tag)
    return out


def _fallback(conn, ids: Sequence[int] | None) -> dict[int, float]:
    query = select(LATEST.c.run_id, LATEST.c.min).where(LATEST.c.key == FALLBACK_KEY, LATEST.c.stage == 0)
    out: dict[int, float] = {}
    for chunk in _chunks(ids):
        q = query if chunk is None else query.where(LATEST.c.run_id.in_(chunk))
        out.update((run_id, value) for run_id, value in conn.execute(q))
    return out


def _chunks(ids: Sequence[int] | None, size: int = 900) -> Iterable[list[int] | None]:
    """``None`` (meaning all runs) once, else the ids in chunks that fit SQLite's parameter limit."""
    if ids is None:
        yield None
        return
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def run_census(db: Database) -> tuple[int, int]:
    """(number of runs, largest id): a cheap check for deleted runs between polls."""
    with db.read() as conn:
        count, top = conn.execute(select(func.count(), func.max(RUN.c.id)).select_from(RUN)).one()
    return count, top or 0


def all_run_ids(db: Database) -> set[int]:
    with db.read() as conn:
        return set(conn.execute(select(RUN.c.id)).scalars())


def epoch_curves(db: Database, run_ids: Sequence[int], *, after_id: int = 0) -> dict[int, list[dict[str, Any]]]:
    """Epoch-kind metric rows of several runs (compare view), per run in emission order."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in run_ids}
    if not run_ids:
        return out
    query = (select(METRIC.c.id, METRIC.c.run_id, METRIC.c.stage, METRIC.c.epoch, METRIC.c.key, METRIC.c.value)
             .where(METRIC.c.run_id.in_(list(run_ids)), METRIC.c.id > after_id, METRIC.c.kind == "epoch")
             .order_by(METRIC.c.id))
    with db.read() as conn:
        for row in conn.execute(query):
            out[row.run_id].append(dict(row._mapping))
    return out
