"""How a SQLite registry hands out run ids: the SQL both writers share (``store`` and ``fastwrite``).

SQLite hands out max(id)+1, so deleting the newest run would give its id (and anything that
remembered it: retry_of, --use, exported tables, its log folder) to the next run. The registry
keeps a high-water mark in hrm_meta, raised in the inserting transaction; PostgreSQL's sequences
never reuse ids by themselves. Standard library only: ``fastwrite`` must not import SQLAlchemy.
"""

from __future__ import annotations

NEXT_RUN_ID = (
    "SELECT max(coalesce((SELECT CAST(value AS INTEGER) FROM hrm_meta WHERE key = 'run_id_high_water'), 0), "
    "coalesce((SELECT max(id) FROM run), 0)) + 1"
)
"""The next id: above both the highest run and the high-water mark."""
RAISE_HIGH_WATER = (
    "INSERT INTO hrm_meta (key, value) VALUES ('run_id_high_water', ?) ON CONFLICT (key) DO UPDATE "
    "SET value = excluded.value WHERE CAST(hrm_meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)"
)
"""Raise the mark to the id just inserted (one parameter: the id as text); never lowers it."""
