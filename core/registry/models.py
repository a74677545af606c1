"""The registry's tables (SQLModel) and the run-status state machine.

One table per concept: ``Run`` (also the queue), ``Metric`` (every emitted number, per-layer
rows carry the layer index as a column), ``LatestMetric`` (a denormalised summary per run and
key, so lists and comparisons never scan histories), ``ResultTable`` (analysis tables),
``LogLine``, ``RunTag``, ``SchedulerHeartbeat`` and ``Meta`` (the schema version).
"""

from __future__ import annotations

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from core.registry.status import TERMINAL_STATUSES, RunStatus  # noqa: F401  (re-exported)

SCHEMA_VERSION = 3
"""Bump with every schema change and add a migration in :mod:`core.registry.migrations`.

v3 is additive: every column added to a table here must be nullable or carry a scalar default,
and :func:`core.registry.migrations._add_missing_tables_and_columns` brings older files up to date."""




class Run(SQLModel, table=True):
    """A run: its config, where it is in its life, and a few denormalised progress fields."""

    id: int | None = Field(default=None, primary_key=True)
    experiment: str = Field(index=True)
    variant: str = "corrected"
    config_json: str = "{}"
    status: str = Field(default=RunStatus.QUEUED.value, index=True)
    priority: int = 0
    created_at: float = 0.0
    updated_at: float = Field(default=0.0, index=True)
    started_at: float | None = None
    finished_at: float | None = None
    # Where and how it runs.
    host: str | None = None
    pid: int | None = None
    gpu: str | None = None
    exit_code: int | None = None
    cancel_requested: bool = False
    error: str | None = None
    stderr_tail: str | None = None
    info_json: str = "{}"
    retry_of: int | None = None
    # Progress, updated by the worker with each event (for lists and progress bars).
    stage: int = 0
    stage_name: str | None = None
    epoch: int = 0
    total_epochs: int | None = None
    headline_key: str | None = None
    headline_value: float | None = None
    # Annotations a user edits after submit, and where a run came from when it was not run here.
    note: str | None = None
    imported_from: str | None = None
    """``mlflow:<tracking uri>#<mlflow run id>`` for an imported, read-only record (never retried)."""
    # Placement and liveness across hosts (core.scheduler, core.worker).
    target_host: str | None = None
    """Pinned to the scheduler of this name (``hrm run --host H``); None takes any host."""
    scheduler_name: str | None = None
    """The scheduler (lease name) that claimed the run: it adopts the worker after a restart."""
    heartbeat_at: float | None = None
    """Written by the worker every few seconds; stale means the worker is gone or stopped."""
    event_seq: int = 0
    """The last event sequence number applied: a spooled event replayed twice is applied once."""
    output_bytes: int = 0
    """Bytes of worker output shipped into ``workeroutput`` so far (the shipper's resume offset)."""
    # Attempts, checkpoints, retries and notifications (core.resume, core.checkpoint, core.notify).
    attempt: int = 1
    """1 for the first execution; ``hrm resume`` and automatic retries requeue with ``attempt + 1``."""
    max_retries: int | None = None
    """Automatic resumes after an infrastructure failure (None: the scheduler's default)."""
    on_finish: str | None = None
    """A command run when the run ends (``cmd {run_id} {status}``, split with shlex, no shell)."""
    webhook: str | None = None
    """An http(s) URL that receives a JSON body when the run ends."""
    notified_attempt: int = 0
    """The last attempt whose end was notified: each end is notified once."""
    checkpoint_json: str | None = None
    """The newest checkpoint: {seq, stage, epoch, stage_done, score, path, bytes, saved_at, seconds}."""
    # A cluster engine's view of the run (core.scheduler.slurm); None for local subprocesses.
    executor: str | None = None
    """The engine asked for (``hrm run --executor slurm``) and then the one that ran it (``local``, ``slurm``)."""
    external_id: str | None = None
    """The engine's own id of the job (the Slurm job id), recorded at submission."""
    external_state: str | None = None
    """The engine's last state of the job (Slurm: PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT, NODE_FAIL, ...)."""


class RunAttempt(SQLModel, table=True):
    """An ended attempt of a run that was resumed: how it ended and where the next one continued."""

    run_id: int = Field(foreign_key="run.id", primary_key=True)
    attempt: int = Field(primary_key=True)
    status: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    host: str | None = None
    gpu: str | None = None
    exit_code: int | None = None
    error: str | None = None
    epoch: int = 0
    stage: int = 0
    requeued_at: float = 0.0
    requeued_by: str = "resume"
    """``resume`` (a user's ``hrm resume``) or ``retry-policy`` (the scheduler, after an infrastructure failure)."""
    info_json: str = "{}"
    """The attempt's ``run.info`` when it was requeued (the next attempt carries over what it does not emit again)."""


class Metric(SQLModel, table=True):
    """One emitted number. ``kind`` is epoch, layer or summary; ``layer`` is set for per-layer rows."""

    __table_args__ = (Index("ix_metric_run_id_id", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    kind: str = "epoch"
    stage: int = 0
    epoch: int | None = None
    layer: int | None = None
    key: str
    value: float | None = None
    is_nan: bool = False
    """SQLite stores NaN as NULL: the flag keeps diverged runs visible."""
    ts: float = 0.0


class LatestMetric(SQLModel, table=True):
    """Last, min and max of each run-level key per stage, maintained in the same transaction."""

    run_id: int = Field(foreign_key="run.id", primary_key=True)
    stage: int = Field(default=0, primary_key=True)
    key: str = Field(primary_key=True)
    last: float | None = None
    last_epoch: int | None = None
    min: float | None = None
    min_epoch: int | None = None
    max: float | None = None
    max_epoch: int | None = None
    count: int = 0
    ts: float = 0.0


class ResultTable(SQLModel, table=True):
    """A structured analysis table emitted by a run (threshold sweep, early-exit table, ...)."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    stage: int = 0
    name: str
    rows_json: str = "[]"
    ts: float = 0.0


class LogLine(SQLModel, table=True):
    """A free-form line from the worker or the scheduler about a run."""

    __table_args__ = (Index("ix_logline_run_id_id", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    ts: float = 0.0
    source: str = "worker"
    message: str = ""


class RunTag(SQLModel, table=True):
    """Tags group runs (a sweep, a report reproduction)."""

    run_id: int = Field(foreign_key="run.id", primary_key=True)
    tag: str = Field(primary_key=True, index=True)


class SchedulerHeartbeat(SQLModel, table=True):
    """Superseded by :class:`SchedulerLease` (one row per scheduler name, fenced); kept so that older
    registries open unchanged."""

    id: int | None = Field(default=None, primary_key=True)
    host: str
    pid: int
    started_at: float
    beat_at: float
    slots: str = ""


class SchedulerLease(SQLModel, table=True):
    """One row per scheduler name (a host): whoever holds a fresh lease may claim runs for it.

    ``epoch`` grows with every acquisition, so a scheduler that was paused past its lease and
    then resumes finds its epoch superseded (fencing) and stops launching.
    """

    name: str = Field(primary_key=True)
    epoch: int = 0
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    beat_at: float = 0.0
    slots: str = ""


class WorkerOutput(SQLModel, table=True):
    """A chunk of a worker's stdout/stderr, so that logs are readable from any host.

    ``offset`` is the chunk's byte position in the worker's output; the oldest chunks of a run
    are dropped past a size bound (the tail is kept).
    """

    __table_args__ = (Index("ix_workeroutput_run_id_id", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    offset: int = 0
    size: int = 0
    ts: float = 0.0
    text: str = ""


class Meta(SQLModel, table=True):
    """Registry metadata: ``schema_version`` and the application that created it."""

    __tablename__ = "hrm_meta"

    key: str = Field(primary_key=True)
    value: str
