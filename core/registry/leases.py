"""Scheduler leases and worker heartbeats: who may launch, and which runs are still alive.

Several hosts share one registry. Each host's scheduler holds a lease under its name (the host
name, or ``hrm scheduler --name``): taking it is one atomic upsert that succeeds only when no
fresh holder exists, and every acquisition bumps the lease's ``epoch``. Claims and renewals name
the epoch, so a scheduler that was paused past its lease and then resumes finds itself fenced
off by the registry and stops launching.

Workers write ``run.heartbeat_at`` every few seconds from a thread. Any scheduler marks a
``running`` run whose heartbeat is older than the stale window ``lost`` (with the cause), and
puts back in the queue a ``starting`` run whose claiming scheduler is gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, text, update

from core.registry.db import Database
from core.registry.models import LogLine, Run, RunStatus, SchedulerLease

RUN = Run.__table__
LEASE = SchedulerLease.__table__
LOG = LogLine.__table__


@dataclass(frozen=True)
class Lease:
    """A held lease: the scheduler ``name`` and the ``epoch`` it acquired (its fencing token)."""

    name: str
    epoch: int


class LeaseRefused(Exception):
    """Registration refused for a reason other than a live holder (one line, says why)."""


_ACQUIRE = (
    "INSERT INTO schedulerlease (name, epoch, host, pid, started_at, beat_at, slots) "
    "VALUES (:name, 1, :host, :pid, :now, :now, :slots) "
    "ON CONFLICT (name) DO UPDATE SET epoch = schedulerlease.epoch + 1, host = excluded.host, "
    "pid = excluded.pid, started_at = excluded.started_at, beat_at = excluded.beat_at, slots = excluded.slots "
    "WHERE schedulerlease.beat_at <= :stale_before "
    "RETURNING epoch"
)


def acquire(db: Database, *, name: str, host: str, pid: int, slots: str, stale_after: float) -> Lease | None:
    """Take the lease ``name`` unless a fresh holder has it (atomic: no select-then-insert).

    On SQLite, a live scheduler on another machine refuses with :class:`LeaseRefused`: a SQLite
    file shared over a network filesystem is not safe for WAL, several hosts need PostgreSQL.
    """
    now = time.time()
    with db.write() as conn:
        if conn.dialect.name == "sqlite":
            other = conn.execute(select(LEASE.c.name, LEASE.c.host).where(
                LEASE.c.beat_at > now - stale_after, LEASE.c.host != host)).first()
            if other is not None:
                raise LeaseRefused(
                    f"scheduler {other.name!r} on host {other.host} already uses this SQLite registry: a SQLite "
                    "file shared between machines (a network filesystem) is not safe for WAL; "
                    "use a PostgreSQL registry for several hosts")
        epoch = conn.execute(text(_ACQUIRE), {"name": name, "host": host, "pid": pid, "now": now, "slots": slots,
                                              "stale_before": now - stale_after}).scalar()
    return None if epoch is None else Lease(name, int(epoch))


def renew(db: Database, lease: Lease) -> bool:
    """Beat: False when another scheduler took the lease since (this one must stop launching)."""
    with db.write() as conn:
        return conn.execute(update(LEASE).where(LEASE.c.name == lease.name, LEASE.c.epoch == lease.epoch)
                            .values(beat_at=time.time())).rowcount == 1


def release(db: Database, lease: Lease) -> None:
    """Give the lease up (a clean exit): the next scheduler of that name takes it at once."""
    with db.write() as conn:
        conn.execute(update(LEASE).where(LEASE.c.name == lease.name, LEASE.c.epoch == lease.epoch)
                     .values(beat_at=0.0))


def holds(lease: Lease, stale_after: float, now: float | None = None):
    """A SQL condition: ``lease`` is still the current, fresh holder (used inside claims)."""
    now = time.time() if now is None else now
    return exists(select(LEASE.c.name).where(
        LEASE.c.name == lease.name, LEASE.c.epoch == lease.epoch, LEASE.c.beat_at > now - stale_after))


def live(db: Database, *, stale_after: float, name: str | None = None) -> list[dict[str, Any]]:
    """Schedulers with a fresh lease (``name``: only that one), as dicts."""
    query = select(LEASE).where(LEASE.c.beat_at > time.time() - stale_after)
    if name is not None:
        query = query.where(LEASE.c.name == name)
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query.order_by(LEASE.c.name))]


# --- worker heartbeats ------------------------------------------------------------------------

def beat_worker(db: Database, run_id: int, *, pid: int, host: str) -> bool:
    """The worker's heartbeat. False when the run is no longer this worker's (lost, forced off, ended)."""
    with db.write() as conn:
        return conn.execute(
            update(RUN).where(RUN.c.id == run_id, RUN.c.status == RunStatus.RUNNING.value,
                              RUN.c.pid == pid, RUN.c.host == host)
            .values(heartbeat_at=time.time())
        ).rowcount == 1


LEGACY_FACTOR = 10
"""A run without heartbeats (started by an hrm from before them) counts as stale only after ten windows
without any event: its worker may still be alive, just unable to beat."""


def _last_sign_of_life():
    return func.coalesce(RUN.c.heartbeat_at, RUN.c.updated_at, RUN.c.started_at)


def _stale(now: float, stale_after: float):
    return or_(
        and_(RUN.c.heartbeat_at.isnot(None), RUN.c.heartbeat_at < now - stale_after),
        and_(RUN.c.heartbeat_at.is_(None), func.coalesce(RUN.c.updated_at, RUN.c.started_at) < now - stale_after * LEGACY_FACTOR),
    )


def stale_running(db: Database, *, stale_after: float) -> list[dict[str, Any]]:
    """``running`` runs whose worker has not beaten within ``stale_after`` seconds (a read)."""
    query = select(RUN.c.id, RUN.c.host, RUN.c.pid, RUN.c.scheduler_name, RUN.c.heartbeat_at,
                   _last_sign_of_life().label("last_seen")).where(
        RUN.c.status == RunStatus.RUNNING.value, _stale(time.time(), stale_after))
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def mark_lost_if_stale(db: Database, run_id: int, *, stale_after: float, reason: str) -> bool:
    """Mark one run ``lost`` if it is still running and still stale (several schedulers may race: one wins).

    Never overwrites a terminal status or the worker's saved traceback.
    """
    now = time.time()
    with db.write() as conn:
        done = conn.execute(
            update(RUN).where(RUN.c.id == run_id, RUN.c.status == RunStatus.RUNNING.value, _stale(now, stale_after))
            .values(status=RunStatus.LOST.value, error=reason, finished_at=now, updated_at=now)
        ).rowcount == 1
        if done:
            conn.execute(LOG.insert().values(run_id=run_id, ts=now, source="scheduler", message=f"lost: {reason}"))
    return done


def requeue(db: Database, run_id: int) -> bool:
    """Put a ``starting`` run that never got a worker back in the queue (nothing ran for it)."""
    with db.write() as conn:
        return conn.execute(update(RUN).where(RUN.c.id == run_id, RUN.c.status == RunStatus.STARTING.value)
                            .values(status=RunStatus.QUEUED.value, host=None, gpu=None, pid=None,
                                    scheduler_name=None, updated_at=time.time())).rowcount == 1


def requeue_orphaned_starting(db: Database, *, stale_after: float) -> list[int]:
    """``starting`` runs whose claiming scheduler lost its lease and no worker took over: back to the queue.

    Nothing ran for them (a worker marks its run ``running`` within milliseconds of starting),
    so they are queued again rather than lost. Reads first: an idle registry sees no write.
    """
    now = time.time()
    cutoff = now - stale_after
    orphan = and_(
        RUN.c.status == RunStatus.STARTING.value,
        RUN.c.updated_at < cutoff,
        or_(RUN.c.scheduler_name.is_(None),
            ~exists(select(LEASE.c.name).where(LEASE.c.name == RUN.c.scheduler_name, LEASE.c.beat_at > cutoff))),
    )
    with db.read() as conn:
        ids = [r for (r,) in conn.execute(select(RUN.c.id).where(orphan))]
    requeued = []
    for run_id in ids:
        with db.write() as conn:
            if conn.execute(update(RUN).where(RUN.c.id == run_id, orphan).values(
                    status=RunStatus.QUEUED.value, host=None, gpu=None, pid=None, scheduler_name=None,
                    updated_at=now)).rowcount == 1:
                requeued.append(run_id)
                conn.execute(LOG.insert().values(run_id=run_id, ts=now, source="scheduler",
                                                 message="requeued: its scheduler died before the worker started"))
    return requeued
