"""Telling a passing registry outage from a real error, and waiting it out with backoff.

Transient: SQLite's write lock held past its bounded wait, a full disk or an I/O error (space may
be freed), a PostgreSQL server restarting or a dropped connection. Everything else (a constraint,
a programming error) is real and must surface.
"""

from __future__ import annotations

import sqlite3
import time

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core.registry import db as _db


_REAL = ("no such table", "no such column", "syntax error", "does not exist", "readonly", "read-only")


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying (see the module docstring)."""
    if any(s in first_line(exc).lower() for s in _REAL):
        return False
    check = getattr(_db, "_is_transient", None)
    if check is not None and isinstance(exc, (_db.RegistryError, DBAPIError, sqlite3.OperationalError)):
        if check(exc):
            return True
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return True
    if type(exc).__name__ in ("OperationalError", "InterfaceError") and type(exc).__module__.startswith("psycopg"):
        return True  # raised by the driver's own cursor (the hot paths bypass SQLAlchemy's wrapping)
    return isinstance(exc, _db.RegistryError) and "locked" in str(exc)


def first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


class Backoff:
    """Exponential delays between retries: ``ready()`` says whether the next attempt is due."""

    def __init__(self, first: float = 0.25, longest: float = 10.0) -> None:
        self.first = first
        self.longest = longest
        self.delay = 0.0
        self.next_at = 0.0
        self.since: float | None = None

    def ready(self) -> bool:
        return time.monotonic() >= self.next_at

    def failed(self) -> float:
        """Record a failure; returns the delay before the next attempt."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        self.delay = self.first if not self.delay else min(self.longest, self.delay * 2)
        self.next_at = now + self.delay
        return self.delay

    def succeeded(self) -> float | None:
        """Record a success; returns how long the outage lasted (None if there was none)."""
        lasted = None if self.since is None else time.monotonic() - self.since
        self.delay, self.next_at, self.since = 0.0, 0.0, None
        return lasted

    @property
    def outage_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since
