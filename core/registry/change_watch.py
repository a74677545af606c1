"""Has anyone committed to the registry since the last look? (SQLite: ``PRAGMA data_version``.)

The scheduler sleeps between passes and wakes within moments of a new run without writing or
reading tables while idle. On SQLite a read-only connection answers exactly; elsewhere the answer
is yes every ``interval`` seconds and the caller does its cheap read.
"""

from __future__ import annotations

import sqlite3
import time

from core.registry.db import Database, sqlite_path


class ChangeWatch:
    """One watcher per scheduler; ``changed()`` is cheap enough to call every few milliseconds."""

    def __init__(self, db: Database, interval: float = 0.1) -> None:
        self._conn = None
        self._version = None
        self._interval = interval
        self._last_yes = 0.0
        path = sqlite_path(db.url)
        if path is not None:
            try:
                self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            except sqlite3.Error:
                self._conn = None

    @property
    def exact(self) -> bool:
        """True when every commit is seen (SQLite): the idle pass can then be rare."""
        return self._conn is not None

    def changed(self) -> bool:
        if self._conn is None:
            now = time.monotonic()
            if now - self._last_yes < self._interval:
                return False
            self._last_yes = now
            return True
        try:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return True
        changed, self._version = version != self._version, version
        return changed

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
