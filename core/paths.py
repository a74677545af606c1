"""Where a registry keeps its files: ``hrm-runs/<id>/worker.log`` next to a SQLite registry."""

from __future__ import annotations

import os
from pathlib import Path

from core.registry.db import sqlite_path


def runs_root(db_url: str) -> Path:
    """``<registry folder>/hrm-runs`` for SQLite, ``$HRM_HOME`` (default ``./hrm-runs``) otherwise."""
    path = sqlite_path(db_url)
    if path is not None:
        return path.parent / "hrm-runs"
    return Path(os.environ.get("HRM_HOME", "hrm-runs")).resolve()


def run_dir(db_url: str, run_id: int) -> Path:
    return runs_root(db_url) / str(run_id)


def worker_log(db_url: str, run_id: int) -> Path:
    """The worker's stdout and stderr (stray prints, tracebacks, library warnings)."""
    return run_dir(db_url, run_id) / "worker.log"


def scheduler_log(db_url: str) -> Path:
    return runs_root(db_url) / "scheduler.log"


def tail(path: Path, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a text file ('' when missing)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
