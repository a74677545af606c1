"""One poll of the registry: what changed since the last one. Runs on a thread; no Textual.

The UI thread owns the cursors (a watermark on ``run.updated_at``, and per watched run the last
metric id, log id and worker-log offset). A poll reads from a snapshot of them and returns the
new data with the advanced cursors; the UI applies a result only where it is newer than what it
has, so an overlapping or out-of-order poll never duplicates or loses rows.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.registry.view import RunView

if TYPE_CHECKING:  # core.api loads SQLAlchemy and the catalog: the first page is read without them
    from core import api

WATERMARK_OVERLAP = 5.0
"""Seconds re-read before the watermark: a writer stamps ``updated_at`` before it commits."""


@dataclass
class Watch:
    """Cursors of one watched run (its run view, log view or compare view is open)."""

    metric_after: int = 0
    log_after: int = 0
    file_offset: int | None = None
    """Bytes of worker.log already read (None: not read yet, start at the tail)."""


@dataclass
class GpuStat:
    index: str
    name: str
    memory_used: float
    memory_total: float
    utilization: float


@dataclass
class PollResult:
    """Everything one poll found."""

    rows: list[RunView]
    full: bool
    removed: set[int]
    watermark: float | None
    counts: dict[str, int] | None
    """Runs per status, read with the first polls only (then the app counts its own rows)."""
    schedulers: list[dict[str, Any]]
    known: int
    metrics: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[int, api.LogChunk] = field(default_factory=dict)
    """run → the new whole lines of its worker.log."""
    gpus: list[GpuStat] | None = None


def first_page(target: str | None, limit: int) -> PollResult | None:
    """The newest ``limit`` runs read with the standard library alone (a current SQLite registry), so the
    dashboard shows rows before ``core.api`` and SQLAlchemy are even imported; None: no such fast path."""
    from core.facade import fastread

    conn = fastread.connect(target)
    if conn is None:
        return None
    try:
        rows = fastread.list_views(conn, last=limit)
        counts = fastread.count_by_status(conn)
    finally:
        conn.close()
    return PollResult(rows=rows, full=False, removed=set(), watermark=None, counts=counts, schedulers=[],
                      known=sum(counts.values()))


def poll(
    db: api.Database,
    *,
    watermark: float | None,
    known: set[int],
    watches: Mapping[int, Watch],
    want_gpus: bool = False,
    first_page: int | None = None,
) -> PollResult:
    """Read what changed. ``watermark`` None means a full read of the run list; with ``first_page``
    only the newest runs are read (the table shows them while the full read follows)."""
    from core import api

    if first_page is not None:
        rows = api.list_runs(db, last=first_page)
    else:
        rows = api.list_runs(db, updated_since=None if watermark is None else watermark - WATERMARK_OVERLAP)
    full = watermark is None and first_page is None
    count, _top = api.run_census(db)
    removed: set[int] = set()
    if watermark is not None and count != len(known | {r.id for r in rows}):
        removed = known - api.all_run_ids(db)
    new_mark = max([r.updated_at for r in rows] + [watermark or 0.0]) if first_page is None else watermark
    result = PollResult(
        rows=rows, full=full, removed=removed, watermark=new_mark,
        counts=api.count_by_status(db) if watermark is None else None, schedulers=api.scheduler_status(db),
        known=count,
    )
    for run_id, watch in watches.items():
        _poll_run(db, run_id, watch, result)
    if want_gpus:
        result.gpus = gpu_stats()
    return result


def quiet_poll(db: api.Database, watches: Mapping[int, Watch], schedulers: list[dict[str, Any]], known: int,
               want_gpus: bool = False) -> PollResult:
    """A poll when nobody committed to the registry since the last one: no run, metric or log query, only
    the watched runs' worker.log files (written outside the registry) and the GPUs; the schedulers stay."""
    from core import api

    result = PollResult(rows=[], full=False, removed=set(), watermark=None, counts=None,
                        schedulers=list(schedulers), known=known)
    for run_id, watch in watches.items():
        chunk = api.read_worker_log(db, run_id, watch.file_offset)
        if chunk is not None:
            result.files[run_id] = chunk
    if want_gpus:
        result.gpus = gpu_stats()
    return result


def _poll_run(db: api.Database, run_id: int, watch: Watch, result: PollResult) -> None:
    from core import api

    rows = api.metrics_since(db, run_id, watch.metric_after)
    if rows:
        result.metrics[run_id] = rows
    lines = api.logs_since(db, run_id, watch.log_after)
    if lines:
        result.logs[run_id] = lines
    chunk = api.read_worker_log(db, run_id, watch.file_offset)
    if chunk is not None:
        result.files[run_id] = chunk


def gpu_stats() -> list[GpuStat] | None:
    """Memory and utilisation per GPU from ``nvidia-smi`` (None when it is not installed)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.used,memory.total,utilization.gpu",
             "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    stats = []
    for row in csv.reader(io.StringIO(out)):
        if len(row) < 5:
            continue
        try:
            stats.append(GpuStat(row[0].strip(), row[1].strip(), *(float(v) for v in row[2:5])))
        except ValueError:
            continue
    return stats
