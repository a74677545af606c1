"""Where a registry keeps its files: ``hrm-runs/<registry key>/<id>/worker.log`` next to a SQLite registry.

Run folders are keyed by the registry (its file stem and the first 8 hex digits of the id stamped
in ``hrm_meta``), so two registries in one folder, or a registry deleted and created again, never
share ``hrm-runs/<id>/``. A registry from before the stamp keeps reading its old runs' logs from
the flat layout (``hrm-runs/<id>/``), for the ids it had then. Files are created and opened without
following symlinks, so a link planted at ``worker.log`` cannot redirect a worker's output.

Every function takes an opened :class:`~core.registry.db.Database` or its URL.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import IO

from core.registry.db import _OPENED, Database, RegistryError, is_memory_url, open_database, sqlite_path

RUNS_FOLDER = "hrm-runs"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _identity(db: Database | str) -> tuple[str, str | None, int]:
    """(url, registry id, legacy bound) without opening the registry again when this process has it open."""
    if isinstance(db, Database):
        return db.url, db.registry_id, db.legacy_run_dirs_below
    if db not in _OPENED:
        if is_memory_url(db):
            _refuse_memory()
        opened = open_database(db, create=False)
        opened.dispose()
    registry_id, legacy = _OPENED[db]
    return db, registry_id, legacy


def _refuse_memory() -> None:
    raise RegistryError("an in-memory registry (sqlite:///:memory:) lives inside one process: a scheduler or "
                        "worker process cannot see it, and it has no run folders; use a file (--db runs.db)")


def _base(url: str) -> Path:
    """``<registry folder>/hrm-runs`` for SQLite, ``$HRM_HOME`` (default ``./hrm-runs``) otherwise."""
    if is_memory_url(url):
        _refuse_memory()
    path = sqlite_path(url)
    if path is not None:
        return path.parent / RUNS_FOLDER
    return Path(os.environ.get("HRM_HOME", RUNS_FOLDER)).resolve()


def registry_key(url: str, registry_id: str | None) -> str | None:
    """``<stem>-<id8>``: readable, and unique per registry. None for an unstamped (read-only, old) one."""
    if not registry_id:
        return None
    path = sqlite_path(url)
    if path is not None:
        stem = path.stem
    else:
        from core.registry.url import parse_url

        stem = parse_url(url).database or "registry"
    stem = _UNSAFE.sub("_", stem).strip("._")[:40] or "registry"
    return f"{stem}-{registry_id[:8]}"


def runs_root(db: Database | str) -> Path:
    """The folder holding this registry's run folders and its scheduler log."""
    url, registry_id, _ = _identity(db)
    key = registry_key(url, registry_id)
    return _base(url) / key if key else _base(url)


def run_dir(db: Database | str, run_id: int) -> Path:
    url, registry_id, legacy_below = _identity(db)
    key = registry_key(url, registry_id)
    if key is None:
        return _base(url) / str(run_id)
    keyed = _base(url) / key / str(run_id)
    if run_id < legacy_below and not os.path.lexists(keyed):
        flat = _base(url) / str(run_id)
        if flat.is_dir() and not flat.is_symlink():
            return flat
    return keyed


def worker_log(db: Database | str, run_id: int) -> Path:
    """The worker's stdout and stderr (stray prints, tracebacks, library warnings)."""
    return run_dir(db, run_id) / "worker.log"


def scheduler_log(db: Database | str) -> Path:
    return runs_root(db) / "scheduler.log"


def make_dirs_nofollow(path: Path) -> None:
    """``mkdir -p`` below the registry folder that refuses a symlink anywhere it creates or enters."""
    path = Path(os.path.abspath(path))
    existing = path
    missing: list[str] = []
    while not os.path.lexists(existing):
        missing.append(existing.name)
        existing = existing.parent
    fd = os.open(existing, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in reversed(missing):
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    if path.is_symlink():
        raise OSError(f"{path} is a symbolic link; refusing to write through it")


def open_append_nofollow(path: Path) -> IO[bytes]:
    """Open ``path`` for appending, creating it (0600) and its folders; never through a symlink."""
    make_dirs_nofollow(path.parent)
    for parent in (path.parent, path.parent.parent):
        if parent.is_symlink():
            raise OSError(f"{parent} is a symbolic link; refusing to write through it")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "ab")


def open_worker_log(db: Database | str, run_id: int) -> IO[bytes]:
    """The worker log of a run, opened for appending (what the scheduler hands the worker as stdout)."""
    return open_append_nofollow(worker_log(db, run_id))


def open_scheduler_log(db: Database | str) -> IO[bytes]:
    return open_append_nofollow(scheduler_log(db))


def remove_run_dir(db: Database | str, run_id: int) -> None:
    """Delete a run's folder (``hrm delete``); a symlink in its place is removed, never followed."""
    target = run_dir(db, run_id)
    if target.is_symlink() or target.is_file():
        target.unlink(missing_ok=True)
    elif target.is_dir():
        shutil.rmtree(target, ignore_errors=True)


def tail(path: Path, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a text file ('' when missing or a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        with os.fdopen(fd, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
