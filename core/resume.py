"""A run that dies continues: ``hrm resume``, the worker's side of a resumed attempt, and what the
scheduler does when a run ends (retry an infrastructure failure, else notify).

- :func:`resume`: a failed, lost or cancelled run is queued again under the same id as
  ``attempt + 1`` (the ended attempt is archived; ``hrm show`` lists every attempt).
- :func:`attach_checkpoints`: the worker gives the experiment its checkpoint store; on a resumed
  attempt it first drops what the dead attempt recorded after the last checkpoint, so the series
  continues without duplicate epochs (and starts over cleanly when there is no checkpoint).
- :func:`handle_run_end`: the scheduler's single call when a run ends.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import notify
from core.checkpoint import CHECKPOINTS_DIR, Checkpoints
from core.errors import UserError
from core.paths import run_dir
from core.registry import RunStatus, store
from core.registry import attempts as attempt_store
from core.registry.db import Database
from core.registry.outage import is_transient
from core.retry_policy import classify

log = logging.getLogger("hrm.resume")


def checkpoint_dir(db: Database, run_id: int) -> Path:
    """``<run folder>/checkpoints``."""
    return run_dir(db, run_id) / CHECKPOINTS_DIR


# --- hrm resume -----------------------------------------------------------------------------------

def resume(db: Database, run_id: int):
    """Queue ``run_id`` again as its next attempt; it continues from its newest checkpoint."""
    run = store.get_run(db, run_id)
    if run is None:
        raise UserError(f"run {run_id} does not exist in {db.safe_url}", 1)
    status = RunStatus(run.status)
    if status == RunStatus.COMPLETED:
        raise UserError(f"run {run_id} completed: nothing to resume (hrm retry {run_id} starts a new run)", 1)
    if not status.is_terminal:
        raise UserError(f"run {run_id} is {status.value}: only a failed, lost or cancelled run can be resumed", 1)
    if getattr(run, "imported_from", None):
        raise UserError(f"run {run_id} was imported ({run.imported_from}): it cannot be resumed", 1)
    requeued = attempt_store.requeue(db, run_id, by="resume")
    if requeued is None:  # someone else requeued or changed it in between
        raise UserError(f"run {run_id} changed while resuming it; look at `hrm show {run_id}`", 1)
    latest = Checkpoints(checkpoint_dir(db, run_id)).folders()
    where = f"from checkpoint {latest[-1].name}" if latest else "from the start (no checkpoint)"
    store.add_log(db, run_id, f"resume requested: attempt {requeued.attempt} will continue {where}", source="hrm")
    return requeued


# --- the worker's side ----------------------------------------------------------------------------

def attach_checkpoints(db: Database, run: Any, emit: Any) -> Checkpoints:
    """Give ``emit`` the run's checkpoint store; on a resumed attempt, cut the series back to the checkpoint.

    Facts the experiment emitted only early on (e.g. in its first epoch) are carried over from the
    previous attempt's ``info``, saved when it was requeued.
    """

    def cursor() -> dict[str, int] | None:
        if getattr(emit, "pending", False):  # events wait in the spool: no exact cursor, no checkpoint now
            return None
        try:
            return attempt_store.event_cursor(db, run.id)
        except Exception as exc:
            if is_transient(exc):
                return None
            raise

    def saved(info: dict[str, Any]) -> None:
        try:
            attempt_store.set_checkpoint(db, run.id, info)
        except Exception as exc:  # the checkpoint is on disk; the registry learns of the next one
            if not is_transient(exc):
                raise

    def failed(message: str) -> None:  # a full disk costs a checkpoint, not the run
        print(f"hrm worker: {message}", file=sys.stderr, flush=True)
        emit.log(message)

    checkpoints = Checkpoints(checkpoint_dir(db, run.id), cursor=cursor, on_saved=saved, on_error=failed,
                              resume=run.attempt > 1)
    if run.attempt > 1:
        point = checkpoints.resume_point()
        removed = attempt_store.truncate_events(db, run.id, point.cursor if point else None)
        if point is None:
            attempt_store.set_checkpoint(db, run.id, None)
        carried = attempt_store.previous_info(db, run.id)
        current = json.loads(store.get_run(db, run.id).info_json or "{}")
        resumed_from = None if point is None else {"stage": point.stage, "epoch": point.epoch, "seq": point.seq}
        store.merge_info(db, run.id, {**{k: v for k, v in carried.items() if k not in current},
                                      "resumed_from": resumed_from, "rows_superseded": removed})
        where = (f"checkpoint {point.path.name} (stage {point.stage}, epoch {point.epoch})" if point
                 else "the start: no checkpoint was saved")
        store.add_log(db, run.id, f"attempt {run.attempt}: continuing from {where}; "
                                  f"{removed} row(s) recorded after it were removed")
    emit.checkpoints = checkpoints
    return checkpoints


# --- when a run ends (the scheduler) ----------------------------------------------------------------

@dataclass(frozen=True)
class EndPolicy:
    """Scheduler-wide defaults for runs that set none of their own."""

    retries: int = 0
    on_finish: str | None = None
    webhook: str | None = None


def retries_used(db: Database, run_id: int) -> int:
    return sum(1 for a in attempt_store.attempts(db, run_id) if a["requeued_by"] == "retry-policy")


def handle_run_end(db: Database, run_id: int, policy: EndPolicy = EndPolicy(), *, shared_gpu: bool = False) -> str:
    """Retry an infrastructure failure while retries remain; otherwise notify (once per ended attempt).

    Returns what was done: ``retried``, ``notified``, ``already-notified`` or ``not-ended``.
    """
    run = store.get_run(db, run_id)
    if run is None or not RunStatus(run.status).is_terminal:
        return "not-ended"
    verdict = classify(str(getattr(run.status, "value", run.status)), run.error, shared_gpu=shared_gpu)
    allowed = run.max_retries if run.max_retries is not None else policy.retries
    if verdict.retry:
        used = retries_used(db, run_id)
        if used < allowed:
            if attempt_store.requeue(db, run_id, by="retry-policy") is None:
                return "not-ended"  # another scheduler (or a user's resume) requeued it first
            store.add_log(db, run_id, f"{verdict.reason}: retry {used + 1} of {allowed}, attempt {run.attempt + 1} "
                                      "continues from the newest checkpoint", source="scheduler")
            return "retried"
        if allowed:
            store.add_log(db, run_id, f"{verdict.reason}: no retry left ({used} of {allowed} used)", source="scheduler")
    elif allowed and verdict.cause == "code":
        store.add_log(db, run_id, f"not retried: {verdict.reason}", source="scheduler")
    if not attempt_store.claim_notification(db, run_id):
        return "already-notified"
    on_finish = run.on_finish or policy.on_finish
    webhook = run.webhook or policy.webhook
    if on_finish or webhook:
        from core.registry.url import redact_url

        for problem in notify.notify(run, on_finish=on_finish, webhook=webhook, db=redact_url(db.url)):
            log.warning("run %s: %s", run_id, problem)
            store.add_log(db, run_id, f"notification failed: {problem}", source="scheduler")
    return "notified"


def set_run_policy(db: Database, run_id: int, *, max_retries: int | None = None, on_finish: str | None = None,
                   webhook: str | None = None) -> None:
    """Per-run retry and notification settings (validated here: bad ones raise UserError, exit 2)."""
    check_policy(max_retries=max_retries, on_finish=on_finish, webhook=webhook)
    from core.registry.run_updates import set_run_fields

    set_run_fields(db, run_id, {k: v for k, v in (("max_retries", max_retries), ("on_finish", on_finish),
                                                  ("webhook", webhook)) if v is not None})


def check_policy(*, max_retries: int | None, on_finish: str | None, webhook: str | None) -> None:
    """Validate per-run settings before anything is written (UserError, exit 2)."""
    try:
        if on_finish is not None:
            notify.check_command(on_finish)
        if webhook is not None:
            notify.check_webhook(webhook)
    except notify.HookError as exc:
        raise UserError(str(exc), 2) from None
    if max_retries is not None and not 0 <= max_retries <= 100:
        raise UserError("--retries: must be between 0 and 100", 2)

