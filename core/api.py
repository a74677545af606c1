"""The façade both front ends (CLI and dashboard) go through: submit, list, show, cancel, retry.

Front ends parse input and render output; every decision about runs lives here or below.
Errors a user can cause are :class:`UserError` (a one-line message, exit code 1 or 2).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.experiments import UnknownExperiment, get_experiment
from core.paths import scheduler_log
from core.registry import Database, RegistryError, RunStatus, open_database, store
from core.registry.store import RunView as Run
from core.scheduler.loop import HEARTBEAT_STALE_AFTER
from core.scheduler.process import PROJECT_ROOT, is_worker_of

RUNS_JSON_SCHEMA = "hrm.runs/v1"


class UserError(Exception):
    """A mistake in the user's input: one line, no traceback. ``exit_code`` 2 = usage, 1 = runtime."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def open_registry(db: str | None, *, create: bool = False) -> Database:
    try:
        return open_database(db, create=create)
    except RegistryError as exc:
        raise UserError(str(exc), 1) from None


# --- configs ----------------------------------------------------------------------------------

def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def format_validation_error(exc: ValidationError) -> str:
    """A pydantic error → ``--hard-ratio: Input should be less than 1 (got 1.5)``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    where = option_name(loc) if loc else "config"
    got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
    if err["type"] == "extra_forbidden":
        return f"unknown option {where}"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error" and not loc:
        return message
    return f"{where}: {message}{got}"


def validate_config(experiment: str, values: Mapping[str, Any]):
    """The experiment's validated config, or UserError(exit 2)."""
    try:
        exp = get_experiment(experiment)
    except UnknownExperiment as exc:
        raise UserError(str(exc), 2) from None
    try:
        return exp.make_config(**dict(values))
    except ValidationError as exc:
        raise UserError(f"invalid config for {experiment}: {format_validation_error(exc)}", 2) from None


def submit(db: Database, experiment: str, values: Mapping[str, Any], *, tags: Sequence[str] = (),
           priority: int = 0, retry_of: int | None = None) -> Run:
    """Validate and queue a run; nothing is written when validation fails."""
    config = validate_config(experiment, values)
    exp = get_experiment(experiment)
    return store.create_run(db, experiment, config.model_dump(mode="json"), tags=tags, priority=priority,
                            retry_of=retry_of, headline_key=exp.headline)


# --- scheduler ------------------------------------------------------------------------------

def scheduler_alive(db: Database) -> bool:
    return bool(store.live_schedulers(db, stale_after=HEARTBEAT_STALE_AFTER))


def start_background_scheduler(db: Database, *, idle_exit: float = 300.0) -> int:
    """Spawn ``python -m core.scheduler`` detached from this terminal; returns its pid.

    It exits by itself after ``idle_exit`` seconds with nothing queued or running.
    """
    log_path = scheduler_log(db.url)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.scheduler", "--db", db.url, "--idle-exit", str(idle_exit)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    return proc.pid


def ensure_scheduler(db: Database) -> int | None:
    """Start a background scheduler unless one is alive; returns the new pid or None."""
    if scheduler_alive(db):
        return None
    return start_background_scheduler(db)


# --- reading runs -----------------------------------------------------------------------------

def require_run(db: Database, run_id: int) -> Run:
    run = store.get_run(db, run_id)
    if run is None:
        raise UserError(f"run {run_id} does not exist in {db.url}", 1)
    return run


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts))


def elapsed(run: Run, now: float | None = None) -> float | None:
    if run.started_at is None:
        return None
    return (run.finished_at or now or time.time()) - run.started_at


def latest_key(row: Mapping[str, Any]) -> str:
    """``val_ppl`` for run-level rows, ``s2/val_ppl`` for stage 2."""
    return row["key"] if not row["stage"] else f"s{row['stage']}/{row['key']}"


def run_record(run: Run, latest: Sequence[Mapping[str, Any]] = (), tags: Sequence[str] = ()) -> dict[str, Any]:
    """The stable JSON shape of a run (schema ``hrm.runs/v1``, documented in the README)."""
    return {
        "id": run.id,
        "experiment": run.experiment,
        "variant": run.variant,
        "status": run.status,
        "config": json.loads(run.config_json),
        "tags": list(tags),
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "elapsed_s": elapsed(run),
        "host": run.host,
        "gpu": run.gpu,
        "pid": run.pid,
        "progress": {"stage": run.stage, "stage_name": run.stage_name, "epoch": run.epoch,
                     "total_epochs": run.total_epochs},
        "headline": {"key": run.headline_key, "value": run.headline_value},
        "latest": {
            latest_key(m): {k: m[k] for k in ("last", "last_epoch", "min", "min_epoch", "max", "max_epoch", "count")}
            for m in latest
        },
        "error": run.error,
        "exit_code": run.exit_code,
        "retry_of": run.retry_of,
        "info": json.loads(run.info_json or "{}"),
    }


def list_records(db: Database, **filters: Any) -> list[dict[str, Any]]:
    runs = store.list_runs(db, **filters)
    ids = [r.id for r in runs]
    latest = store.latest_metrics(db, ids)
    tags = store.tags_of(db, ids)
    return [run_record(r, latest.get(r.id, []), tags.get(r.id, [])) for r in runs]


# --- actions ----------------------------------------------------------------------------------

def cancel(db: Database, run_id: int) -> Run:
    """Cancel a run: queued → cancelled now; active → the scheduler sends SIGTERM then SIGKILL.

    With no live scheduler on this host, the worker is signalled directly.
    """
    run = require_run(db, run_id)
    if RunStatus(run.status).is_terminal:
        raise UserError(f"run {run_id} is already {run.status}", 1)
    run = store.request_cancel(db, run_id)
    if RunStatus(run.status).is_active and not scheduler_alive(db) and run.pid and is_worker_of(run.pid, run_id):
        os.killpg(run.pid, signal.SIGTERM)
    return run


def retry(db: Database, run_id: int) -> Run:
    """A new queued run with the same experiment and config (linked by ``retry_of``)."""
    run = require_run(db, run_id)
    tags = store.tags_of(db, [run_id]).get(run_id, [])
    return submit(db, run.experiment, json.loads(run.config_json), tags=tags, retry_of=run_id)


def delete(db: Database, run_id: int) -> None:
    run = require_run(db, run_id)
    if RunStatus(run.status).is_active:
        raise UserError(f"run {run_id} is {run.status}: cancel it before deleting", 1)
    store.delete_run(db, run_id)


@dataclass
class FollowUpdate:
    """What ``follow`` yields: the run as it is now and the rows that arrived since the last poll."""

    run: Run
    metrics: list[dict[str, Any]]
    logs: list[dict[str, Any]]


def follow(db: Database, run_id: int, *, poll: float = 0.25) -> Iterator[FollowUpdate]:
    """Yield new metric rows and log lines until the run reaches a terminal status."""
    after_metric = after_log = 0
    while True:
        run = require_run(db, run_id)
        rows = store.metrics(db, run_id, after_id=after_metric)
        lines = store.logs(db, run_id, after_id=after_log)
        if rows:
            after_metric = rows[-1]["id"]
        if lines:
            after_log = lines[-1]["id"]
        yield FollowUpdate(run, rows, lines)
        if RunStatus(run.status).is_terminal:
            return
        time.sleep(poll)


def wait(db: Database, run_id: int, *, poll: float = 0.5, timeout: float | None = None) -> Run:
    """Block until the run ends (or ``timeout``); returns the run."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = require_run(db, run_id)
        if RunStatus(run.status).is_terminal or (deadline and time.monotonic() > deadline):
            return run
        time.sleep(poll)
