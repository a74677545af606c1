"""What a run *is* to every reader: a typed, frozen :class:`RunView` with the rules derived from it.

One shape for the CLI, the dashboard, comparisons and JSON: the headline and its fallback while a
run trains, elapsed time, progress and the ``hrm.runs/v1`` record are defined here once. Views are
built straight from result rows by column name (no validation per row: ``hrm ls`` builds hundreds),
so this module imports neither SQLAlchemy nor pydantic and front ends may import it freely.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from core.registry.decode import json_object_or_damaged
from core.registry.status import RunStatus

RUNS_JSON_SCHEMA = "hrm.runs/v1"
FALLBACK_HEADLINE = "best_val_ppl"
"""The headline that, until the run's summary writes it, shows ``val_ppl``'s best so far."""
FALLBACK_KEY = "val_ppl"


@dataclass(frozen=True, slots=True)
class RunView:
    """A detached, read-only snapshot of one run (a ``run`` row, its tags and its best-so-far)."""

    id: int
    experiment: str
    variant: str
    status: RunStatus
    config: Mapping[str, Any]
    """The validated config, parsed once when the view is built."""
    config_json: str
    priority: int
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    host: str | None
    pid: int | None
    gpu: str | None
    exit_code: int | None
    cancel_requested: bool
    error: str | None
    stderr_tail: str | None
    info_json: str
    retry_of: int | None
    stage: int
    stage_name: str | None
    epoch: int
    total_epochs: int | None
    headline_key: str | None
    headline_value: float | None
    tags: tuple[str, ...] = ()
    running_best: float | None = None
    """``val_ppl``'s minimum so far in the run's current stage (the headline until the summary lands)."""
    extras: Mapping[str, Any] = field(default_factory=dict)
    """Run columns this class does not declare (added by a newer schema); read as attributes too."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, tags: Sequence[str] = (),
                 running_best: float | None = None) -> RunView:
        """A view of a ``run`` result row (any subset of columns beyond the declared ones is kept in extras)."""
        values = {name: row[name] for name in _COLUMNS if name in row}
        values["status"] = RunStatus(row["status"])
        values["cancel_requested"] = bool(row.get("cancel_requested", False))
        values["config_json"] = config_json = row.get("config_json") or "{}"
        values["config"] = json_object_or_damaged(config_json)  # one damaged row must not break a listing
        values.setdefault("info_json", "{}")
        for name in _OPTIONAL:
            values.setdefault(name, None)
        extras = {k: v for k, v in row.items() if k not in _DECLARED}
        return cls(**values, tags=tuple(tags), running_best=running_best, extras=extras)

    def __getattr__(self, name: str) -> Any:
        if name != "extras":
            try:
                return self.extras[name]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # --- derived rules ------------------------------------------------------------------------

    @property
    def headline(self) -> float | None:
        """The headline summary, or while the run trains the best ``val_ppl`` of its current stage."""
        return headline_of(self.headline_key, self.headline_value, self.running_best)

    @property
    def headline_is_final(self) -> bool:
        """True once the run's summary wrote the headline (a fallback is provisional)."""
        return self.headline_value is not None

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds from start to finish, or to ``now`` (default: the wall clock) while it runs."""
        if self.started_at is None:
            return None
        return (self.finished_at or now or time.time()) - self.started_at

    @property
    def is_live(self) -> bool:
        """Started and not finished: its elapsed time ticks."""
        return self.started_at is not None and self.finished_at is None

    @property
    def progress(self) -> dict[str, Any]:
        """Where the run is: its stage and epoch, and ``pass`` (:attr:`pass_progress`) or None."""
        return {"stage": self.stage, "stage_name": self.stage_name, "epoch": self.epoch,
                "total_epochs": self.total_epochs, "pass": self.pass_progress}

    @property
    def pass_progress(self) -> dict[str, Any] | None:
        """The long pass a run makes before its first epoch (cascade's frozen base pass: minutes on a
        CPU), from ``info.progress``: ``{phase, tokens_done, tokens_total, tokens_per_s, eta_s,
        elapsed_s}``, or None once it is over. The one rule: it shows while the pass is unfinished and
        no epoch of the current stage has been recorded (once epochs start, the epoch progress wins)."""
        if self.epoch or self.status is RunStatus.QUEUED or '"progress"' not in self.info_json:
            return None
        return pass_progress_of(self.info.get("progress"))

    @property
    def info(self) -> dict[str, Any]:
        return json_object_or_damaged(self.info_json)

    def why_not_cancellable(self) -> str | None:
        """None when cancelling can apply, else the reason in words."""
        if self.status.is_terminal:
            return f"run {self.id} is already {self.status}"
        if self.cancel_requested:
            return f"run {self.id} is already being cancelled"
        return None

    def why_not_deletable(self) -> str | None:
        """None when deleting can apply, else the reason in words."""
        if self.status.is_active:
            return f"run {self.id} is {self.status}: cancel it before deleting"
        return None

    def record(self, latest: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The stable JSON shape of a run (schema ``hrm.runs/v1``, documented in the README)."""
        return {
            "id": self.id,
            "experiment": self.experiment,
            "variant": self.variant,
            "status": self.status.value,
            "config": dict(self.config),
            "tags": list(self.tags),
            "created_at": iso_time(self.created_at),
            "started_at": iso_time(self.started_at),
            "finished_at": iso_time(self.finished_at),
            "elapsed_s": self.elapsed(),
            "host": self.host,
            "gpu": self.gpu,
            "pid": self.pid,
            "progress": self.progress,
            "headline": {"key": self.headline_key, "value": self.headline_value},
            "latest": {
                latest_key(m): {k: m[k] for k in ("last", "last_epoch", "min", "min_epoch", "max", "max_epoch", "count")}
                for m in latest
            },
            "note": self.extras.get("note"),
            "error": self.error,
            "exit_code": self.exit_code,
            "retry_of": self.retry_of,
            "info": self.info,
            "executor": self.executor_record(),
        }

    def executor_record(self) -> dict[str, Any] | None:
        """``{name, job_id, state}`` for a run on a cluster engine (Slurm), None for a local subprocess."""
        name = self.extras.get("executor")
        if name is None and self.extras.get("external_id") is None:
            return None
        return {"name": name, "job_id": self.extras.get("external_id"), "state": self.extras.get("external_state")}


_DECLARED = frozenset(f.name for f in fields(RunView))
_DERIVED = frozenset({"status", "config", "config_json", "cancel_requested", "tags", "running_best", "extras"})
_COLUMNS = tuple(name for name in (f.name for f in fields(RunView)) if name not in _DERIVED)
_OPTIONAL = ("started_at", "finished_at", "host", "pid", "gpu", "exit_code", "error", "stderr_tail", "retry_of",
             "stage_name", "total_epochs", "headline_key", "headline_value")


PASS_KEYS = ("phase", "tokens_done", "tokens_total", "tokens_per_s", "eta_s", "elapsed_s")
"""The fields of an ``info.progress`` record (``core.smollm2.progress.TokenProgress.record``)."""


def pass_progress_of(info_progress: Any) -> dict[str, Any] | None:
    """An unfinished pass's record (its :data:`PASS_KEYS`, numbers checked), or None when it is over,
    missing or not such a record (info is free-form: a damaged one must not break a listing)."""
    if not isinstance(info_progress, Mapping):
        return None
    done, total = info_progress.get("tokens_done"), info_progress.get("tokens_total")
    if not _is_number(done) or not _is_number(total) or total <= 0 or done >= total:
        return None
    record = {key: info_progress.get(key) for key in PASS_KEYS}
    for key in ("tokens_per_s", "eta_s", "elapsed_s"):
        if not _is_number(record[key]):
            record[key] = None
    record["phase"] = str(record["phase"] or "pass")
    return record


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def headline_of(key: str | None, value: float | None, running_best: float | None) -> float | None:
    """The headline rule: the summary value once written; until then, for ``best_val_ppl``, the best
    ``val_ppl`` of the run's current stage so far."""
    if value is None and key == FALLBACK_HEADLINE:
        return running_best
    return value


def record_headline(record: Mapping[str, Any]) -> float | None:
    """:func:`headline_of` for an ``hrm.runs/v1`` record (front ends that hold records, not views)."""
    stage = (record.get("progress") or {}).get("stage") or 0
    latest = record.get("latest", {}).get(latest_key({"key": FALLBACK_KEY, "stage": stage}))
    return headline_of(record["headline"]["key"], record["headline"]["value"], latest["min"] if latest else None)


def iso_time(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts))


def latest_key(row: Mapping[str, Any]) -> str:
    """``val_ppl`` for run-level rows, ``s2/val_ppl`` for stage 2."""
    return row["key"] if not row["stage"] else f"s{row['stage']}/{row['key']}"


def format_number(value: Any, digits: int = 4) -> str:
    """Numbers as a researcher reads them: ``digits`` significant decimals, big values with separators.

    The one number formatter of the CLI, the dashboard and comparison tables ('—' for missing).
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        if abs(value) >= 1000:
            return f"{value:,.2f}"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)

