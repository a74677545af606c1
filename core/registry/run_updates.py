"""Direct updates of a run's own columns, for callers outside the run's lifecycle in :mod:`store`.

Per-run settings (retries, notifications) and what an external executor (Slurm) learns about a
run are plain column writes; they live here so that SQL stays inside :mod:`core.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, or_, update

from core.registry.db import Database
from core.registry.status import RunStatus
from core.registry.store import RUN

_UNSETTLED = (RunStatus.QUEUED.value, RunStatus.STARTING.value, RunStatus.RUNNING.value)


def set_run_fields(db: Database, run_id: int, values: Mapping[str, Any]) -> int:
    """Write ``values`` into the run's row in one transaction; returns the rows changed (0: no such run)."""
    if not values:
        return 0
    with db.write() as conn:
        return conn.execute(update(RUN).where(RUN.c.id == run_id).values(**values)).rowcount


def settle_from_executor(db: Database, run_id: int, values: Mapping[str, Any]) -> bool:
    """Write an executor's verdict over a status that is not final yet, or over a ``cancelled`` the
    worker wrote for a SIGTERM nobody requested (the executor knows why). False: nothing changed."""
    overridable = or_(RUN.c.status.in_(_UNSETTLED),
                      and_(RUN.c.status == RunStatus.CANCELLED.value, RUN.c.cancel_requested.is_(False)))
    with db.write() as conn:
        return bool(conn.execute(update(RUN).where(RUN.c.id == run_id, overridable).values(**values)).rowcount)
