"""Ordered schema migrations, so that a newer hrm opens an older ``runs.db``.

``MIGRATIONS[v]`` upgrades a registry from schema ``v - 1`` to ``v``. All steps run in one
transaction under the registry's lock, and each records the new version.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, text


def _v2_tags_and_retries(conn: Connection) -> None:
    """v2: run tags (sweeps, report reproductions) and the ``retry_of`` link between runs."""
    from core.registry.models import RunTag

    columns = {c["name"] for c in inspect(conn).get_columns("run")}
    if "retry_of" not in columns:
        conn.execute(text("ALTER TABLE run ADD COLUMN retry_of INTEGER"))
    RunTag.__table__.create(conn, checkfirst=True)


def _add_missing_tables_and_columns(conn: Connection) -> None:
    """Create every declared table that is missing and add every declared column that is missing.

    Used by additive schema steps: a new column must be nullable or have a server-side default.
    """
    from core.registry.models import SQLModel

    SQLModel.metadata.create_all(conn, checkfirst=True)
    inspector = inspect(conn)
    for table in SQLModel.metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            ddl_type = column.type.compile(dialect=conn.dialect)
            default = ""
            if column.default is not None and getattr(column.default, "is_scalar", False):
                value = column.default.arg
                if isinstance(value, bool):
                    value = int(value) if conn.dialect.name == "sqlite" else str(value).upper()
                default = f" DEFAULT {value!r}" if isinstance(value, str) else f" DEFAULT {value}"
            conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {ddl_type}{default}'))


def _v3_liveness_attempts_hosts(conn: Connection) -> None:
    """v3: worker heartbeats, scheduler leases per host, attempts and checkpoints, notes (additive)."""
    _add_missing_tables_and_columns(conn)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _v2_tags_and_retries,
    3: _v3_liveness_attempts_hosts,
}


def upgrade(conn: Connection, from_version: int, to_version: int) -> None:
    """Apply every migration after ``from_version`` up to ``to_version`` inside the caller's transaction.

    The caller (:func:`core.registry.db.open_database`) holds the registry's create/migrate lock, so
    concurrent openers wait and then find the registry current: it is migrated exactly once, and an
    interrupted upgrade rolls back as a whole (SQLite and PostgreSQL both have transactional DDL).
    """
    for version in range(from_version + 1, to_version + 1):
        MIGRATIONS[version](conn)
        conn.execute(text("UPDATE hrm_meta SET value = :v WHERE key = 'schema_version'"), {"v": str(version)})
