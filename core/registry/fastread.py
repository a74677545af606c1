"""Read-only listings of a SQLite registry with the standard library alone.

``hrm ls --json`` and ``hrm show --json`` are one small query each; going through SQLAlchemy and the
SQLModel tables costs ten times the query in start-up alone. This module reads the same rows with
:mod:`sqlite3` and builds the same ``hrm.runs/v1`` records through :class:`~core.registry.view.RunView`,
so the two paths cannot drift apart in shape (``tests/test_cli_fastread.py`` checks they are equal).

Anything unusual (not a plain SQLite file, missing, not at the current schema version, a read that
fails) makes :func:`connect` return ``None``: callers then take the full path, which knows how to
report, create or migrate.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from core.registry.decode import decode_json_list
from core.registry.view import FALLBACK_KEY, RunView

SCHEMA_VERSION = 3
"""The schema this reader understands: ``core.registry.models.SCHEMA_VERSION`` (a test keeps them equal)."""
_CHUNK = 900
_BOOLEAN_COLUMNS = {"cancel_requested", "is_nan"}


def sqlite_file(target: str | os.PathLike | None) -> Path | None:
    """The registry file a ``--db`` value names, or None when it is not a plain SQLite file."""
    text = str(target) if target is not None else os.environ.get("HRM_DB", "runs.db")
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):].split("?", 1)[0]
        if not text.startswith("/"):
            return None  # relative URL forms: leave them to the full path
    elif "://" in text or not text.strip() or ":memory:" in text:
        return None
    return Path(text).expanduser()


def is_current_registry(conn: sqlite3.Connection) -> bool:
    """Whether ``hrm_meta`` names this schema version and a registry id; anything else is the full path's
    to create, migrate or report. Raises :class:`sqlite3.Error` where ``hrm_meta`` cannot be read."""
    meta = dict(conn.execute("SELECT key, value FROM hrm_meta"))
    return str(meta.get("schema_version", "")).strip() == str(SCHEMA_VERSION) and bool(meta.get("registry_id"))


def connect(target: str | os.PathLike | None) -> sqlite3.Connection | None:
    """A read-only connection to a current-schema registry, or None (use the full path then)."""
    path = sqlite_file(target)
    try:
        if path is None or not path.is_file():
            return None
    except OSError:  # a name too long, a folder we may not enter: the full path says why in one line
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=2.0)
    except (sqlite3.Error, OSError):
        return None
    try:
        current = is_current_registry(conn)
    except sqlite3.Error:
        current = False
    if not current:
        conn.close()
        return None
    conn.isolation_level = None  # explicit BEGIN/COMMIT: one snapshot per listing
    return conn


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Result rows as dicts by column name, SQLite's 0/1 booleans back to ``bool``."""
    cursor = conn.execute(sql, tuple(params))
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    for name in _BOOLEAN_COLUMNS.intersection(names):
        for row in rows:
            row[name] = bool(row[name])
    return rows


def _where(statuses: Sequence[str], experiment: str | None, tag: str | None,
           ids: Sequence[int] | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if statuses:
        clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
        params += [str(s) for s in statuses]
    if experiment:
        clauses.append("experiment = ?")
        params.append(experiment)
    if tag:
        clauses.append("id IN (SELECT run_id FROM runtag WHERE tag = ?)")
        params.append(tag)
    if ids is not None:
        clauses.append(f"id IN ({', '.join('?' * len(ids))})" if ids else "0")
        params += [int(i) for i in ids]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def count_runs(conn: sqlite3.Connection, *, statuses: Sequence[str] = (), experiment: str | None = None,
               tag: str | None = None) -> int:
    """How many runs match the filters (for "N more not shown")."""
    where, params = _where(statuses, experiment, tag, None)
    return conn.execute(f"SELECT count(*) FROM run{where}", params).fetchone()[0]


def _by_run(conn: sqlite3.Connection, sql: str, ids: Sequence[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        out += _rows(conn, sql.format(ids=", ".join("?" * len(chunk))), chunk)
    return out


def list_records(conn: sqlite3.Connection, *, statuses: Sequence[str] = (), experiment: str | None = None,
                 tag: str | None = None, last: int | None = None, offset: int = 0,
                 ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """``hrm.runs/v1`` records, newest first: what ``core.api.list_records`` returns for these filters."""
    return [view.record(latest) for view, latest in _views(conn, statuses, experiment, tag, last, offset, ids)]


def list_views(conn: sqlite3.Connection, *, last: int | None = None) -> list[RunView]:
    """The newest runs as views (what ``core.api.list_runs(last=...)`` returns): the dashboard's first page."""
    return [view for view, _latest in _views(conn, (), None, None, last, 0, None)]


def count_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM run GROUP BY status"))


def _views(conn: sqlite3.Connection, statuses: Sequence[str], experiment: str | None, tag: str | None,
           last: int | None, offset: int, ids: Sequence[int] | None) -> list[tuple[RunView, list[dict[str, Any]]]]:
    where, params = _where(statuses, experiment, tag, ids)
    sql = f"SELECT * FROM run{where} ORDER BY id DESC"
    if last or offset:
        sql += " LIMIT ? OFFSET ?"
        params += [int(last) if last else -1, int(offset)]
    conn.execute("BEGIN")  # one snapshot for the runs and their tags and metrics
    try:
        runs = _rows(conn, sql, params)
        run_ids = [r["id"] for r in runs]
        tags: dict[int, list[str]] = {}
        for row in _by_run(conn, "SELECT run_id, tag FROM runtag WHERE run_id IN ({ids}) ORDER BY run_id, tag", run_ids):
            tags.setdefault(row["run_id"], []).append(row["tag"])
        latest: dict[int, list[dict[str, Any]]] = {i: [] for i in run_ids}
        for row in _by_run(conn, "SELECT * FROM latestmetric WHERE run_id IN ({ids})", run_ids):
            latest[row["run_id"]].append(row)
    finally:
        conn.execute("COMMIT")
    best = {(m["run_id"], m["stage"]): m["min"] for rows in latest.values() for m in rows if m["key"] == FALLBACK_KEY}
    return [(RunView.from_row(r, tags=tags.get(r["id"], ()), running_best=best.get((r["id"], r["stage"]))),
             latest[r["id"]]) for r in runs]


def run_details(conn: sqlite3.Connection, run_id: int) -> dict[str, Any] | None:
    """``hrm show --json``'s run: its record with every metric row and analysis table, or None."""
    found = list_records(conn, ids=[run_id])
    if not found:
        return None
    record = found[0]
    metrics = _rows(conn, "SELECT * FROM metric WHERE run_id = ? AND id > 0 ORDER BY id", [run_id])
    for row in metrics:
        if row["is_nan"]:
            row["value"] = math.nan
    tables = [_table_record(t["name"], t["stage"], t["rows_json"])
              for t in _rows(conn, "SELECT * FROM resulttable WHERE run_id = ? ORDER BY id", [run_id])]
    record["metrics"] = metrics
    record["tables"] = tables
    record.update(_attempts(conn, run_id))
    return record


def _attempts(conn: sqlite3.Connection, run_id: int) -> dict[str, Any]:
    """``attempts`` and ``checkpoint`` of ``hrm show --json`` (shaped by :mod:`core.registry.attempt_view`)."""
    from core.registry.attempt_view import attempt_records, checkpoint_record

    run = _rows(conn, "SELECT * FROM run WHERE id = ?", [run_id])[0]
    try:
        archived = _rows(conn, "SELECT * FROM runattempt WHERE run_id = ? ORDER BY attempt", [run_id])
    except sqlite3.OperationalError:  # a registry from before attempts were recorded: none archived
        archived = []
    return {"attempts": attempt_records(archived, run), "checkpoint": checkpoint_record(run.get("checkpoint_json"))}


def _table_record(name: str, stage: int, rows_json: str | None) -> dict[str, Any]:
    """An analysis table as a dict; a damaged ``rows_json`` gives no rows and says so (``damaged``)."""
    rows, problem = decode_json_list(rows_json)
    return {"name": name, "stage": stage, "rows": rows, **({"damaged": problem} if problem else {})}
