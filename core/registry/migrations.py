"""Ordered schema migrations, so that a newer hrm opens an older ``runs.db``.

``MIGRATIONS[v]`` upgrades a registry from schema ``v - 1`` to ``v``. Each step runs in its
own transaction and records the new version, so an interrupted upgrade resumes cleanly.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, inspect, text


def _v2_tags_and_retries(conn: Connection) -> None:
    """v2: run tags (sweeps, report reproductions) and the ``retry_of`` link between runs."""
    from core.registry.models import RunTag

    columns = {c["name"] for c in inspect(conn).get_columns("run")}
    if "retry_of" not in columns:
        conn.execute(text("ALTER TABLE run ADD COLUMN retry_of INTEGER"))
    RunTag.__table__.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _v2_tags_and_retries,
}


def upgrade(engine: Engine, from_version: int, to_version: int) -> None:
    """Apply every migration after ``from_version`` up to ``to_version``."""
    for version in range(from_version + 1, to_version + 1):
        with engine.begin() as conn:
            MIGRATIONS[version](conn)
            conn.execute(
                text("UPDATE hrm_meta SET value = :v WHERE key = 'schema_version'"), {"v": str(version)}
            )
