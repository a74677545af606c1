"""Registry writes of runs that a script tracks itself (``hrm_tui.init()``), outside the scheduler.

Such a run is inserted ``running`` in one transaction, so a scheduler polling the queue can never
claim it (it would launch a worker for an experiment that exists only in the user's script).
Its ``host`` is ``<hostname> (script)``: no scheduler takes it for one of its own workers when it
reconciles runs after a restart, since the process behind it is the user's script, not a worker.
The script beats like a worker (``heartbeat_at``, see :class:`core.tracking.Tracker`), so a script
killed with SIGKILL leaves a run that any scheduler marks ``lost`` after the stale window.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from core.registry.db import Database
from core.registry.models import Run, RunStatus, RunTag
from core.registry.store import insert_run, new_run_values

RUN = Run.__table__
TAG = RunTag.__table__
SCRIPT_HOST_SUFFIX = " (script)"
SCRIPT_SLOT = "script"
"""The ``gpu`` column of a script's own run: it holds no scheduler slot (and cannot be retried by hrm)."""


def script_host() -> str:
    return socket.gethostname() + SCRIPT_HOST_SUFFIX


def create_tracked_run(db: Database, experiment: str, config: Mapping[str, Any], *, pid: int,
                       info: Mapping[str, Any], tags: Sequence[str] = (), headline_key: str | None = None) -> int:
    """Insert a run that is already ``running`` in the calling process; returns its id."""
    now = time.time()
    values = {
        **new_run_values(experiment, config, RunStatus.RUNNING, now),
        "priority": 0,
        "started_at": now,
        "heartbeat_at": now,
        "host": script_host(),
        "pid": pid,
        "gpu": SCRIPT_SLOT,
        "headline_key": headline_key,
        "info_json": json.dumps(dict(info), default=str),
    }
    with db.write() as conn:
        run_id = insert_run(conn, values, tags)
    return int(run_id)


def add_tags(db: Database, run_id: int, tags: Sequence[str]) -> None:
    """Add tags a run does not have yet (an attached script's ``init(tags=...)``)."""
    if not tags:
        return
    with db.write() as conn:
        have = set(conn.execute(select(TAG.c.tag).where(TAG.c.run_id == run_id)).scalars())
        new = [t for t in dict.fromkeys(tags) if t not in have]
        if new:
            conn.execute(TAG.insert(), [{"run_id": run_id, "tag": t} for t in new])


def run_state(db: Database, run_id: int) -> tuple[str, bool] | None:
    """(status, cancel_requested) of a run, or None when it does not exist."""
    with db.read() as conn:
        row = conn.execute(select(RUN.c.status, RUN.c.cancel_requested).where(RUN.c.id == run_id)).first()
    return None if row is None else (row.status, bool(row.cancel_requested))
