"""Registry side of resuming runs: attempts, the event cursor of a checkpoint, notifications once.

A run keeps its id across attempts. Requeueing archives the ended attempt as a ``RunAttempt`` row
and bumps ``run.attempt``; when the next attempt continues from a checkpoint, the rows the dead
attempt emitted after that checkpoint are removed (and ``latestmetric`` rebuilt from what is left),
so the run's series reads as if it had never stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update

from core.registry.attempt_view import attempt_records, checkpoint_record
from core.registry.db import Database
from core.registry.models import RunAttempt, RunStatus
from core.registry.store import LATEST, METRIC, RUN, TABLE, _executemany, _run, _UPSERT_LATEST
from core.registry.view import RunView

ATTEMPT = RunAttempt.__table__
RESUMABLE = (RunStatus.FAILED.value, RunStatus.LOST.value, RunStatus.CANCELLED.value)


def requeue(db: Database, run_id: int, *, by: str = "resume",
            statuses: Sequence[str] = RESUMABLE) -> RunView | None:
    """Archive the ended attempt and queue the run again as ``attempt + 1`` (atomic).

    None when the run is not in one of ``statuses`` (already requeued, running, completed...).
    """
    now = time.time()
    with db.write() as conn:
        row = conn.execute(select(RUN).where(RUN.c.id == run_id)).first()
        if row is None or row.status not in statuses:
            return None
        conn.execute(ATTEMPT.insert().values(
            run_id=run_id, attempt=row.attempt, status=row.status, started_at=row.started_at,
            finished_at=row.finished_at, host=row.host, gpu=row.gpu, exit_code=row.exit_code, error=row.error,
            epoch=row.epoch, stage=row.stage, requeued_at=now, requeued_by=by, info_json=row.info_json or "{}"))
        values: dict[str, Any] = dict(
            status=RunStatus.QUEUED.value, attempt=row.attempt + 1, cancel_requested=False, pid=None,
            exit_code=None, error=None, stderr_tail=None, finished_at=None, updated_at=now)
        if "heartbeat_at" in RUN.c:
            values["heartbeat_at"] = None
        done = conn.execute(update(RUN).where(RUN.c.id == run_id, RUN.c.status == row.status).values(**values))
        if done.rowcount != 1:
            return None
        fresh = conn.execute(select(RUN).where(RUN.c.id == run_id)).one()
    return _run(fresh)


def attempts(db: Database, run_id: int) -> list[dict[str, Any]]:
    """Every attempt of a run, oldest first: the archived ones, then the current one (from the run row)."""
    return show_fields(db, run_id)["attempts"]


def show_fields(db: Database, run_id: int) -> dict[str, Any]:
    """``attempts`` and ``checkpoint`` as ``hrm show --json`` prints them (:mod:`core.registry.attempt_view`)."""
    with db.read() as conn:
        archived = [dict(r._mapping) for r in conn.execute(
            select(ATTEMPT).where(ATTEMPT.c.run_id == run_id).order_by(ATTEMPT.c.attempt))]
        run = conn.execute(select(RUN).where(RUN.c.id == run_id)).first()
    run_row = dict(run._mapping) if run is not None else {}
    return {"attempts": attempt_records(archived, run_row) if run is not None else [],
            "checkpoint": checkpoint_record(run_row.get("checkpoint_json"))}


def previous_info(db: Database, run_id: int) -> dict[str, Any]:
    """The ``info`` of the run's previous attempt, as it was when that attempt was requeued."""
    with db.read() as conn:
        raw = conn.execute(select(ATTEMPT.c.info_json).where(ATTEMPT.c.run_id == run_id)
                           .order_by(ATTEMPT.c.attempt.desc()).limit(1)).scalar()
    return json.loads(raw or "{}")


def event_cursor(db: Database, run_id: int) -> dict[str, int]:
    """The newest metric and table ids of a run: what a checkpoint saved now has already recorded."""
    with db.read() as conn:
        metric = conn.execute(select(func.max(METRIC.c.id)).where(METRIC.c.run_id == run_id)).scalar()
        table = conn.execute(select(func.max(TABLE.c.id)).where(TABLE.c.run_id == run_id)).scalar()
    return {"metric_id": int(metric or 0), "table_id": int(table or 0)}


def truncate_events(db: Database, run_id: int, cursor: Mapping[str, Any] | None) -> int:
    """Remove the metric and table rows recorded after ``cursor`` (all of them when None), rebuild
    ``latestmetric`` and the run's progress from what is left; returns how many rows went."""
    metric_after = int((cursor or {}).get("metric_id", 0))
    table_after = int((cursor or {}).get("table_id", 0))
    with db.write() as conn:
        removed = conn.execute(delete(METRIC).where(METRIC.c.run_id == run_id, METRIC.c.id > metric_after)).rowcount
        removed += conn.execute(delete(TABLE).where(TABLE.c.run_id == run_id, TABLE.c.id > table_after)).rowcount
        conn.execute(delete(LATEST).where(LATEST.c.run_id == run_id))
        kept = conn.execute(
            select(METRIC.c.stage, METRIC.c.key, METRIC.c.value, METRIC.c.epoch, METRIC.c.ts)
            .where(METRIC.c.run_id == run_id, METRIC.c.kind != "layer").order_by(METRIC.c.id)).all()
        rows = [{"run_id": run_id, "stage": r.stage, "key": r.key, "value": r.value, "epoch": r.epoch, "ts": r.ts}
                for r in kept]
        for start in range(0, len(rows), 500):  # the same upsert as live appends, in emission order
            _executemany(conn, _UPSERT_LATEST, rows[start:start + 500])
        last = conn.execute(select(METRIC.c.stage, METRIC.c.epoch).where(
            METRIC.c.run_id == run_id, METRIC.c.kind == "epoch").order_by(METRIC.c.id.desc()).limit(1)).first()
        headline_key = conn.execute(select(RUN.c.headline_key).where(RUN.c.id == run_id)).scalar()
        headline = conn.execute(select(METRIC.c.value).where(
            METRIC.c.run_id == run_id, METRIC.c.kind == "summary", METRIC.c.stage == 0,
            METRIC.c.key == headline_key).order_by(METRIC.c.id.desc()).limit(1)).scalar()
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(
            stage=last.stage if last else 0, epoch=(last.epoch or 0) if last else 0, headline_value=headline,
            updated_at=time.time()))
    return int(removed)


def set_checkpoint(db: Database, run_id: int, checkpoint: Mapping[str, Any] | None) -> None:
    """Record the run's newest checkpoint (shown by ``hrm show`` and the dashboard)."""
    with db.write() as conn:
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(
            checkpoint_json=None if checkpoint is None else json.dumps(dict(checkpoint)), updated_at=time.time()))


def claim_notification(db: Database, run_id: int) -> bool:
    """True exactly once per ended attempt: whoever gets True sends the run-end notifications."""
    terminal = [s.value for s in RunStatus if s.is_terminal]
    with db.write() as conn:
        done = conn.execute(update(RUN).where(
            RUN.c.id == run_id, RUN.c.notified_attempt < RUN.c.attempt, RUN.c.status.in_(terminal),
        ).values(notified_attempt=RUN.c.attempt))
        return done.rowcount == 1


def delete_attempts(db: Database, run_id: int) -> None:
    with db.write() as conn:
        conn.execute(delete(ATTEMPT).where(ATTEMPT.c.run_id == run_id))
