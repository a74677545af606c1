"""Engines and transactions: the only module that knows how to open a registry.

SQLite gets WAL (readers never block the writer), a busy timeout, and ``BEGIN IMMEDIATE`` for
write transactions, so that concurrent writers queue on the lock instead of failing with
"database is locked" when a read transaction tries to upgrade. A PostgreSQL URL works as is.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from core.registry import migrations
from core.registry.models import SCHEMA_VERSION, Meta, SQLModel

BUSY_TIMEOUT_MS = 60_000
DEFAULT_DB = "runs.db"


class RegistryError(Exception):
    """A registry that cannot be used: missing, unreadable, not hrm's, or too new. One-line message."""


def resolve_db_url(db: str | os.PathLike | None) -> str:
    """A path or a SQLAlchemy URL → a URL. ``None`` → ``$HRM_DB`` or ``./runs.db``."""
    db = str(db) if db is not None else os.environ.get("HRM_DB", DEFAULT_DB)
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _install_sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:  # pragma: no cover - exercised by every test
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("hrm_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the SQLite pragmas installed."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})
            _install_sqlite_pragmas(engine)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise RegistryError(f"cannot open registry {url}: {exc}") from None


class Database:
    """An opened, schema-checked registry: ``read()`` and ``write()`` transactions."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self._write_engine = engine.execution_options(hrm_write=True)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A short write transaction (``BEGIN IMMEDIATE`` on SQLite): keep the body small."""
        with self._write_engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(db: str | os.PathLike | None = None, *, create: bool = True) -> Database:
    """Open (and with ``create``, initialise or migrate) the registry at ``db``.

    Raises :class:`RegistryError` with a one-line reason for a missing file (when not
    creating), a file that is not SQLite, a database that is not an hrm registry, or one
    written by a newer hrm.
    """
    url = resolve_db_url(db)
    path = sqlite_path(url)
    if path is not None:
        if not path.exists() and not create:
            raise RegistryError(f"no registry at {path} (queue a run with `hrm run` to create one)")
        if path.exists() and path.is_dir():
            raise RegistryError(f"{path} is a directory, not a registry file")
        if not path.exists() and not path.parent.exists():
            raise RegistryError(f"cannot create registry {path}: folder {path.parent} does not exist")
    engine = make_engine(url)
    try:
        _check_schema(engine, url, create=create)
    except (DatabaseError, sqlite3.DatabaseError) as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise RegistryError(f"cannot read registry {path or url}: {reason}") from None
    except RegistryError:
        engine.dispose()
        raise
    return Database(url, engine)


def _check_schema(engine: Engine, url: str, *, create: bool) -> None:
    tables = set(inspect(engine).get_table_names())
    if "hrm_meta" not in tables:
        if tables:
            raise RegistryError(f"{url} is not an hrm registry (it has tables {', '.join(sorted(tables)[:4])}...)")
        if not create:
            raise RegistryError(f"{url} is an empty database, not an hrm registry")
        _create_schema(engine)
        return
    with engine.begin() as conn:
        row = conn.execute(Meta.__table__.select().where(Meta.__table__.c.key == "schema_version")).first()
    version = int(row.value) if row else 0
    if version > SCHEMA_VERSION:
        raise RegistryError(
            f"registry schema v{version} was written by a newer hrm (this one reads up to v{SCHEMA_VERSION}): upgrade hrm-tui"
        )
    if version < SCHEMA_VERSION:
        migrations.upgrade(engine, version, SCHEMA_VERSION)


def _create_schema(engine: Engine) -> None:
    try:
        SQLModel.metadata.create_all(engine)
    except OperationalError as exc:
        raise RegistryError(f"cannot create registry: {str(exc.orig).splitlines()[0]}") from None
    with engine.begin() as conn:
        conn.execute(Meta.__table__.insert(), [
            {"key": "schema_version", "value": str(SCHEMA_VERSION)},
            {"key": "created_by", "value": "hrm-tui"},
        ])
