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
from itertools import chain
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from core.registry.db import Database
from core.registry.decode import decode_json_list, decode_json_object
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
    WorkerOutput,
)
from core.registry.run_ids import NEXT_RUN_ID, RAISE_HIGH_WATER
from core.registry.view import FALLBACK_KEY, RunView

RUN = Run.__table__
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
    target_host: str | None = None,
    executor: str | None = None,
) -> RunView:
    """Queue a run (validated config in, ``queued`` row out); ``target_host`` pins it to that scheduler,
    ``executor`` sends it to that engine (``slurm``) whatever the scheduler's own."""
    values = {
        **new_run_values(experiment, config, RunStatus.QUEUED, time.time()),
        "priority": priority,
        "retry_of": retry_of,
        "headline_key": headline_key,
        "info_json": "{}",
    }
    if target_host is not None:
        values["target_host"] = target_host
    if executor is not None:
        values["executor"] = executor
    with db.write() as conn:
        run_id = insert_run(conn, values, tags)
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
        run_id = insert_run(conn, values, tags)
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


def _claimable(name: str | None):
    """Queued runs a scheduler named ``name`` may take: unpinned ones and those pinned to it."""
    query = RUN.c.status == RunStatus.QUEUED.value
    if name is not None:
        query = query & (RUN.c.target_host.is_(None) | (RUN.c.target_host == name))
    return query


def has_claimable(db: Database, *, name: str | None = None) -> bool:
    """A cheap read: is there a queued run for this scheduler? (The idle poll never writes.)"""
    with db.read() as conn:
        return conn.execute(select(RUN.c.id).where(_claimable(name)).limit(1)).first() is not None


def claim_next(db: Database, *, host: str, gpu: str, lease=None, stale_after: float = 10.0) -> RunView | None:
    """Atomically move the best queued run to ``starting`` on ``gpu``; None when there is none.

    One ``UPDATE … WHERE id = (best queued) … RETURNING`` (SQLite's write lock serialises it; on
    PostgreSQL the subquery takes ``FOR UPDATE SKIP LOCKED``, so concurrent schedulers never get
    the same run). With a ``lease`` (:class:`core.registry.leases.Lease`) the claim also requires it
    to be the current, fresh holder (fencing) and takes only runs unpinned or pinned to its name.
    """
    name = lease.name if lease is not None else None
    next_id = (
        select(RUN.c.id)
        .where(_claimable(name))
        .order_by(RUN.c.priority.desc(), RUN.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    values = {"status": RunStatus.STARTING.value, "host": host, "gpu": gpu, "updated_at": time.time()}
    stmt = update(RUN).where(RUN.c.id == next_id, _claimable(name))
    if lease is not None:
        from core.registry.leases import holds

        stmt = stmt.where(holds(lease, stale_after))
        values["scheduler_name"] = lease.name
    stmt = stmt.values(**values).returning(*RUN.c)
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
                    heartbeat_at=now, info_json=json.dumps(dict(info), default=str))
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
    """Record the exit code and stderr tail of a run that already has its terminal status.

    Fills only what is missing: the worker's own record (its saved traceback) is never overwritten.
    """
    with db.write() as conn:
        if exit_code is not None:
            conn.execute(update(RUN).where(RUN.c.id == run_id, RUN.c.exit_code.is_(None)).values(exit_code=exit_code))
        if stderr_tail:
            conn.execute(update(RUN).where(RUN.c.id == run_id, RUN.c.stderr_tail.is_(None))
                         .values(stderr_tail=stderr_tail))


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
    """Delete a run, its rows and its run folder. Its id is never handed out again (see ``insert_run``)."""
    with db.write() as conn:
        if conn.dialect.name == "sqlite":
            _raise_run_id_high_water(conn, conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM run").scalar())
        for table in (METRIC, LATEST, TABLE, LOG, TAG, WorkerOutput.__table__, RunAttempt.__table__):
            conn.execute(delete(table).where(table.c.run_id == run_id))
        deleted = conn.execute(delete(RUN).where(RUN.c.id == run_id)).rowcount == 1
    if deleted and db.shareable:
        from core.paths import remove_run_dir

        remove_run_dir(db, run_id)  # a later run must never find (and append to) this run's log
    return deleted


# Run ids on SQLite never come back after a delete: core/registry/run_ids.py says why and how.
def _raise_run_id_high_water(conn: Connection, run_id: int) -> None:
    conn.exec_driver_sql(RAISE_HIGH_WATER, (str(int(run_id)),))


def new_run_values(experiment: str, config: Mapping[str, Any], status: RunStatus, now: float) -> dict[str, Any]:
    """The columns every new run starts from (queued by hrm or tracked by a script); callers add the rest."""
    return {
        "experiment": experiment,
        "variant": str(config.get("variant", "corrected")),
        "config_json": json.dumps(dict(config), sort_keys=True),
        "status": status.value,
        "created_at": now,
        "updated_at": now,
    }


def insert_run(conn: Connection, values: Mapping[str, Any], tags: Sequence[str] = ()) -> int:
    """Insert a ``run`` row and its tags in the caller's transaction, under an id this registry never
    handed out before; returns the id."""
    if conn.dialect.name != "sqlite":
        run_id = conn.execute(RUN.insert().values(**values)).inserted_primary_key[0]
    else:
        run_id = conn.exec_driver_sql(NEXT_RUN_ID).scalar()
        conn.execute(RUN.insert().values(id=run_id, **values))
        _raise_run_id_high_water(conn, run_id)
    if tags:
        conn.execute(TAG.insert(), [{"run_id": run_id, "tag": t} for t in dict.fromkeys(tags)])
    return run_id


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


_CLAIM_SEQ = "UPDATE run SET event_seq = :seq WHERE id = :run_id AND event_seq < :seq"


def _first_time(conn: Connection, run_id: int, seq: int | None) -> bool:
    """Record event ``seq`` of a run as applied, in the event's own transaction; False if it already was.

    Workers number their events; an event replayed from the worker's spool after an outage (its
    first commit may have succeeded unseen) is then applied exactly once.
    """
    if seq is None:
        return True
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(_driver_sql(conn.dialect.paramstyle, _CLAIM_SEQ), {"seq": seq, "run_id": run_id})
        return cursor.rowcount == 1
    finally:
        cursor.close()


# The hot path's statements, with positional placeholders (tuples bind several times faster than
# dicts in sqlite3; psycopg takes the same tuples with %s). The run row's share of an event is one
# statement: progress (an epoch event) or a touch (a summary), and with a worker's sequence number
# the exactly-once claim (``event_seq < seq``) folded in.
_HOT_INSERT_METRIC = ('INSERT INTO metric (run_id, kind, stage, epoch, layer, "key", value, is_nan, ts) '
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_HOT_UPSERT_LATEST = (
    'INSERT INTO latestmetric (run_id, stage, "key", "last", last_epoch, "min", min_epoch, "max", max_epoch, "count", ts) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) "
    + _UPSERT_LATEST[_UPSERT_LATEST.index("ON CONFLICT"):]
)
_RUN_PROGRESS = "UPDATE run SET updated_at = ?, epoch = ?, stage = ?, total_epochs = coalesce(?, total_epochs)"
_RUN_TOUCH = "UPDATE run SET updated_at = ?"
_RUN_CLAIM = "UPDATE run SET event_seq = ? WHERE id = ? AND event_seq < ?"
_BY_ID = " WHERE id = ?"
_BY_ID_CLAIMING = ", event_seq = ? WHERE id = ? AND event_seq < ?"
_RUN_SQL = {(template, claiming): template + (_BY_ID_CLAIMING if claiming else _BY_ID)
            for template in (_RUN_PROGRESS, _RUN_TOUCH) for claiming in (False, True)}


@functools.cache
def _hot_sql(paramstyle: str, sql: str) -> str:
    return sql.replace("?", "%s") if paramstyle in ("format", "pyformat") else sql


# An event's rows go in as one multi-row INSERT (one statement step instead of one per row: ~8 % of
# an epoch's CPU), at most this many rows a statement: 900 parameters, under every SQLite build's limit.
_ROWS_PER_STATEMENT = 100


@functools.cache
def _multi_row_sql(paramstyle: str, single_row_sql: str, rows: int) -> str:
    """``single_row_sql`` (``INSERT ... VALUES (?, ...) [tail]``) with ``rows`` value tuples."""
    values_at = single_row_sql.index("VALUES (") + len("VALUES ")
    values_end = single_row_sql.index(")", values_at) + 1
    values = single_row_sql[values_at:values_end]
    sql = single_row_sql[:values_at] + ", ".join([values] * rows) + single_row_sql[values_end:]
    return _hot_sql(paramstyle, sql)


def _insert_rows(cursor, paramstyle: str, single_row_sql: str, rows: list[tuple]) -> None:
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows if len(rows) <= _ROWS_PER_STATEMENT else rows[start:start + _ROWS_PER_STATEMENT]
        cursor.execute(_multi_row_sql(paramstyle, single_row_sql, len(chunk)), list(chain.from_iterable(chunk)))


def _latest_rows(rows: list[tuple]) -> list[tuple]:
    """LatestMetric upsert parameters of metric rows (value and epoch stand for last, min and max)."""
    return [(r[0], r[2], r[5], r[6], r[3], r[6], r[3], r[6], r[3], r[8]) for r in rows]


def _metric_rows(rows: list[tuple], run_id: int, kind: str, stage: int, epoch: int | None, layer: int | None,
                 metrics: Mapping[str, float], now: float) -> None:
    """Append one metric row per key to ``rows`` (NaN stored as NULL + ``is_nan``, ±inf clamped)."""
    append = rows.append
    for key, raw in metrics.items():
        value = float(raw)
        if value - value == 0.0:  # finite: the common case, no NaN/inf handling
            append((run_id, kind, stage, epoch, layer, key, value, False, now))
        else:
            value, is_nan = _clean(value)
            append((run_id, kind, stage, epoch, layer, key, value, is_nan, now))


def append_metrics(
    db: Database,
    run_id: int,
    kind: str,
    values: Mapping[str, float] | Mapping[int, Mapping[str, float]],
    *,
    stage: int = 0,
    epoch: int | None = None,
    total: int | None = None,
    seq: int | None = None,
) -> None:
    """Store one event's numbers in one transaction (durable on return).

    ``kind`` epoch/summary: ``values`` is {key: value} and also updates ``LatestMetric``;
    kind layer: ``values`` is {layer: {key: value}} (history only). With ``seq`` (a worker's event
    number) an event already applied is skipped, in the same transaction.

    The hot path of every training run: prepared positional driver SQL on the thread's own
    connection (:meth:`Database.driver_write`), one statement for the run row that also claims ``seq``.
    """
    now = time.time()
    rows: list[tuple] = []
    if kind == "layer":
        for layer, metrics in values.items():
            _metric_rows(rows, run_id, kind, stage, epoch, int(layer), metrics, now)
    else:
        _metric_rows(rows, run_id, kind, stage, epoch, None, values, now)
    claiming = seq is not None
    if kind == "layer":  # per-layer rows always come with an epoch event, which updates the run
        run_sql, run_params = (_RUN_CLAIM, (seq, run_id, seq)) if claiming else (None, ())
    else:
        progress = kind == "epoch" and epoch is not None
        run_sql = _RUN_SQL[(_RUN_PROGRESS if progress else _RUN_TOUCH, claiming)]
        run_params = (now, epoch, stage, total) if progress else (now,)
        run_params += (seq, run_id, seq) if claiming else (run_id,)
    with db.driver_write() as tx:
        cursor, style = tx.cursor, tx.paramstyle
        qmark = style == "qmark"
        if run_sql is not None:
            cursor.execute(run_sql if qmark else _hot_sql(style, run_sql), run_params)
            if claiming and cursor.rowcount == 0:
                return  # applied before (a replayed event), or no such run
        if rows:
            _insert_rows(cursor, style, _HOT_INSERT_METRIC, rows)
            if kind != "layer":
                _insert_rows(cursor, style, _HOT_UPSERT_LATEST, _latest_rows(rows))
        if kind == "summary" and stage == 0:
            cursor.execute(_hot_sql(style, "SELECT headline_key FROM run WHERE id = ?"), (run_id,))
            found = cursor.fetchone()
            if found is not None and found[0] in values:
                cursor.execute(_hot_sql(style, "UPDATE run SET headline_value = ? WHERE id = ?"),
                               (_clean(values[found[0]])[0], run_id))


def append_epoch(
    db: Database,
    run_id: int,
    epoch: int,
    metrics: Mapping[str, float],
    per_layer: Mapping[int, Mapping[str, float]],
    *,
    stage: int = 0,
    total: int | None = None,
    seq: int | None = None,
) -> None:
    """One training epoch in one transaction: its run-level metrics (latest-metric upkeep and the
    run's progress, as an ``epoch`` event) and its per-layer metrics (as a ``layer`` event).

    A reader never sees the epoch without its layers, and the epoch costs one commit instead of
    two. With ``seq`` the whole epoch is skipped when already applied (a replayed event).
    """
    now = time.time()
    rows: list[tuple] = []
    _metric_rows(rows, run_id, "epoch", stage, epoch, None, metrics, now)
    run_level = len(rows)
    for layer, values in per_layer.items():
        _metric_rows(rows, run_id, "layer", stage, epoch, int(layer), values, now)
    claiming = seq is not None
    run_sql = _RUN_SQL[(_RUN_PROGRESS, claiming)]
    run_params = (now, epoch, stage, total, seq, run_id, seq) if claiming else (now, epoch, stage, total, run_id)
    with db.driver_write() as tx:
        cursor, style = tx.cursor, tx.paramstyle
        qmark = style == "qmark"
        cursor.execute(run_sql if qmark else _hot_sql(style, run_sql), run_params)
        if claiming and cursor.rowcount == 0:
            return  # applied before (a replayed event), or no such run
        if rows:
            _insert_rows(cursor, style, _HOT_INSERT_METRIC, rows)
        if run_level:
            _insert_rows(cursor, style, _HOT_UPSERT_LATEST, _latest_rows(rows[:run_level]))


def set_stage(db: Database, run_id: int, stage: int, name: str, epochs: int | None, *, seq: int | None = None) -> None:
    with db.write() as conn:
        if not _first_time(conn, run_id, seq):
            return
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(
            stage=stage, stage_name=name, epoch=0, total_epochs=epochs, updated_at=time.time()))
        conn.execute(LOG.insert().values(run_id=run_id, ts=time.time(), source="worker",
                                         message=f"stage {stage}: {name}"))


def merge_info(db: Database, run_id: int, fields: Mapping[str, Any], *, seq: int | None = None) -> None:
    with db.write() as conn:
        if not _first_time(conn, run_id, seq):
            return
        current = conn.execute(select(RUN.c.info_json).where(RUN.c.id == run_id)).scalar() or "{}"
        info, problem = decode_json_object(current)
        if problem:  # keep what the damaged text said, out of the way, instead of failing every event
            info["_damaged_info_json"] = current[:2000]
        info.update(fields)
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(
            info_json=json.dumps(info, default=str), updated_at=time.time()))


def add_table(db: Database, run_id: int, name: str, rows: Sequence[Mapping[str, Any]], *, stage: int = 0,
              seq: int | None = None) -> None:
    with db.write() as conn:
        if not _first_time(conn, run_id, seq):
            return
        conn.execute(TABLE.insert().values(run_id=run_id, stage=stage, name=name, ts=time.time(),
                                           rows_json=json.dumps([dict(r) for r in rows], default=_json_default)))
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(updated_at=time.time()))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def add_log(db: Database, run_id: int, message: str, *, source: str = "worker", seq: int | None = None) -> None:
    with db.write() as conn:
        if not _first_time(conn, run_id, seq):
            return
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
        return [_table_record(r.name, r.stage, r.rows_json) for r in rows]


def _table_record(name: str, stage: int, rows_json: str | None) -> dict[str, Any]:
    """An analysis table as a dict; a damaged ``rows_json`` gives no rows and says so (``damaged``)."""
    rows, problem = decode_json_list(rows_json)
    return {"name": name, "stage": stage, "rows": rows, **({"damaged": problem} if problem else {})}


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

def register_scheduler(db: Database, *, host: str, pid: int, slots: str, stale_after: float,
                       name: str | None = None):
    """Take the scheduler lease ``name`` (default: the host name) unless a live holder has it.

    Atomic (one upsert, see :mod:`core.registry.leases`). Returns the held
    :class:`~core.registry.leases.Lease`, or None.
    """
    from core.registry import leases

    return leases.acquire(db, name=name or host, host=host, pid=pid, slots=slots, stale_after=stale_after)


def beat(db: Database, lease) -> bool:
    """Renew a scheduler lease; False when another scheduler took it over (fenced off)."""
    from core.registry import leases

    return leases.renew(db, lease)


def unregister_scheduler(db: Database, lease) -> None:
    from core.registry import leases

    leases.release(db, lease)


def live_schedulers(db: Database, *, stale_after: float, name: str | None = None) -> list[dict[str, Any]]:
    """Schedulers holding a fresh lease: dicts with name, host, pid, slots, started_at, beat_at, epoch."""
    from core.registry import leases

    return [dict(row, id=row["name"]) for row in leases.live(db, stale_after=stale_after, name=name)]
