"""Queueing a run in a SQLite registry with the standard library alone.

``hrm run X`` is a short process whose start-up is most of its cost: SQLAlchemy and the SQLModel tables
take several times longer to import than the rest of the command. This module writes the same
``queued`` row that :func:`core.registry.store.create_run` writes, with :mod:`sqlite3`: the same id
allocation (never reusing an id, through the ``run_id_high_water`` mark), the same column values and
defaults, the tags, one ``BEGIN IMMEDIATE`` transaction with the same bounded wait for the lock and the
same pragmas (WAL, ``$HRM_DURABILITY``). ``tests/test_fast_submit.py`` checks that both paths produce
equal rows and that :data:`RUN_DEFAULTS` matches the ``Run`` table.

Anything unusual (not a plain SQLite file, missing, read-only, not at the current schema, a ``run``
table whose columns are not exactly the ones known here, a bad ``$HRM_DURABILITY``) makes
:func:`connect` return ``None``: callers then take the full path, which creates, migrates or reports.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from core.registry.fastread import is_current_registry, sqlite_file
from core.registry.run_ids import NEXT_RUN_ID, RAISE_HIGH_WATER

RUN_DEFAULTS: dict[str, Any] = {
    "experiment": None, "variant": "corrected", "config_json": "{}", "status": "queued", "priority": 0,
    "created_at": 0.0, "updated_at": 0.0, "started_at": None, "finished_at": None, "host": None, "pid": None,
    "gpu": None, "exit_code": None, "cancel_requested": False, "error": None, "stderr_tail": None,
    "info_json": "{}", "retry_of": None, "stage": 0, "stage_name": None, "epoch": 0, "total_epochs": None,
    "headline_key": None, "headline_value": None, "note": None, "imported_from": None, "target_host": None,
    "scheduler_name": None, "heartbeat_at": None, "event_seq": 0, "output_bytes": 0, "attempt": 1,
    "max_retries": None, "on_finish": None, "webhook": None, "notified_attempt": 0, "checkpoint_json": None,
    "executor": None, "external_id": None, "external_state": None,
}
"""Every column of ``run`` but ``id``, with the default of ``core.registry.models.Run`` (a test keeps them equal)."""

LOCK_SLICE_S = 2.0
"""SQLite's busy timeout per attempt (``core.registry.db.LOCK_SLICE_MS``)."""
LOCK_TIMEOUT_S = 60.0
"""How long a write waits for another writer (``core.registry.db.LOCK_TIMEOUT_S``, ``$HRM_LOCK_TIMEOUT``)."""
JOURNAL_SIZE_LIMIT = 8 * 2**20
SCHEDULER_STALE_AFTER = 10.0
"""A scheduler whose lease is older than this is gone (``core.scheduler.loop.HEARTBEAT_STALE_AFTER``)."""
_SYNC = {"normal": "NORMAL", "full": "FULL"}


class LockTimeout(RuntimeError):
    """Another writer held the registry past the lock timeout (the message is the full path's)."""


def _settings() -> tuple[str, float] | None:
    """(synchronous pragma, lock timeout) from the environment, or None when either is invalid
    (the full path then reports it in one line)."""
    mode = os.environ.get("HRM_DURABILITY", "normal").strip().lower() or "normal"
    raw = os.environ.get("HRM_LOCK_TIMEOUT")
    try:
        wait_s = float(raw) if raw else LOCK_TIMEOUT_S
    except ValueError:
        return None
    if mode not in _SYNC or not wait_s > 0:
        return None
    return _SYNC[mode], wait_s


class FastRegistry:
    """A writable connection to a current-schema SQLite registry, set up as ``core.registry.db`` sets its own."""

    def __init__(self, conn: sqlite3.Connection, path: str, lock_timeout: float) -> None:
        self.conn = conn
        self.path = path
        self.lock_timeout = lock_timeout

    @property
    def url(self) -> str:
        """The registry as ``core.registry.db`` names it: a ``sqlite:///`` URL of the absolute path."""
        return f"sqlite:///{self.path}"

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> FastRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _begin_immediate(self) -> None:
        started = time.monotonic()
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                message = str(exc).lower()
                if "locked" not in message and "busy" not in message:
                    raise
                waited = time.monotonic() - started
                if waited >= self.lock_timeout:
                    raise LockTimeout(
                        f"registry {self.path} stayed locked by another writer for {waited:.0f} s "
                        f"(a stopped hrm process? raise HRM_LOCK_TIMEOUT to wait longer)") from None

    def create_run(self, experiment: str, config: Mapping[str, Any], *, tags: Sequence[str] = (),
                   priority: int = 0, retry_of: int | None = None, headline_key: str | None = None,
                   target_host: str | None = None, executor: str | None = None) -> dict[str, Any]:
        """Queue a run: what ``store.create_run`` does, returning the new row as a dict of columns."""
        now = time.time()
        values = dict(RUN_DEFAULTS)
        values.update({
            "experiment": experiment, "variant": str(config.get("variant", "corrected")),
            "config_json": json.dumps(dict(config), sort_keys=True), "status": "queued", "priority": priority,
            "created_at": now, "updated_at": now, "retry_of": retry_of, "headline_key": headline_key,
            "info_json": "{}",
        })
        if target_host is not None:
            values["target_host"] = target_host
        if executor is not None:
            values["executor"] = executor
        conn = self.conn
        self._begin_immediate()
        try:
            run_id = conn.execute(NEXT_RUN_ID).fetchone()[0]
            columns = ["id", *values]
            conn.execute(f"INSERT INTO run ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         [run_id, *values.values()])
            conn.execute(RAISE_HIGH_WATER, (str(int(run_id)),))
            if tags:
                conn.executemany("INSERT INTO runtag (run_id, tag) VALUES (?, ?)",
                                 [(run_id, t) for t in dict.fromkeys(tags)])
            cursor = conn.execute("SELECT * FROM run WHERE id = ?", (run_id,))
            names = [d[0] for d in cursor.description]
            row = dict(zip(names, cursor.fetchone()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        row["cancel_requested"] = bool(row["cancel_requested"])
        return row

    def scheduler_alive(self, name: str | None = None) -> bool:
        """Does a scheduler (``name``: the one of that name) hold a fresh lease? (``core.api.scheduler_alive``)"""
        sql = "SELECT 1 FROM schedulerlease WHERE beat_at > ?"
        params: list[Any] = [time.time() - SCHEDULER_STALE_AFTER]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        return self.conn.execute(sql + " LIMIT 1", params).fetchone() is not None


def local_scheduler_name() -> str:
    """This host's scheduler name (``core.api.local_scheduler_name``)."""
    return socket.gethostname()


def connect(target: str | os.PathLike | None) -> FastRegistry | None:
    """A writable registry ready for :meth:`FastRegistry.create_run`, or None (use the full path then)."""
    path = sqlite_file(target)
    settings = _settings()
    if path is None or settings is None:
        return None
    sync, wait_s = settings
    try:
        if not path.is_file() or not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            return None
        absolute = str(path.resolve())
        conn = sqlite3.connect(absolute, timeout=LOCK_SLICE_S, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error, ValueError):
        return None
    try:
        if not (is_current_registry(conn)
                and {row[1] for row in conn.execute("PRAGMA table_info(run)")} == {"id", *RUN_DEFAULTS}
                and str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"):
            conn.close()
            return None
        conn.execute(f"PRAGMA busy_timeout = {int(LOCK_SLICE_S * 1000)}")
        conn.execute(f"PRAGMA synchronous = {sync}")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error:
        conn.close()
        return None
    return FastRegistry(conn, absolute, wait_s)
