"""How ``hrm show`` (both read paths) and the dashboard present a run's attempts and checkpoint.

Plain functions over plain rows (no SQLAlchemy), so the standard-library read path
(:mod:`core.registry.fastread`) and the full one build the same JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

ATTEMPT_FIELDS = ("attempt", "status", "started_at", "finished_at", "host", "gpu", "exit_code", "error", "stage",
                  "epoch", "requeued_by")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts))


def attempt_records(archived: Sequence[Mapping[str, Any]], run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every attempt, oldest first: the archived ``runattempt`` rows, then the current one (the run row).

    Each: attempt, status, started_at/finished_at (ISO), host, gpu, exit_code, error, the stage and
    epoch it had reached, and ``requeued_by`` (``resume``, ``retry-policy``; None for the current one).
    """
    rows = [dict(a) for a in archived] + [{**{k: run.get(k) for k in ATTEMPT_FIELDS}, "attempt": run.get("attempt") or 1,
                                           "requeued_by": None}]
    out = []
    for row in rows:
        record = {k: row.get(k) for k in ATTEMPT_FIELDS}
        record["started_at"], record["finished_at"] = _iso(row.get("started_at")), _iso(row.get("finished_at"))
        out.append(record)
    return out


def checkpoint_record(checkpoint_json: str | None) -> dict[str, Any] | None:
    """The newest checkpoint: {seq, stage, epoch, stage_done, score, path, bytes, saved_at (ISO), seconds}."""
    if not checkpoint_json:
        return None
    record = dict(json.loads(checkpoint_json))
    record["saved_at"] = _iso(record.get("saved_at"))
    return record


def describe(attempts: Sequence[Mapping[str, Any]], checkpoint: Mapping[str, Any] | None) -> list[str]:
    """Plain lines for ``hrm show``: one per ended attempt, then the checkpoint."""
    lines = []
    if len(attempts) > 1:
        for a in attempts[:-1]:
            where = f"stage {a['stage']} epoch {a['epoch']}" if a.get("stage") else f"epoch {a['epoch']}"
            how = "resumed by hand" if a.get("requeued_by") == "resume" else "retried automatically"
            lines.append(f"attempt {a['attempt']}: {a['status']} at {where} ({a.get('error') or 'no error'}); {how}")
        lines.append(f"attempt {attempts[-1]['attempt']}: {attempts[-1]['status']} (current)")
    if checkpoint:
        where = f"stage {checkpoint['stage']} epoch {checkpoint['epoch']}" if checkpoint.get("stage") else \
            f"epoch {checkpoint['epoch']}"
        size = f"{checkpoint.get('bytes', 0) / 2**20:.1f} MiB"
        lines.append(f"checkpoint: {where}{' (stage end)' if checkpoint.get('stage_done') else ''}, {size}, "
                     f"saved {checkpoint.get('saved_at')} in {checkpoint.get('seconds', 0):.2f} s: {checkpoint.get('path')}")
    return lines
