"""An :class:`~core.experiments.base.Emitter` that writes each event straight into the registry.

Every call is one committed transaction, so a row is durable the moment ``emit`` returns: a
SIGKILL of the worker (or of the scheduler) loses nothing that was emitted before it. An epoch sent
with its per-layer metrics (``epoch(..., layers=...)``) is one event: one transaction, so a reader
never sees the epoch without its layers, and one commit per epoch instead of two.

Outages do not stop training. Each event carries a sequence number, recorded on the run in the
event's own transaction. When a write fails with a transient error (PostgreSQL restarting, the
SQLite lock held past its bounded wait, a full disk), the event and every later one go, in order,
to ``spool.jsonl`` in the run folder; the spool is replayed as soon as the registry answers again
(by the worker, or by the scheduler after the worker ended), and the sequence numbers make a
replay apply each event exactly once, even one whose first commit succeeded unseen.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.registry import store
from core.registry.db import Database
from core.registry.models import RunStatus
from core.registry.outage import Backoff, first_line, is_transient

log = logging.getLogger("hrm.worker")

SPOOL_NAME = "spool.jsonl"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def apply_event(db: Database, run_id: int, event: Mapping[str, Any]) -> None:
    """Write one numbered event (live or replayed) into the registry; a repeat is skipped."""
    op, args, seq = event["op"], event["args"], event.get("seq")
    if op == "info":
        store.merge_info(db, run_id, args["fields"], seq=seq)
    elif op == "stage":
        store.set_stage(db, run_id, args["stage"], args["name"], args.get("epochs"), seq=seq)
    elif op == "epoch" and args.get("layers"):  # layer keys: ints live, strings from the spool (int() in store)
        store.append_epoch(db, run_id, args["epoch"], args["metrics"], args["layers"],
                           stage=args.get("stage", 0), total=args.get("total"), seq=seq)
    elif op in ("epoch", "summary"):
        store.append_metrics(db, run_id, op, args["metrics"], stage=args.get("stage", 0), epoch=args.get("epoch"),
                             total=args.get("total"), seq=seq)
    elif op == "layers":
        per_layer = {int(layer): values for layer, values in args["per_layer"].items()}
        store.append_metrics(db, run_id, "layer", per_layer, stage=args.get("stage", 0), epoch=args.get("epoch"),
                             seq=seq)
    elif op == "table":
        store.add_table(db, run_id, args["name"], args["rows"], stage=args.get("stage", 0), seq=seq)
    elif op == "log":
        store.add_log(db, run_id, args["message"], seq=seq)
    elif op == "finish":
        store.finish_run(db, run_id, RunStatus(args["status"]), error=args.get("error"),
                         stderr_tail=args.get("stderr_tail"))
    else:
        raise ValueError(f"unknown event {op!r}")


def read_spool(path: Path) -> list[dict[str, Any]]:
    """The spooled events in order; a torn or malformed line (a crash mid-write) is logged and skipped."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    events = []
    for number, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or "op" not in event or "args" not in event:
                raise ValueError("not an event")
            events.append(event)
        except ValueError as exc:
            log.warning("spool %s line %d skipped (%s): %r", path, number, exc, line[:120])
    return events


def replay_spool(db: Database, run_id: int, path: Path) -> int:
    """Apply every spooled event (each once) and remove the spool; returns the number of events read.

    Raises the registry's error when it is still unreachable (the spool is kept).
    """
    events = read_spool(path)
    for event in events:
        apply_event(db, run_id, event)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    return len(events)


class RegistryEmitter:
    """Emitter bound to one run of one registry, numbering its events and spooling through outages.

    ``spool_path`` None disables numbering and spooling (errors then propagate, as before): the
    form for a writer that may share the run with another, such as a tracking client.
    """

    def __init__(self, db: Database, run_id: int, *, spool_path: Path | None = None, first_seq: int | None = None):
        self.db = db
        self.run_id = run_id
        self.spool_path = spool_path
        if first_seq is None and spool_path is not None:
            run = store.get_run(db, run_id)
            first_seq = int(getattr(run, "event_seq", 0) or 0) if run is not None else 0
        self.seq = first_seq or 0
        self.backoff = Backoff()
        self.spooled = 0
        self.outage_error: str | None = None
        # Whether a spool may exist: spared a stat() per event while the registry answers.
        self._spooling = spool_path is not None and spool_path.exists()

    # --- the Emitter protocol -----------------------------------------------------------------
    def info(self, **fields: Any) -> None:
        self._send("info", {"fields": dict(fields)})

    def stage(self, stage: int, name: str, *, epochs: int | None = None) -> None:
        self._send("stage", {"stage": stage, "name": name, "epochs": epochs})

    def epoch(self, epoch: int, metrics: Mapping[str, float], *, stage: int = 0, total: int | None = None,
              layers: Mapping[int, Mapping[str, float]] | None = None) -> None:
        args = {"metrics": _numbers(metrics), "stage": stage, "epoch": epoch, "total": total}
        if layers:  # one event, one transaction: the epoch is never seen without its layers
            args["layers"] = {int(k): _numbers(v) for k, v in layers.items()}
        self._send("epoch", args)

    def layers(self, epoch: int | None, per_layer: Mapping[int, Mapping[str, float]], *, stage: int = 0) -> None:
        self._send("layers", {"per_layer": {int(k): _numbers(v) for k, v in per_layer.items()}, "stage": stage,
                              "epoch": epoch})

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], *, stage: int = 0) -> None:
        self._send("table", {"name": name, "rows": [dict(r) for r in rows], "stage": stage})

    def summary(self, metrics: Mapping[str, float], *, stage: int = 0) -> None:
        self._send("summary", {"metrics": _numbers(metrics), "stage": stage})

    def log(self, message: str) -> None:
        self._send("log", {"message": message})

    # --- delivery -----------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        if self._spooling and not self.spool_path.exists():  # replayed by someone else
            self._spooling = False
        return self._spooling

    def _send(self, op: str, args: dict[str, Any]) -> None:
        if self.spool_path is None:  # unnumbered: another writer (a tracking client) may share the run
            apply_event(self.db, self.run_id, {"op": op, "args": args})
            return
        self.seq += 1
        event = {"seq": self.seq, "op": op, "args": args}
        if self._spooling:
            self.flush()
            if self.pending:
                self._spool(event)
                return
        try:
            apply_event(self.db, self.run_id, event)
        except Exception as exc:
            if self.spool_path is None or not is_transient(exc):
                raise
            self._outage(exc)
            self._spool(event)

    def finish(self, status: RunStatus, *, error: str | None = None, stderr_tail: str | None = None) -> None:
        """The final status, after every spooled event (spooled too while the registry is away)."""
        self._send("finish", {"status": RunStatus(status).value, "error": error, "stderr_tail": stderr_tail})

    def flush(self, *, force: bool = False) -> bool:
        """Replay the spool if due (``force``: now). True when nothing is left in it."""
        if not self.pending:
            return True
        if not force and not self.backoff.ready():
            return False
        try:
            replayed = replay_spool(self.db, self.run_id, self.spool_path)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._outage(exc)
            return False
        self._spooling = False
        lasted = self.backoff.succeeded()
        print(f"hrm worker: registry back after {lasted or 0:.1f} s; {replayed} spooled events replayed",
              file=sys.stderr, flush=True)
        return True

    def _outage(self, exc: BaseException) -> None:
        first = self.backoff.since is None
        delay = self.backoff.failed()
        self.outage_error = first_line(exc)
        if first or delay >= self.backoff.longest:
            print(f"hrm worker: registry unavailable ({self.outage_error}); spooling events to {self.spool_path}, "
                  f"retrying in {delay:.1f} s", file=sys.stderr, flush=True)

    def _spool(self, event: dict[str, Any]) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(event, default=_jsonable).encode() + b"\n"
        fd = os.open(self.spool_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._spooling = True
        self.spooled += 1


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats under string keys (JSON-safe for the spool); ±inf clamped, NaN kept."""
    out = {}
    for key, value in metrics.items():
        value = float(value)
        if value - value != 0.0 and value == value:  # ±inf (NaN fails the second test)
            value = 1e308 if value > 0 else -1e308
        out[key if key.__class__ is str else str(key)] = value
    return out
