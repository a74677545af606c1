"""All SQL of the registry, as small functions over a :class:`Database`.

Writes are short ``BEGIN IMMEDIATE`` transactions; metric appends are one transaction per
emitted event (durable on return), and keep ``LatestMetric`` current in that same transaction.
Functions return detached ``Run`` objects and plain dicts, never live ORM sessions.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from core.registry.db import Database
from core.registry.filter import compile_filter
from core.registry.models import (
    LatestMetric,
    LogLine,
    Metric,
    ResultTable,
    Run,
    RunAttempt,

    RunStatus,
    RunTag,
    SchedulerHeartbeat,
)

RUN = Run.__table__
from core.registry.view import FALLBACK_KEY, RunView
METRIC = Metric.__table__
LATEST = LatestMetric.__table__
TABLE = ResultTable.__table__
LOG = LogLine.__table__
TAG = RunTag.__table__
BEAT = SchedulerHeartbeat.__table__

ACTIVE = (RunStatus.STARTING.value, RunStatus.RUNNING.value)


def _run(row, *, tags: Sequence[str] = (), running_best: float | None = None) -> RunView:
    """A :class:`RunView` of a result row, by column name (no per-row validation: ``hrm ls`` builds hundreds)."""
    return RunView.from_row(row._mapping, tags=tags, running_best=running_best)


# --- runs -------------------------------------------------------------------------------------

def create_run(
    db: Database,
    experiment: str,
    config: Mapping[str, Any],
    *,
    tags: Sequence[str] = (),
    priority: int = 0,
    retry_of: int | None = None,
    headline_key: str | None = None,
) -> RunView:
    """Queue a run (validated config in, ``queued`` row out)."""
    now = time.time()
    values = {
        "experiment": experiment,
        "variant": str(config.get("variant", "corrected")),
        "config_json": json.dumps(dict(config), sort_keys=True),
        "status": RunStatus.QUEUED.value,
        "priority": priority,
        "created_at": now,
        "updated_at": now,
        "retry_of": retry_of,
        "headline_key": headline_key,
        "info_json": "{}",
    }
    with db.write() as conn:
        run_id = conn.execute(RUN.insert().values(**values)).inserted_primary_key[0]
        if tags:
            conn.execute(TAG.insert(), [{"run_id": run_id, "tag": t} for t in dict.fromkeys(tags)])
        row = conn.execute(select(RUN).where(RUN.c.id == run_id)).one()
    return _run(row)


def get_run(db: Database, run_id: int) -> RunView | None:
    """One run with its tags and best-so-far, or None."""
    found = list_runs(db, ids=[run_id])
    return found[0] if found else None


def list_runs(
    db: Database,
    *,
    statuses: Sequence[str] = (),
    experiment: str | None = None,
    tag: str | None = None,
    last: int | None = None,
    offset: int = 0,
    ids: Sequence[int] | None = None,
    updated_since: float | None = None,
    enriched: bool = True,
    where: str | None = None,
) -> list[RunView]:
    """Runs, newest first, filtered; ``last`` keeps the newest N (after skipping ``offset``).

    ``enriched`` also reads each run's tags and its best ``val_ppl`` so far (two indexed queries in
    the same read transaction); the scheduler's own polls skip them.
    """
    query = select(RUN)
    if statuses:
        query = query.where(RUN.c.status.in_([str(s) for s in statuses]))
    if experiment:
        query = query.where(RUN.c.experiment == experiment)
    if tag:
        query = query.where(RUN.c.id.in_(select(TAG.c.run_id).where(TAG.c.tag == tag)))
    if ids is not None:
        query = query.where(RUN.c.id.in_(list(ids)))
    if updated_since is not None:
        query = query.where(RUN.c.updated_at > updated_since)
    if where:  # the --where language (core.registry.filter), compiled with bound parameters
        query = query.where(compile_filter(where, db.engine.dialect.name))
    query = query.order_by(RUN.c.id.desc())
    if last:
        query = query.limit(last)
    if offset:
        query = query.offset(offset)
    with db.read() as conn:
        rows = conn.execute(query).all()
        if not enriched or not rows:
            return [_run(r) for r in rows]
        every = not statuses and not experiment and not tag and not last and not offset and ids is None \
            and updated_since is None and not where
        subset = None if every else [r.id for r in rows]
        tags = _tags(conn, subset)
        pending = None if every else [r.id for r in rows if r.headline_value is None]
        best = _stage_best(conn, pending) if pending is None or pending else {}
    return [_run(r, tags=tags.get(r.id, ()), running_best=best.get((r.id, r.stage))) for r in rows]


def _tags(conn: Connection, ids: Sequence[int] | None) -> dict[int, list[str]]:
    query = select(TAG.c.run_id, TAG.c.tag).order_by(TAG.c.run_id, TAG.c.tag)
    out: dict[int, list[str]] = {}
    for chunk in _chunks(ids):
        for run_id, tag in conn.execute(query if chunk is None else query.where(TAG.c.run_id.in_(chunk))):
            out.setdefault(run_id, []).append(tag)
    return out


def _stage_best(conn: Connection, ids: Sequence[int] | None) -> dict[tuple[int, int], float]:
    """(run, stage) → ``val_ppl``'s minimum: what a run's headline shows until its summary is written."""
    query = select(LATEST.c.run_id, LATEST.c.stage, LATEST.c.min).where(LATEST.c.key == FALLBACK_KEY)
    out: dict[tuple[int, int], float] = {}
    for chunk in _chunks(ids):
        for run_id, stage, value in conn.execute(query if chunk is None else query.where(LATEST.c.run_id.in_(chunk))):
            out[(run_id, stage)] = value
    return out


def _chunks(ids: Sequence[int] | None, size: int = 900) -> Iterable[list[int] | None]:
    """``None`` (meaning every run) once, else the ids in chunks that fit SQLite's parameter limit."""
    if ids is None:
        yield None
        return
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def tags_of(db: Database, run_ids: Sequence[int]) -> dict[int, list[str]]:
    if not run_ids:
        return {}
    with db.read() as conn:
        rows = conn.execute(select(TAG).where(TAG.c.run_id.in_(list(run_ids))).order_by(TAG.c.tag))
        out: dict[int, list[str]] = {}
        for r in rows:
            out.setdefault(r.run_id, []).append(r.tag)
    return out


# --- annotations after submit (tags, notes), bulk reads and imported records ------------------

def set_tags(db: Database, run_id: int, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str] | None:
    """Add and remove tags of a run in one transaction; its tags afterwards, or None if there is no such run."""
    with db.write() as conn:
        if conn.execute(select(RUN.c.id).where(RUN.c.id == run_id)).first() is None:
            return None
        if remove:
            conn.execute(delete(TAG).where(TAG.c.run_id == run_id, TAG.c.tag.in_(list(remove))))
        present = set(conn.execute(select(TAG.c.tag).where(TAG.c.run_id == run_id)).scalars())
        new = [t for t in dict.fromkeys(add) if t not in present]
        if new:
            conn.execute(TAG.insert(), [{"run_id": run_id, "tag": t} for t in new])
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(updated_at=time.time()))
        return sorted(conn.execute(select(TAG.c.tag).where(TAG.c.run_id == run_id)).scalars())


def set_note(db: Database, run_id: int, note: str | None) -> bool:
    """Replace a run's note (None clears it); False if there is no such run."""
    with db.write() as conn:
        return conn.execute(update(RUN).where(RUN.c.id == run_id).values(note=note, updated_at=time.time())
                            ).rowcount == 1


def metrics_of(db: Database, run_ids: Sequence[int], *, kinds: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every metric row of many runs (run by run, in emission order), NaN restored: the long format."""
    out: list[dict[str, Any]] = []
    query = select(METRIC.c.run_id, METRIC.c.kind, METRIC.c.stage, METRIC.c.epoch, METRIC.c.layer,
                   METRIC.c.key, METRIC.c.value, METRIC.c.is_nan, METRIC.c.ts)
    if kinds:
        query = query.where(METRIC.c.kind.in_(list(kinds)))
    with db.read() as conn:
        for chunk in _chunks(list(run_ids)):
            for row in conn.execute(query.where(METRIC.c.run_id.in_(chunk)).order_by(METRIC.c.run_id, METRIC.c.id)):
                record = dict(row._mapping)
                if record.pop("is_nan"):
                    record["value"] = math.nan
                out.append(record)
    return out


def imported_runs(db: Database, prefix: str) -> dict[str, int]:
    """{imported_from: run id} of the records whose origin starts with ``prefix`` (re-imports skip them)."""
    with db.read() as conn:
        rows = conn.execute(select(RUN.c.imported_from, RUN.c.id).where(RUN.c.imported_from.startswith(prefix, autoescape=True)))
        return {origin: run_id for origin, run_id in rows}


def create_imported_run(
    db: Database,
    experiment: str,
    config: Mapping[str, Any],
    *,
    imported_from: str,
    status: RunStatus,
    created_at: float,
    started_at: float | None,
    finished_at: float | None,
    metrics: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    note: str | None = None,
    headline_key: str | None = None,
) -> RunView:
    """A finished record from another tool, with its metric history, written in one transaction.

    ``metrics`` rows carry kind, stage, epoch, layer, key, value (and ts); ``LatestMetric`` is
    built from them as if they had been emitted in that order.
    """
    last_epoch = max((m["epoch"] for m in metrics if m["kind"] == "epoch" and m.get("epoch") is not None), default=0)
    values = {
        "experiment": experiment, "variant": str(config.get("variant", "imported")),
        "config_json": json.dumps(dict(config), sort_keys=True, default=str), "status": status.value,
        "created_at": created_at, "updated_at": time.time(), "started_at": started_at, "finished_at": finished_at,
        "info_json": json.dumps(dict(info or {}), default=str), "imported_from": imported_from, "note": note,
        "epoch": last_epoch, "total_epochs": last_epoch or None, "headline_key": headline_key,
        "headline_value": next((_clean(m["value"])[0] for m in reversed(metrics) if m["kind"] == "summary"
                                and m["key"] == headline_key and not m.get("stage")), None),
    }
    with db.write() as conn:
        run_id = _insert_run(conn, values)
        if tags:
            conn.execute(TAG.insert(), [{"run_id": run_id, "tag": t} for t in dict.fromkeys(tags)])
        rows = []
        for m in metrics:
            value, is_nan = _clean(m["value"])
            rows.append({"run_id": run_id, "kind": m["kind"], "stage": int(m.get("stage") or 0),
                         "epoch": m.get("epoch"), "layer": m.get("layer"), "key": m["key"], "value": value,
                         "is_nan": is_nan, "ts": float(m.get("ts") or created_at)})
        if rows:
            _executemany(conn, _INSERT_METRIC, rows)
            run_level = [r for r in rows if r["kind"] != "layer"]
            if run_level:
                _executemany(conn, _UPSERT_LATEST, run_level)
        row = conn.execute(select(RUN).where(RUN.c.id == run_id)).one()
    return _run(row, tags=list(dict.fromkeys(tags)))


def count_by_status(db: Database) -> dict[str, int]:
    with db.read() as conn:
        rows = conn.execute(select(RUN.c.status, func.count()).group_by(RUN.c.status))
        return {status: n for status, n in rows}


def claim_next(db: Database, *, host: str, gpu: str) -> RunView | None:
    """Atomically move the best queued run to ``starting`` on ``gpu`` (litequeue's UPDATE…RETURNING)."""
    next_id = (
        select(RUN.c.id)
        .where(RUN.c.status == RunStatus.QUEUED.value)
        .order_by(RUN.c.priority.desc(), RUN.c.id)
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        update(RUN)
        .where(RUN.c.id == next_id, RUN.c.status == RunStatus.QUEUED.value)
        .values(status=RunStatus.STARTING.value, host=host, gpu=gpu, updated_at=time.time())
        .returning(*RUN.c)
    )
    with db.write() as conn:
        row = conn.execute(stmt).first()
    return _run(row) if row else None


def set_pid(db: Database, run_id: int, pid: int) -> None:
    with db.write() as conn:
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(pid=pid, updated_at=time.time()))


def mark_running(db: Database, run_id: int, *, pid: int, host: str, info: Mapping[str, Any]) -> bool:
    """The worker took over. False when the run was cancelled (or finished) before it started."""
    now = time.time()
    with db.write() as conn:
        result = conn.execute(
            update(RUN)
            .where(RUN.c.id == run_id, RUN.c.status.in_((RunStatus.QUEUED.value, *ACTIVE)))
            .where(RUN.c.cancel_requested.is_(False))
            .values(status=RunStatus.RUNNING.value, pid=pid, host=host, started_at=now, updated_at=now,
                    info_json=json.dumps(dict(info), default=str))
        )
        return result.rowcount == 1


def finish_run(
    db: Database,
    run_id: int,
    status: RunStatus,
    *,
    exit_code: int | None = None,
    error: str | None = None,
    stderr_tail: str | None = None,
    only_if_not_terminal: bool = True,
) -> bool:
    """Set a terminal status. By default never overwrites a status the worker already wrote."""
    now = time.time()
    values: dict[str, Any] = {"status": status.value, "finished_at": now, "updated_at": now}
    if exit_code is not None:
        values["exit_code"] = exit_code
    if error is not None:
        values["error"] = error
    if stderr_tail is not None:
        values["stderr_tail"] = stderr_tail
    stmt = update(RUN).where(RUN.c.id == run_id)
    if only_if_not_terminal:
        stmt = stmt.where(RUN.c.status.in_((RunStatus.QUEUED.value, *ACTIVE)))
    with db.write() as conn:
        return conn.execute(stmt.values(**values)).rowcount == 1


def attach_outcome(db: Database, run_id: int, *, exit_code: int | None, stderr_tail: str | None) -> None:
    """Record the exit code and stderr tail of a run that already has its terminal status."""
    with db.write() as conn:
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(exit_code=exit_code, stderr_tail=stderr_tail))


def request_cancel(db: Database, run_id: int) -> RunView | None:
    """Queued runs are cancelled at once; active ones get a flag the scheduler acts on."""
    now = time.time()
    with db.write() as conn:
        conn.execute(
            update(RUN).where(RUN.c.id == run_id, RUN.c.status == RunStatus.QUEUED.value)
            .values(status=RunStatus.CANCELLED.value, cancel_requested=True, finished_at=now, updated_at=now,
                    error="cancelled before it started")
        )
        conn.execute(
            update(RUN).where(RUN.c.id == run_id, RUN.c.status.in_(ACTIVE))
            .values(cancel_requested=True, updated_at=now)
        )
        row = conn.execute(select(RUN).where(RUN.c.id == run_id)).first()
    return _run(row) if row else None


def delete_run(db: Database, run_id: int) -> bool:
    with db.write() as conn:
        for table in (METRIC, LATEST, TABLE, LOG, TAG, RunAttempt.__table__):
            conn.execute(delete(table).where(table.c.run_id == run_id))
        return conn.execute(delete(RUN).where(RUN.c.id == run_id)).rowcount == 1


# --- events from a worker ---------------------------------------------------------------------

def _clean(value: float) -> tuple[float | None, bool]:
    value = float(value)
    if math.isnan(value):
        return None, True
    if math.isinf(value):
        return (1e308 if value > 0 else -1e308), False
    return value, False


# The metric hot path (one transaction per emitted event) runs prepared SQL on the driver's cursor:
# SQLAlchemy's per-statement compilation and event dispatch cost ~4× the SQLite work itself.
_INSERT_METRIC = (
    'INSERT INTO metric (run_id, kind, stage, epoch, layer, "key", value, is_nan, ts) '
    "VALUES (:run_id, :kind, :stage, :epoch, :layer, :key, :value, :is_nan, :ts)"
)
_UPSERT_LATEST = (
    'INSERT INTO latestmetric (run_id, stage, "key", "last", last_epoch, "min", min_epoch, "max", max_epoch, "count", ts) '
    "VALUES (:run_id, :stage, :key, :value, :epoch, :value, :epoch, :value, :epoch, 1, :ts) "
    'ON CONFLICT (run_id, stage, "key") DO UPDATE SET "last" = excluded."last", last_epoch = excluded.last_epoch, '
    'ts = excluded.ts, "count" = latestmetric."count" + 1, '
    '"min" = CASE WHEN latestmetric."min" IS NULL OR excluded."min" < latestmetric."min" '
    'THEN excluded."min" ELSE latestmetric."min" END, '
    'min_epoch = CASE WHEN latestmetric."min" IS NULL OR excluded."min" < latestmetric."min" '
    'THEN excluded.min_epoch ELSE latestmetric.min_epoch END, '
    '"max" = CASE WHEN latestmetric."max" IS NULL OR excluded."max" > latestmetric."max" '
    'THEN excluded."max" ELSE latestmetric."max" END, '
    'max_epoch = CASE WHEN latestmetric."max" IS NULL OR excluded."max" > latestmetric."max" '
    'THEN excluded.max_epoch ELSE latestmetric.max_epoch END'
)
_PYFORMAT = re.compile(r"(?<![:\w]):(\w+)")


@functools.cache
def _driver_sql(paramstyle: str, sql: str) -> str:
    """``:name`` placeholders in the driver's own style (sqlite3: named; psycopg: pyformat)."""
    return _PYFORMAT.sub(r"%(\1)s", sql) if paramstyle == "pyformat" else sql


def _executemany(conn: Connection, sql: str, rows: list[dict[str, Any]]) -> None:
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(_driver_sql(conn.dialect.paramstyle, sql), rows)
    finally:
        cursor.close()


def append_metrics(
    db: Database,
    run_id: int,
    kind: str,
    values: Mapping[str, float] | Mapping[int, Mapping[str, float]],
    *,
    stage: int = 0,
    epoch: int | None = None,
    total: int | None = None,
) -> None:
    """Store one event's numbers in one transaction (durable on return).

    ``kind`` epoch/summary: ``values`` is {key: value} and also updates ``LatestMetric``;
    kind layer: ``values`` is {layer: {key: value}} (history only).
    """
    now = time.time()
    rows: list[dict[str, Any]] = []
    per_layer = values.items() if kind == "layer" else [(None, values)]
    for layer, metrics in per_layer:
        for key, raw in metrics.items():
            value, is_nan = _clean(raw)
            rows.append({"run_id": run_id, "kind": kind, "stage": stage, "epoch": epoch,
                         "layer": None if layer is None else int(layer), "key": key, "value": value,
                         "is_nan": is_nan, "ts": now})
    progress: dict[str, Any] = {"updated_at": now}
    if kind == "epoch" and epoch is not None:
        progress.update(epoch=epoch, stage=stage)
        if total is not None:
            progress["total_epochs"] = total
    with db.write() as conn:
        if rows:
            _executemany(conn, _INSERT_METRIC, rows)
            if kind != "layer":
                _executemany(conn, _UPSERT_LATEST, rows)
        if kind == "summary":
            headline = conn.execute(select(RUN.c.headline_key).where(RUN.c.id == run_id)).scalar()
            if headline in values and stage == 0:
                progress["headline_value"] = _clean(values[headline])[0]
        if kind != "layer":  # per-layer rows always come with an epoch event, which updates the run
            conn.execute(update(RUN).where(RUN.c.id == run_id).values(**progress))


def set_stage(db: Database, run_id: int, stage: int, name: str, epochs: int | None) -> None:
    with db.write() as conn:
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(
            stage=stage, stage_name=name, epoch=0, total_epochs=epochs, updated_at=time.time()))
        conn.execute(LOG.insert().values(run_id=run_id, ts=time.time(), source="worker",
                                         message=f"stage {stage}: {name}"))


def merge_info(db: Database, run_id: int, fields: Mapping[str, Any]) -> None:
    with db.write() as conn:
        current = conn.execute(select(RUN.c.info_json).where(RUN.c.id == run_id)).scalar() or "{}"
        info = json.loads(current)
        info.update(fields)
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(
            info_json=json.dumps(info, default=str), updated_at=time.time()))


def add_table(db: Database, run_id: int, name: str, rows: Sequence[Mapping[str, Any]], *, stage: int = 0) -> None:
    with db.write() as conn:
        conn.execute(TABLE.insert().values(run_id=run_id, stage=stage, name=name, ts=time.time(),
                                           rows_json=json.dumps([dict(r) for r in rows], default=_json_default)))
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(updated_at=time.time()))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def add_log(db: Database, run_id: int, message: str, *, source: str = "worker") -> None:
    with db.write() as conn:
        conn.execute(LOG.insert().values(run_id=run_id, ts=time.time(), source=source, message=message))


# --- reads ------------------------------------------------------------------------------------

def metrics(
    db: Database, run_id: int, *, kind: str | None = None, after_id: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """Metric rows of a run in emission order, from ``after_id`` on (for live tails)."""
    query = select(METRIC).where(METRIC.c.run_id == run_id, METRIC.c.id > after_id)
    if kind:
        query = query.where(METRIC.c.kind == kind)
    query = query.order_by(METRIC.c.id)
    if limit:
        query = query.limit(limit)
    with db.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        if row["is_nan"]:
            row["value"] = math.nan
    return rows


def latest_metrics(db: Database, run_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """{run_id: [LatestMetric rows]} for many runs in one indexed query."""
    ids = list(run_ids)
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    with db.read() as conn:
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            for row in conn.execute(select(LATEST).where(LATEST.c.run_id.in_(chunk))):
                out[row.run_id].append(dict(row._mapping))
    return out


def result_tables(db: Database, run_id: int) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(select(TABLE).where(TABLE.c.run_id == run_id).order_by(TABLE.c.id))
        return [{"name": r.name, "stage": r.stage, "rows": json.loads(r.rows_json)} for r in rows]


def logs(db: Database, run_id: int, *, after_id: int = 0) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(select(LOG).where(LOG.c.run_id == run_id, LOG.c.id > after_id).order_by(LOG.c.id))
        return [dict(r._mapping) for r in rows]


def active_runs(db: Database) -> list[RunView]:
    return list_runs(db, statuses=ACTIVE, enriched=False)


def run_census(db: Database) -> tuple[int, int]:
    """(number of runs, largest id): a cheap check for deleted runs between polls."""
    with db.read() as conn:
        count, top = conn.execute(select(func.count(), func.max(RUN.c.id)).select_from(RUN)).one()
    return count, top or 0


def all_run_ids(db: Database) -> set[int]:
    with db.read() as conn:
        return set(conn.execute(select(RUN.c.id)).scalars())


def cancel_requested_active(db: Database) -> list[RunView]:
    with db.read() as conn:
        rows = conn.execute(select(RUN).where(RUN.c.status.in_(ACTIVE), RUN.c.cancel_requested.is_(True)))
        return [_run(r) for r in rows]


# --- scheduler heartbeats ---------------------------------------------------------------------

def register_scheduler(db: Database, *, host: str, pid: int, slots: str, stale_after: float) -> int | None:
    """Register a scheduler unless a live one exists (atomic). Returns its id, or None."""
    now = time.time()
    with db.write() as conn:
        live = conn.execute(select(BEAT).where(BEAT.c.beat_at > now - stale_after)).first()
        if live is not None:
            return None
        conn.execute(delete(BEAT).where(BEAT.c.beat_at <= now - stale_after))
        return conn.execute(BEAT.insert().values(host=host, pid=pid, started_at=now, beat_at=now, slots=slots)
                            ).inserted_primary_key[0]


def beat(db: Database, scheduler_id: int) -> None:
    with db.write() as conn:
        conn.execute(update(BEAT).where(BEAT.c.id == scheduler_id).values(beat_at=time.time()))


def unregister_scheduler(db: Database, scheduler_id: int) -> None:
    with db.write() as conn:
        conn.execute(delete(BEAT).where(BEAT.c.id == scheduler_id))


def live_schedulers(db: Database, *, stale_after: float) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(select(BEAT).where(BEAT.c.beat_at > time.time() - stale_after))
        return [dict(r._mapping) for r in rows]
