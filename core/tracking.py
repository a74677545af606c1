"""The headless half of the tracking client: a script's or notebook's run, written like a worker's.

``hrm_tui.init()`` (the user-facing half, with the context manager and the crash hooks) builds a
:class:`Tracker` with :func:`start`. Every call is checked first (a bad call raises one-line
:class:`TrackingError` and writes nothing), then written through the same
:class:`~core.registry.emitter.RegistryEmitter` the worker uses: one transaction per event, durable
when the call returns, so a script killed at any point leaves every logged row behind.

Two modes. *Attached*: inside ``hrm exec`` the worker exports ``HRM_RUN_ID`` and ``HRM_DB``; the
script's events go into that run, and the worker decides its final status from the exit code.
*Own run*: anywhere else, the client creates a ``running`` run of its own (never claimable by a
scheduler) and ends it itself: ``completed`` on finish, ``failed`` with the traceback tail on a crash.
"""

from __future__ import annotations

import json
import numbers
import os
import platform
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import RunCancelled, TrackingError
from core.registry import RunStatus, open_database, resolve_db_url, store
from core.registry.db import Database
from core.registry.emitter import RegistryEmitter
from core.registry.leases import beat_worker
from core.registry.tracked import add_tags, create_tracked_run, run_state, script_host

RUN_ID_ENV = "HRM_RUN_ID"
DB_ENV = "HRM_DB"
CANCEL_POLL_S = 2.0
"""How often (at most) a run of its own checks whether ``hrm cancel`` asked it to stop."""
TRACEBACK_TAIL = 4000


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(where: str, key: Any, value: Any) -> float:
    if not isinstance(key, str) or not key:
        raise TrackingError(f"{where}: metric names must be non-empty strings, got {key!r}")
    if isinstance(value, (str, bytes)) or value is None:
        raise TrackingError(f"{where}: metric {key!r} is not a number: {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TrackingError(f"{where}: metric {key!r} is not a number: {value!r}") from None


def _metrics(where: str, metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TrackingError(f"{where}: metrics must be a mapping {{name: number}}, got {type(metrics).__name__}")
    return {key: _number(where, key, value) for key, value in metrics.items()}


def _per_layer(where: str, per_layer: Any) -> dict[int, dict[str, float]]:
    if not isinstance(per_layer, Mapping):
        raise TrackingError(f"{where}: expected {{layer: {{name: number}}}}, got {type(per_layer).__name__}")
    rows: dict[int, dict[str, float]] = {}
    for layer, metrics in per_layer.items():
        if not _is_int(layer):
            raise TrackingError(f"{where}: layer {layer!r} is not an integer (layers are numbered 0, 1, 2, ...)")
        rows[int(layer)] = _metrics(f"{where} layer {layer}", metrics)
    return rows


def _index(where: str, name: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not _is_int(value) or value < 0:
        raise TrackingError(f"{where}: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def _plain(value: Any) -> Any:
    """Config and info values as JSON: numpy/torch scalars as numbers, anything else unknown as text."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def script_info() -> dict[str, Any]:
    """Where the tracked code runs, like a worker's run info."""
    return {"client": "hrm_tui.init", "python": platform.python_version(), "pid": os.getpid(),
            "argv": list(sys.argv), "cwd": os.getcwd(), "data_source": "script"}


HEARTBEAT_ENV = "HRM_HEARTBEAT_INTERVAL"
DEFAULT_HEARTBEAT_S = 5.0


class _Heartbeat(threading.Thread):
    """Beats for a script's own run (``run.heartbeat_at``), like a worker, while the process lives."""

    def __init__(self, db: Database, run_id: int) -> None:
        super().__init__(name=f"hrm-heartbeat-{run_id}", daemon=True)
        self.db, self.run_id = db, run_id
        self.interval = float(os.environ.get(HEARTBEAT_ENV) or DEFAULT_HEARTBEAT_S)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                if not beat_worker(self.db, self.run_id, pid=os.getpid(), host=script_host()):
                    return  # ended, cancelled or marked lost: nothing left to keep alive
            except Exception:  # noqa: BLE001 - a registry hiccup: the next beat tries again
                continue

    def stop(self) -> None:
        self._halt.set()


class Tracker:
    """One tracked run: checked calls in, registry events out (see the module docstring)."""

    def __init__(self, db: Database, run_id: int, *, attached: bool) -> None:
        self.db = db
        self.run_id = run_id
        self.attached = attached
        self.finished = False
        self.emitter = RegistryEmitter(db, run_id)
        self._next_cancel_check = time.monotonic() + CANCEL_POLL_S
        self._heart: _Heartbeat | None = None
        if not attached:  # inside hrm exec the worker beats for the run
            self._heart = _Heartbeat(db, run_id)
            self._heart.start()

    # --- checks -----------------------------------------------------------------------------------
    def _live(self, call: str) -> None:
        if self.finished:
            raise TrackingError(f"run {self.run_id} is finished: {call}() after finish()")
        if not self.attached and time.monotonic() >= self._next_cancel_check:
            self._next_cancel_check = time.monotonic() + CANCEL_POLL_S
            state = run_state(self.db, self.run_id)
            if state is None:
                self._stop_heart()
                raise RunCancelled(f"run {self.run_id} was deleted from {self.db.safe_url}")
            status, cancel_requested = state
            if cancel_requested or RunStatus(status).is_terminal:
                if not RunStatus(status).is_terminal:
                    store.finish_run(self.db, self.run_id, RunStatus.CANCELLED, error="cancelled by request")
                self._stop_heart()
                raise RunCancelled(f"run {self.run_id} was cancelled")

    def _stop_heart(self) -> None:
        self.finished = True
        if self._heart is not None:
            self._heart.stop()

    # --- events -----------------------------------------------------------------------------------
    def epoch(self, epoch: int, metrics: Mapping[str, float], *, stage: int = 0, total: int | None = None,
              layers: Mapping[int, Mapping[str, float]] | None = None) -> None:
        self._live("log_epoch")
        where = f"log_epoch(epoch={epoch!r})"
        epoch = _index(where, "epoch", epoch)
        stage = _index(where, "stage", stage)
        total = _index(where, "total", total, optional=True)
        rows = None if layers is None else _per_layer(where, layers)
        self.emitter.epoch(epoch, _metrics(where, metrics), stage=stage, total=total, layers=rows)

    def layers(self, epoch: int | None, per_layer: Mapping[int, Mapping[str, float]], *, stage: int = 0) -> None:
        self._live("log_layers")
        where = f"log_layers(epoch={epoch!r})"
        epoch = _index(where, "epoch", epoch, optional=True)
        stage = _index(where, "stage", stage)
        self.emitter.layers(epoch, _per_layer(where, per_layer), stage=stage)

    def summary(self, metrics: Mapping[str, float], *, stage: int = 0) -> None:
        self._live("summary")
        self.emitter.summary(_metrics("summary()", metrics), stage=_index("summary()", "stage", stage))

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], *, stage: int = 0) -> None:
        self._live("log_table")
        if not isinstance(name, str) or not name:
            raise TrackingError(f"log_table: the table name must be a non-empty string, got {name!r}")
        if isinstance(rows, Mapping) or not all(isinstance(r, Mapping) for r in rows):
            raise TrackingError(f"log_table({name!r}): rows must be a list of mappings {{column: value}}")
        self.emitter.table(name, [_plain(dict(r)) for r in rows], stage=_index("log_table", "stage", stage))

    def stage(self, stage: int, name: str, *, epochs: int | None = None) -> None:
        self._live("stage")
        stage = _index("stage()", "stage", stage)
        self.emitter.stage(stage, str(name), epochs=_index("stage()", "epochs", epochs, optional=True))

    def info(self, **fields: Any) -> None:
        self._live("info")
        self.emitter.info(**_plain(fields))

    def log(self, message: str) -> None:
        self._live("log")
        self.emitter.log(str(message))

    # --- the end ----------------------------------------------------------------------------------
    def finish(self, *, error: str | None = None, traceback_tail: str | None = None, cancelled: bool = False) -> None:
        """End the run (idempotent): ``completed``, ``failed`` when ``error`` is given, or ``cancelled``.
        Attached to an ``hrm exec`` run, it only records a crash: the worker writes the status."""
        if self.finished:
            return
        self.finished = True
        if self._heart is not None:
            self._heart.stop()
        tail = traceback_tail[-TRACEBACK_TAIL:] if traceback_tail else None
        if self.attached:
            if error:
                store.add_log(self.db, self.run_id, f"script failed: {error}", source="client")
                store.merge_info(self.db, self.run_id, {"script_error": error})
            return
        status = RunStatus.CANCELLED if cancelled else RunStatus.FAILED if error else RunStatus.COMPLETED
        store.finish_run(self.db, self.run_id, status, error=error, stderr_tail=tail)


_OPENED: dict[str, Database] = {}
"""Registries this process opened, by URL: a notebook starting many runs opens (and checks) each once."""


def _database(db: str | None, *, create: bool) -> Database:
    url = resolve_db_url(db)
    if url in _OPENED:
        return _OPENED[url]
    try:
        database = open_database(url, create=create)
    except Exception as exc:  # noqa: BLE001 - RegistryError and driver errors alike: one line
        raise TrackingError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    _OPENED[url] = database
    return database


def start(db: str | None = None, *, experiment: str | None = None, config: Mapping[str, Any] | None = None,
          tags: Sequence[str] = (), headline: str | None = "best_val_ppl", run_id: int | None = None) -> Tracker:
    """A :class:`Tracker`: attached to ``run_id`` (default ``$HRM_RUN_ID`` when ``db`` is not given),
    else a new ``running`` run of ``experiment`` in ``db`` (default ``$HRM_DB``, then ``./runs.db``)."""
    if isinstance(tags, str):
        tags = [tags]
    if not all(isinstance(t, str) and t for t in tags):
        raise TrackingError(f"tags must be non-empty strings, got {list(tags)!r}")
    if config is not None and not isinstance(config, Mapping):
        raise TrackingError(f"config must be a mapping, got {type(config).__name__}")
    config = _plain(dict(config or {}))
    if run_id is None and db is None and os.environ.get(RUN_ID_ENV):
        raw = os.environ[RUN_ID_ENV]
        if not raw.isdigit():
            raise TrackingError(f"${RUN_ID_ENV}={raw!r} is not a run id")
        run_id = int(raw)
    database = _database(db or os.environ.get(DB_ENV), create=run_id is None)
    if run_id is not None:
        state = run_state(database, run_id)
        if state is None:
            raise TrackingError(f"run {run_id} does not exist in {database.safe_url}")
        if RunStatus(state[0]).is_terminal:
            raise TrackingError(f"run {run_id} is already {state[0]}")
        fields: dict[str, Any] = {"script_config": config} if config else {}
        if experiment:
            fields["script_experiment"] = experiment
        if fields:
            store.merge_info(database, run_id, fields)
        add_tags(database, run_id, list(tags))
        return Tracker(database, run_id, attached=True)
    if not isinstance(experiment, str) or not experiment.strip():
        raise TrackingError("init() needs experiment='name' (what this script runs)")
    new_id = create_tracked_run(database, experiment.strip(), config, pid=os.getpid(), info=script_info(),
                                tags=list(tags), headline_key=headline)
    return Tracker(database, new_id, attached=False)

