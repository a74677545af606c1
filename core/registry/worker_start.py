"""A worker's first writes, with the standard library's SQLite driver, before its heavy imports.

A loaded machine takes seconds to import SQLAlchemy, the tables and torch; the run should show
``running`` and keep beating meanwhile. These two writes are the only SQL a worker runs outside
:mod:`core.registry.store`, and they only ever apply to a plain ``sqlite:///path`` registry: anything
else (options in the URL, in memory, a server) returns None and the worker takes the full path.
Keep the imports to the standard library.
"""

from __future__ import annotations

import os
import sqlite3
import time

_STARTABLE = ("queued", "starting", "running")


def sqlite_file(url: str) -> str | None:
    """The file of a plain ``sqlite:///path`` URL (None for anything with options or in memory)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix):]
    return path if path and path != ":memory:" else None


def quick_start(url: str, run_id: int, pid: int, host: str) -> str | None:
    """Mark the run ``running``: ``running``, ``refused`` (cancelled or ended before it started),
    ``missing``, or None when this URL needs the full path (then nothing was written)."""
    path = sqlite_file(url)
    if path is None or not os.path.exists(path):
        return None
    now = time.time()
    try:
        conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            changed = conn.execute(
                "UPDATE run SET status = 'running', pid = ?, host = ?, started_at = ?, updated_at = ?, heartbeat_at = ?, "
                "info_json = '{}' "
                "WHERE id = ? AND status IN (?, ?, ?) AND NOT cancel_requested",
                (pid, host, now, now, now, run_id, *_STARTABLE)).rowcount
            exists = changed or conn.execute("SELECT 1 FROM run WHERE id = ?", (run_id,)).fetchone() is not None
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error:
        return None  # an old schema, a locked file: the full path says what is wrong
    finally:
        conn.close()
    if changed == 1:
        return "running"
    return "refused" if exists else "missing"


def early_beat(path: str, run_id: int, pid: int, *, timeout: float) -> None:
    """One heartbeat of a running run this worker owns; errors are dropped (the full heartbeat
    takes over in a moment and says what is wrong)."""
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        try:
            conn.execute("UPDATE run SET heartbeat_at = ? WHERE id = ? AND status = 'running' AND pid = ?",
                         (time.time(), run_id, pid))
        finally:
            conn.close()
    except sqlite3.Error:
        pass
