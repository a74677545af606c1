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
from typing import Any

from core.paths import worker_log
from core.registry import store
from core.registry.db import Database
from hrm_tui.tui import queries
from hrm_tui.tui.queries import RunRow

WATERMARK_OVERLAP = 5.0
"""Seconds re-read before the watermark: a writer stamps ``updated_at`` before it commits."""
LOG_TAIL_BYTES = 64_000
"""A worker.log first seen is read from this far before its end."""


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

    rows: list[RunRow]
    full: bool
    removed: set[int]
    watermark: float | None
    counts: dict[str, int]
    schedulers: list[dict[str, Any]]
    known: int
    metrics: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    """run → (offset read from, new offset, text)."""
    gpus: list[GpuStat] | None = None


def poll(
    db: Database,
    *,
    watermark: float | None,
    known: set[int],
    watches: Mapping[int, Watch],
    want_gpus: bool = False,
    first_page: int | None = None,
) -> PollResult:
    """Read what changed. ``watermark`` None means a full read of the run list; with ``first_page``
    only the newest runs are read (the table shows them while the full read follows)."""
    if first_page is not None:
        rows = queries.run_rows(db, limit=first_page)
    else:
        rows = queries.run_rows(db, updated_since=None if watermark is None else watermark - WATERMARK_OVERLAP)
    full = watermark is None and first_page is None
    count, _top = queries.run_census(db)
    removed: set[int] = set()
    if watermark is not None and count != len(known | {r.id for r in rows}):
        removed = known - queries.all_run_ids(db)
    new_mark = max([r.updated_at for r in rows] + [watermark or 0.0]) if first_page is None else watermark
    result = PollResult(
        rows=rows, full=full, removed=removed, watermark=new_mark,
        counts=store.count_by_status(db), schedulers=_schedulers(db), known=count,
    )
    for run_id, watch in watches.items():
        _poll_run(db, run_id, watch, result)
    if want_gpus:
        result.gpus = gpu_stats()
    return result


def _schedulers(db: Database) -> list[dict[str, Any]]:
    from core.scheduler.loop import HEARTBEAT_STALE_AFTER

    return store.live_schedulers(db, stale_after=HEARTBEAT_STALE_AFTER)


def _poll_run(db: Database, run_id: int, watch: Watch, result: PollResult) -> None:
    rows = store.metrics(db, run_id, after_id=watch.metric_after)
    if rows:
        result.metrics[run_id] = rows
    lines = store.logs(db, run_id, after_id=watch.log_after)
    if lines:
        result.logs[run_id] = lines
    chunk = read_worker_log(db.url, run_id, watch.file_offset)
    if chunk is not None:
        result.files[run_id] = chunk


def read_worker_log(db_url: str, run_id: int, offset: int | None) -> tuple[int, int, str] | None:
    """Whole new lines of the run's worker.log after ``offset`` (None: from the last LOG_TAIL_BYTES).

    A line still being written is left for the next poll, so it never shows up split in two.
    """
    path = worker_log(db_url, run_id)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    start = max(0, size - LOG_TAIL_BYTES) if offset is None else offset
    if size <= start:
        return None
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(size - start)
    if offset is None and start > 0:
        data = data[data.find(b"\n") + 1 :]  # drop the partial first line of a tail
        start = size - len(data)
    complete = data.rfind(b"\n") + 1
    if complete == 0 and len(data) < LOG_TAIL_BYTES:
        return None
    data = data[:complete] if complete else data
    return start, start + len(data), data.decode("utf-8", "replace")


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
