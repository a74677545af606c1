"""Engines and transactions: the only module that knows how to open a registry.

SQLite gets WAL (readers never block the writer), ``BEGIN IMMEDIATE`` for write transactions (so
concurrent writers queue on the lock instead of failing when a read transaction tries to upgrade),
and a bounded wait for that lock: a writer stuck inside its transaction makes the others wait,
log, and finally give a one-line :class:`RegistryError` instead of a traceback. A PostgreSQL URL
works as is (a password may come from ``$HRM_DB_PASSWORD`` or libpq's ``~/.pgpass``).

Opening never changes a file that is not ours: a SQLite file is inspected on a plain read-only
connection (no WAL switch) before anything else, and foreign, truncated or random files are
refused untouched. Creating and migrating happen under a lock (a ``<db>.lock`` file for SQLite,
an advisory lock on PostgreSQL), so any number of processes can open a fresh or older registry at
once. A registry that cannot be written (read-only file, folder or medium) opens read-only.

Durability, ``HRM_DURABILITY``: ``normal`` (the default) commits with SQLite's WAL +
``synchronous=NORMAL``: a killed process never loses a committed row, an OS crash or power cut can
lose the last commits. ``full`` (``synchronous=FULL``, what MLflow uses) syncs every commit, so not
even a power cut loses one, at a few times the cost per commit. PostgreSQL always commits durably.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import re
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from core.registry import migrations
from core.registry.models import SCHEMA_VERSION, SQLModel
from core.registry.url import parse_url, redact_url, with_env_password

log = logging.getLogger("hrm.registry")

DEFAULT_DB = "runs.db"
DURABILITY_ENV = "HRM_DURABILITY"
DURABILITY_MODES = {"normal": "NORMAL", "full": "FULL"}
LOCK_TIMEOUT_ENV = "HRM_LOCK_TIMEOUT"
LOCK_TIMEOUT_S = 60.0
"""How long a write waits for another writer's transaction before giving up (``$HRM_LOCK_TIMEOUT``)."""
LOCK_SLICE_MS = 2_000
"""SQLite's busy timeout per attempt; between attempts the wait is logged."""
WAL_CHECK_EVERY = 64
WAL_TRUNCATE_ABOVE = 32 * 2**20
JOURNAL_SIZE_LIMIT = 8 * 2**20
_PG_LOCK_KEY = 0x68726D5F  # "hrm_": the advisory lock held while creating or migrating
_SQLITE_HEADER = b"SQLite format 3\x00"

# hrm_meta keys
META_VERSION = "schema_version"
META_REGISTRY_ID = "registry_id"
META_RUN_ID_HIGH_WATER = "run_id_high_water"
META_LEGACY_RUN_DIRS_BELOW = "legacy_run_dirs_below"
META_UPGRADES = "upgrade_log"


class RegistryError(Exception):
    """A registry that cannot be used: missing, unreadable, not hrm's, too new, locked or read-only. One line."""


def resolve_db_url(db: str | os.PathLike | None) -> str:
    """A path or a SQLAlchemy URL → a URL. ``None`` → ``$HRM_DB`` or ``./runs.db``."""
    db = str(db) if db is not None else os.environ.get("HRM_DB", DEFAULT_DB)
    if not db.strip():
        raise RegistryError("empty registry path (give a file name or a database URL)")
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def is_memory_url(url: str) -> bool:
    try:
        parsed = parse_url(url)
    except ValueError:
        return False
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def durability() -> str:
    """``normal`` or ``full`` from ``$HRM_DURABILITY`` (see the module docstring)."""
    mode = os.environ.get(DURABILITY_ENV, "normal").strip().lower() or "normal"
    if mode not in DURABILITY_MODES:
        raise RegistryError(f"{DURABILITY_ENV}={mode!r} is not one of {', '.join(DURABILITY_MODES)}")
    return mode


def lock_timeout() -> float:
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if not raw:
        return LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise RegistryError(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise RegistryError(f"{LOCK_TIMEOUT_ENV} must be positive (got {raw})")
    return value


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def _is_busy(exc: BaseException) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


# --- engines ----------------------------------------------------------------------------------

def _install_sqlite_hooks(engine: Engine, *, read_only: bool, label: str) -> None:
    sync = DURABILITY_MODES[durability()]
    wait_s = lock_timeout()

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:  # pragma: no cover - exercised by every test
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {LOCK_SLICE_MS}")
        if not read_only:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {sync}")
            cursor.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        if not connection.get_execution_options().get("hrm_write", False):
            connection.exec_driver_sql("BEGIN")
            return
        _begin_immediate(connection.connection.driver_connection, label, wait_s)


def _begin_immediate(driver: sqlite3.Connection, label: str, wait_s: float) -> None:
    """Take the write lock, waiting at most ``wait_s`` for another writer (logged while it lasts)."""
    started = time.monotonic()
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            waited = time.monotonic() - started
            if waited >= wait_s:
                raise RegistryError(
                    f"registry {label} stayed locked by another writer for {waited:.0f} s "
                    f"(a stopped hrm process? raise {LOCK_TIMEOUT_ENV} to wait longer)") from None
            log.warning("registry %s locked by another writer for %.0f s; still waiting", label, waited)


def _sqlite_uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quote(str(path))}" + (f"?{query}" if query else "")


def _make_sqlite_engine(url: str, path: Path | None, *, read_only: bool = False, immutable: bool = False) -> Engine:
    label = str(path) if path is not None else url
    if read_only and path is not None:
        uri = _sqlite_uri(path, **({"immutable": "1"} if immutable else {"mode": "ro"}))
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))
    elif path is None:  # in-memory: one connection shared by every thread of this process
        from sqlalchemy.pool import StaticPool

        engine = create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": LOCK_SLICE_MS / 1000})
    _install_sqlite_hooks(engine, read_only=read_only, label=label)
    return engine


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite pragmas installed; a server URL gets ``$HRM_DB_PASSWORD``)."""
    try:
        parsed = parse_url(url)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    try:
        if parsed.get_backend_name() == "sqlite":
            return _make_sqlite_engine(url, sqlite_path(url))
        return create_engine(with_env_password(parsed), pool_pre_ping=True)
    except (SQLAlchemyError, ImportError) as exc:
        raise RegistryError(f"cannot open registry {redact_url(url)}: {_first_line(exc)}") from None


# --- the opened registry ----------------------------------------------------------------------

T = TypeVar("T")


class Database:
    """An opened, schema-checked registry: ``read()`` and ``write()`` transactions.

    ``url`` is the full URL (children need it); show ``safe_url`` (password redacted) instead.
    """

    def __init__(self, url: str, engine: Engine, *, read_only: bool = False, registry_id: str | None = None,
                 legacy_run_dirs_below: int = 0) -> None:
        self.url = url
        self.safe_url = redact_url(url)
        self.engine = engine
        self.read_only = read_only
        self.registry_id = registry_id
        self.legacy_run_dirs_below = legacy_run_dirs_below
        self.path = sqlite_path(url)
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.is_memory = self.is_sqlite and self.path is None
        self._write_engine = engine.execution_options(hrm_write=True)
        self._writes = 0
        self._lock_wait = lock_timeout()
        self._hot = threading.local()
        self._hot_all: list = []
        _OPENED[url] = (registry_id, legacy_run_dirs_below)

    @property
    def shareable(self) -> bool:
        """False for an in-memory registry: no other process (scheduler, worker) can ever see it."""
        return not self.is_memory

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A short write transaction (``BEGIN IMMEDIATE`` on SQLite, bounded wait): keep the body small."""
        if self.read_only:
            raise RegistryError(f"registry {self.safe_url} is read-only: it can be listed, not changed")
        with self._write_engine.begin() as conn:
            yield conn
        self._writes += 1
        if self.path is not None and self._writes % WAL_CHECK_EVERY == 0:
            self._checkpoint_if_large()

    def driver_write(self) -> _DriverWrite:
        """The metric hot path: ``with db.driver_write() as tx:`` a write transaction on this
        thread's own driver connection, ``tx.cursor`` a cursor kept with it.

        SQLAlchemy's per-transaction machinery (pool checkout, events, statement compilation)
        costs several times the SQLite work of a small event; here the statements go straight
        to the driver (see :meth:`DriverTransaction.execute`). Same guarantees as :meth:`write`:
        ``BEGIN IMMEDIATE`` with the bounded lock wait, commit on return, rollback on error;
        driver errors surface as SQLAlchemy ``DBAPIError``s (so outage handling sees one kind).
        """
        if self.read_only:
            raise RegistryError(f"registry {self.safe_url} is read-only: it can be listed, not changed")
        hot = getattr(self._hot, "tx", None)
        if hot is None:
            proxied = self.engine.raw_connection()
            self._hot_all.append(proxied)
            driver = proxied.driver_connection
            hot = self._hot.tx = _DriverWrite(self, proxied, driver, DriverTransaction(
                driver.cursor(), self.engine.dialect.paramstyle))
        return hot

    def _abandon(self, hot: _DriverWrite) -> None:
        """Roll back after an error; a server connection is dropped (it may be broken), SQLite's kept."""
        try:
            hot.driver.rollback()
            if self.is_sqlite:
                return
        except Exception:  # noqa: BLE001 - the connection is gone: forget it below
            pass
        self._hot.tx = None
        if hot.proxied in self._hot_all:
            self._hot_all.remove(hot.proxied)
        try:
            hot.proxied.invalidate()
        except Exception:  # noqa: BLE001
            pass

    def write_retrying(self, body: Callable[[Connection], T], *, deadline_s: float | None = 300.0,
                       what: str = "write", backoff_max_s: float = 5.0) -> T:
        """Run ``body(conn)`` in a write transaction, retrying the whole transaction on transient errors.

        For long-lived writers (scheduler, worker): a lock held past the bounded wait, a full disk
        or a restarting PostgreSQL server is logged and retried with backoff until ``deadline_s``
        (``None``: forever); then a one-line :class:`RegistryError`. ``body`` must be idempotent
        up to its commit (a failed attempt is rolled back, never half-applied).
        """
        started = time.monotonic()
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.write() as conn:
                    return body(conn)
            except (RegistryError, DBAPIError, sqlite3.OperationalError) as exc:
                if not _is_transient(exc) or self.read_only:
                    raise
                waited = time.monotonic() - started
                if deadline_s is not None and waited >= deadline_s:
                    raise RegistryError(f"registry {self.safe_url}: {what} failed for {waited:.0f} s: "
                                        f"{_first_line(exc)}") from None
                log.warning("registry %s: %s failed (attempt %d, %.0f s): %s; retrying",
                            self.safe_url, what, attempt, waited, _first_line(exc))
                time.sleep(delay)
                delay = min(backoff_max_s, delay * 2)

    def _checkpoint_if_large(self) -> None:
        """Keep the WAL small under bursts: TRUNCATE-checkpoint when it passed ``WAL_TRUNCATE_ABOVE``.

        SQLite's automatic checkpoints are PASSIVE and never shrink the file; with readers polling
        all the time it grew to hundreds of MB. Readers are not waited for long (100 ms).
        """
        try:
            if os.stat(f"{self.path}-wal").st_size <= WAL_TRUNCATE_ABOVE:
                return
        except OSError:
            return
        with self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            driver.execute("PRAGMA busy_timeout = 100")
            try:
                driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                log.info("registry %s: WAL checkpoint skipped: %s", self.safe_url, exc)
            finally:
                driver.execute(f"PRAGMA busy_timeout = {LOCK_SLICE_MS}")

    def dispose(self) -> None:
        for proxied in self._hot_all:
            try:
                proxied.close()
            except Exception:  # noqa: BLE001 - closing a connection that already failed
                pass
        self._hot_all.clear()
        self._hot = threading.local()  # a fresh thread-local: every thread's hot transaction is gone
        self.engine.dispose()


class _DriverWrite:
    """The context manager behind :meth:`Database.driver_write` (a class: cheaper than a generator)."""

    __slots__ = ("db", "proxied", "driver", "tx", "label")

    def __init__(self, db: Database, proxied, driver, tx: DriverTransaction) -> None:
        self.db, self.proxied, self.driver, self.tx = db, proxied, driver, tx
        self.label = db.safe_url if db.path is None else str(db.path)

    def __enter__(self) -> DriverTransaction:
        if self.db.is_sqlite:
            try:
                self.driver.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._translate(exc) from exc
                _begin_immediate(self.driver, self.label, self.db._lock_wait)
        return self.tx

    def __exit__(self, exc_type, exc, tb) -> bool:
        db = self.db
        if exc is None:
            try:
                self.driver.commit()
            except BaseException as failed:
                db._abandon(self)
                raise self._translate(failed) from failed
            db._writes += 1
            if db.path is not None and db._writes % WAL_CHECK_EVERY == 0:
                db._checkpoint_if_large()
            return False
        db._abandon(self)
        translated = self._translate(exc)
        if translated is not exc:
            raise translated from exc
        return False

    def _translate(self, exc: BaseException) -> BaseException:
        dbapi = self.db.engine.dialect.loaded_dbapi
        if isinstance(exc, dbapi.Error):
            gone = self.db.engine.dialect.is_disconnect(exc, self.driver, self.tx.cursor)
            return DBAPIError.instance(None, None, exc, dbapi.Error, connection_invalidated=gone)
        return exc


class DriverTransaction:
    """A cursor inside :meth:`Database.driver_write`; SQL is written with ``:name`` placeholders."""

    __slots__ = ("cursor", "paramstyle")

    def __init__(self, cursor, paramstyle: str) -> None:
        self.cursor = cursor
        self.paramstyle = paramstyle

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement; returns its row count."""
        self.cursor.execute(driver_sql(self.paramstyle, sql), params or {})
        return self.cursor.rowcount

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.cursor.executemany(driver_sql(self.paramstyle, sql), rows)

    def fetchone(self):
        return self.cursor.fetchone()


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


@functools.cache
def driver_sql(paramstyle: str, sql: str) -> str:
    """``:name`` placeholders in the driver's own style (sqlite3: named; psycopg: pyformat)."""
    return _NAMED.sub(r"%(\1)s", sql) if paramstyle == "pyformat" else sql


_OPENED: dict[str, tuple[str | None, int]] = {}
"""url → (registry id, legacy run-folder bound) of registries opened in this process (for core.paths)."""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, RegistryError):
        return "stayed locked" in str(exc)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    message = _first_line(exc).lower()
    return any(s in message for s in ("locked", "busy", "disk is full", "disk i/o", "unable to open",
                                      "connection", "server closed", "terminating", "shutting down",
                                      "starting up", "recovery", "could not"))


# --- opening ----------------------------------------------------------------------------------

def open_database(db: str | os.PathLike | None = None, *, create: bool = True) -> Database:
    """Open (and with ``create``, initialise or migrate) the registry at ``db``.

    Raises :class:`RegistryError` with a one-line reason for a bad URL or file name, a missing
    file (when not creating), a file that is not SQLite or is damaged, a database that is not an
    hrm registry, a damaged schema version, or one written by a newer hrm.
    """
    url = resolve_db_url(db)
    try:
        parsed = parse_url(url)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    durability()  # a bad HRM_DURABILITY is one line, before anything is opened
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is None:
            return _open_memory(url)
        return _open_sqlite(url, path, create=create)
    return _open_server(url, create=create)


@dataclass(frozen=True)
class _Found:
    """What a registry file or database holds, read without changing it."""

    blank: bool  # no tables at all: ours to initialise
    version: int = 0
    meta: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        return dict(self.meta).get(key)

    @property
    def ready(self) -> bool:
        """Current schema with a registry id: nothing to create or migrate."""
        return not self.blank and self.version == SCHEMA_VERSION and self.get(META_REGISTRY_ID) is not None


def _found_from_meta(label: str, tables: set[str], rows: list[tuple[str, str]]) -> _Found:
    if "hrm_meta" not in tables:
        if tables:
            shown = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
            raise RegistryError(f"{label} is not an hrm registry (it has tables {shown}); nothing was changed")
        return _Found(blank=True)
    meta = tuple((str(k), str(v)) for k, v in rows)
    raw = dict(meta).get(META_VERSION)
    if raw is None:
        raise RegistryError(f"registry {label} has no schema version in hrm_meta (damaged or not hrm's)")
    try:
        version = int(str(raw).strip())
    except ValueError:
        raise RegistryError(f"registry {label} has a damaged schema version {str(raw)[:40]!r} in hrm_meta "
                            f"(expected a whole number)") from None
    if version < 0:
        raise RegistryError(f"registry {label} has a damaged schema version {version} in hrm_meta")
    if version > SCHEMA_VERSION:
        raise RegistryError(f"registry schema v{version} was written by a newer hrm "
                            f"(this one reads up to v{SCHEMA_VERSION}): upgrade hrm-tui")
    return _Found(blank=False, version=version, meta=meta)


def _check_sqlite_header(path: Path, size: int) -> None:
    """Refuse random bytes and truncated files from the header alone (nothing opened yet)."""
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(_SQLITE_HEADER[: len(header)]) or len(header) < 16:
        raise RegistryError(f"cannot read registry {path}: file is not a database")
    if len(header) < 100:
        raise RegistryError(f"cannot read registry {path}: the file is truncated ({size} bytes)")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, page_count = struct.unpack(">II", header[24:32])
    valid_for = struct.unpack(">I", header[92:96])[0]
    if page_count and change_counter == valid_for and size < page_count * page_size:
        raise RegistryError(f"cannot read registry {path}: the file is truncated "
                            f"({size:,} of {page_count * page_size:,} bytes)")


def _probe_sqlite(path: Path, *, immutable: bool = False) -> _Found:
    """Read the schema version on a plain read-only connection: no WAL switch, no write."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror}") from None
    if size == 0:
        return _Found(blank=True)
    try:
        _check_sqlite_header(path, size)
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror}") from None
    uri = _sqlite_uri(path, **({"immutable": "1"} if immutable else {"mode": "ro"}))
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=LOCK_SLICE_MS / 1000)
    except sqlite3.Error as exc:
        raise RegistryError(f"cannot read registry {path}: {_first_line(exc)}") from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = list(conn.execute("SELECT key, value FROM hrm_meta")) if "hrm_meta" in tables else []
    except sqlite3.Error as exc:
        raise RegistryError(f"cannot read registry {path}: {_first_line(exc)}") from None
    finally:
        conn.close()
    return _found_from_meta(str(path), tables, rows)


def _writable(path: Path) -> bool:
    """Can this process change the file and create its WAL next to it (read-only media, immutable, modes)?"""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


@contextmanager
def _create_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<db>.lock`` while a registry file is created or migrated."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RegistryError(f"cannot create registry {path}: {exc.strerror} ({lock_path})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _open_sqlite(url: str, path: Path, *, create: bool) -> Database:
    try:
        exists = path.exists()
        if exists and path.is_dir():
            raise RegistryError(f"{path} is a directory, not a registry file")
        if not exists:
            if not create:
                raise RegistryError(f"no registry at {path} (queue a run with `hrm run` to create one)")
            if not path.parent.is_dir():
                raise RegistryError(f"cannot create registry {path}: folder {path.parent} does not exist")
        writable = _writable(path) if exists else os.access(path.parent, os.W_OK | os.X_OK)
    except OSError as exc:
        raise RegistryError(f"cannot open registry {str(path)[:120]}: {exc.strerror}") from None
    if not writable:
        if not exists:
            raise RegistryError(f"cannot create registry {path}: folder {path.parent} is not writable")
        return _open_sqlite_read_only(url, path)
    found = _probe_sqlite(path) if exists else _Found(blank=True)
    if not found.ready:
        if found.blank and not create:
            raise RegistryError(f"{path} is an empty database, not an hrm registry")
        with _create_lock(path):
            found = _probe_sqlite(path) if path.exists() else _Found(blank=True)
            if not found.ready:
                engine = _make_sqlite_engine(url, path)
                try:
                    found = _initialise(engine, found, label=str(path))
                finally:
                    engine.dispose()
    return Database(url, _make_sqlite_engine(url, path), registry_id=found.get(META_REGISTRY_ID),
                    legacy_run_dirs_below=int(found.get(META_LEGACY_RUN_DIRS_BELOW) or 0))


def _open_sqlite_read_only(url: str, path: Path) -> Database:
    """A registry we may not write: ``mode=ro``, or ``immutable=1`` where even that needs a write (WAL)."""
    for immutable in (False, True):
        try:
            found = _probe_sqlite(path, immutable=immutable)
            break
        except RegistryError as exc:
            if immutable or "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
    if found.blank:
        raise RegistryError(f"{path} is an empty database, not an hrm registry")
    if found.version < SCHEMA_VERSION:
        raise RegistryError(f"registry {path} has schema v{found.version} and is read-only here: open it once "
                            f"where it can be written to upgrade it to v{SCHEMA_VERSION}")
    engine = _make_sqlite_engine(url, path, read_only=True, immutable=immutable)
    return Database(url, engine, read_only=True, registry_id=found.get(META_REGISTRY_ID),
                    legacy_run_dirs_below=int(found.get(META_LEGACY_RUN_DIRS_BELOW) or 0))


def _open_memory(url: str) -> Database:
    engine = _make_sqlite_engine(url, None)
    found = _initialise(engine, _Found(blank=True), label=":memory:")
    return Database(url, engine, registry_id=found.get(META_REGISTRY_ID))


def _open_server(url: str, *, create: bool) -> Database:
    engine = make_engine(url)
    label = redact_url(url)
    try:
        with engine.connect() as conn:
            found = _probe_connection(conn, label)
        if not found.ready:
            if found.blank and not create:
                raise RegistryError(f"{label} is an empty database, not an hrm registry")
            found = _initialise(engine, found, label=label)
    except RegistryError:
        engine.dispose()
        raise
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise RegistryError(f"cannot open registry {label}: {_first_line(exc)}") from None
    return Database(url, engine, registry_id=found.get(META_REGISTRY_ID),
                    legacy_run_dirs_below=int(found.get(META_LEGACY_RUN_DIRS_BELOW) or 0))


def _probe_connection(conn: Connection, label: str) -> _Found:
    from sqlalchemy import inspect

    tables = set(inspect(conn).get_table_names())
    rows = [tuple(r) for r in conn.execute(text("SELECT key, value FROM hrm_meta"))] if "hrm_meta" in tables else []
    return _found_from_meta(label, tables, rows)


def _initialise(engine: Engine, found: _Found, *, label: str) -> _Found:
    """Create, migrate and stamp a registry in one transaction (the caller holds the SQLite file lock)."""
    try:
        with engine.execution_options(hrm_write=True).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                found = _probe_connection(conn, label)  # another process may have done it meanwhile
                if found.ready:
                    return found
            if found.blank:
                SQLModel.metadata.create_all(conn)
                _set_meta(conn, META_VERSION, str(SCHEMA_VERSION))
                _set_meta(conn, "created_by", "hrm-tui")
            elif found.version < SCHEMA_VERSION:
                migrations.upgrade(conn, found.version, SCHEMA_VERSION)
                _append_upgrade_log(conn, found.get(META_UPGRADES), found.version)
            if found.get(META_REGISTRY_ID) is None:
                _stamp_registry_id(conn, legacy=not found.blank)
            rows = [tuple(r) for r in conn.execute(text("SELECT key, value FROM hrm_meta"))]
    except RegistryError:
        raise
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise RegistryError(f"cannot create registry {label}: {_first_line(exc)}") from None
    return _Found(blank=False, version=SCHEMA_VERSION, meta=tuple((str(k), str(v)) for k, v in rows))


def _set_meta(conn: Connection, key: str, value: str) -> None:
    updated = conn.execute(text("UPDATE hrm_meta SET value = :v WHERE key = :k"), {"k": key, "v": value}).rowcount
    if not updated:
        conn.execute(text("INSERT INTO hrm_meta (key, value) VALUES (:k, :v)"), {"k": key, "v": value})


def _append_upgrade_log(conn: Connection, previous: str | None, from_version: int) -> None:
    entry = f"v{from_version}->v{SCHEMA_VERSION} at {time.time():.3f} by pid {os.getpid()}"
    _set_meta(conn, META_UPGRADES, f"{previous}; {entry}" if previous else entry)


def _stamp_registry_id(conn: Connection, *, legacy: bool) -> None:
    """A registry id (keys its run folders) and the run-id high-water mark (ids are never reused).

    A registry that existed before ids were stamped may have run folders in the old flat layout
    (``hrm-runs/<id>/``): runs below the current high-water mark may still be read from there.
    """
    _set_meta(conn, META_REGISTRY_ID, uuid.uuid4().hex)
    top = conn.execute(text("SELECT coalesce(max(id), 0) FROM run")).scalar() or 0
    _set_meta(conn, META_RUN_ID_HIGH_WATER, str(top))
    if legacy:
        _set_meta(conn, META_LEGACY_RUN_DIRS_BELOW, str(top + 1))
