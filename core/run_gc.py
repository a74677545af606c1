"""``hrm gc``: give back the disk space runs no longer need.

- a *completed* run keeps two checkpoints, its best-scoring and its last; the others go (a failed,
  lost or cancelled run keeps every checkpoint: it may still be resumed);
- half-written checkpoint folders (``.tmp-ckpt-*``, left by a kill mid-save) of runs that are not
  running go;
- folders of runs that no longer exist in the registry (deleted runs) go entirely.

Active runs are never touched. ``dry_run`` reports the same plan without removing anything.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from core.checkpoint import CHECKPOINTS_DIR, Checkpoints, best_checkpoint, folder_bytes
from core.paths import run_dir, runs_root
from core.registry import RunStatus, store
from core.registry.db import Database


@dataclass(frozen=True)
class GcItem:
    path: Path
    bytes: int
    reason: str


@dataclass
class GcReport:
    dry_run: bool
    items: list[GcItem] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(i.bytes for i in self.items)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return f"{verb} {human_bytes(self.freed_bytes)} in {len(self.items)} folder(s)"


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def plan(db: Database) -> list[GcItem]:
    """What :func:`collect` would remove, and why."""
    items: list[GcItem] = []
    runs = {r.id: r for r in store.list_runs(db, enriched=False)}
    for run in runs.values():
        status = RunStatus(run.status)
        if status.is_active or status == RunStatus.QUEUED:
            continue
        folder = run_dir(db, run.id) / CHECKPOINTS_DIR
        if not folder.is_dir():
            continue
        for tmp in sorted(folder.glob(".tmp-ckpt-*")):
            items.append(GcItem(tmp, folder_bytes(tmp), f"run {run.id}: half-written checkpoint"))
        if status != RunStatus.COMPLETED:
            continue
        checkpoints = Checkpoints(folder).folders()
        keep = set(checkpoints[-1:])
        best = best_checkpoint(checkpoints)
        if best is not None:
            keep.add(best)
        for path in checkpoints:
            if path not in keep:
                items.append(GcItem(path, folder_bytes(path), f"run {run.id}: checkpoint neither best nor last"))
    root = runs_root(db)
    if root.is_dir():
        for entry in sorted(root.iterdir(), key=lambda p: p.name):
            if entry.name.isdigit() and int(entry.name) not in runs and entry.is_dir() and not entry.is_symlink():
                items.append(GcItem(entry, folder_bytes(entry), f"run {entry.name} no longer exists"))
    return items


def collect(db: Database, *, dry_run: bool = False) -> GcReport:
    """Remove (or with ``dry_run`` only list) what no run needs; returns what and how much."""
    report = GcReport(dry_run=dry_run)
    for item in plan(db):
        if not dry_run:
            shutil.rmtree(item.path, ignore_errors=True)
            if item.path.exists():
                continue
        report.items.append(item)
    return report
