"""Runs to and from MLflow: ``hrm export RUN... --to mlflow URI`` and ``hrm import mlflow URI``.

Export: each run becomes an MLflow run in experiment ``hrm/<experiment>`` with the config as params,
every metric with its epoch as step (stage metrics ``s2/val_ppl``, per-layer ``layer3/loss``,
summaries at step 0), the tags, note and status; if anything fails, the runs created so far are
deleted again. Import: MLflow's finished runs come in as read-only hrm records (``imported_from``
set, tagged ``imported``), with params as config and metric histories mapped back the same way;
everything is fetched before the first write, and a run imported before is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import UserError
from core.interop import require
from core.interop.source import collect, series_name
from core.registry import Database, RunStatus, store
from core.registry.db import sqlite_path

EXPERIMENT_PREFIX = "hrm/"
HEADLINE = "best_val_ppl"
MAX_PARAM_LENGTH = 6000
TO_MLFLOW = {"completed": "FINISHED", "failed": "FAILED", "lost": "FAILED", "cancelled": "KILLED"}
FROM_MLFLOW = {"FINISHED": RunStatus.COMPLETED, "FAILED": RunStatus.FAILED, "KILLED": RunStatus.CANCELLED}
_LAYER_KEY = re.compile(r"(?:s(\d+)/)?layer(\d+)/(.+)")
_STAGE_KEY = re.compile(r"s(\d+)/(.+)")


def _client(uri: str, *, must_exist: bool):
    """An MlflowClient for ``uri`` that has answered one request (UserError, exit 1, otherwise)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    tracking = require("mlflow.tracking", package="mlflow")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not uri or not uri.strip():
        raise UserError("an MLflow tracking URI is required (sqlite:///mlflow.db, http://host:5000, ...)", 2)
    if uri.startswith("sqlite:"):
        path = sqlite_path(uri)
        if path is not None and not path.exists() and (must_exist or not path.parent.is_dir()):
            raise UserError(f"MLflow store {uri} does not answer: {path} does not exist", 1)
    try:
        client = tracking.MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure to answer is the user's URI, in one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"MLflow store {uri} does not answer: {reason}", 1) from None
    return client


# --- export -----------------------------------------------------------------------------------

def _params(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for key, value in config.items():
        if isinstance(value, dict):
            out.extend(_params(value, f"{prefix}{key}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out.append((f"{prefix}{key}", text[:MAX_PARAM_LENGTH]))
    return out


def export_mlflow(db: Database, run_ids: Sequence[int], uri: str) -> list[str]:
    """Copy the runs into the MLflow store at ``uri``; returns the new MLflow run ids."""
    runs = collect(db, run_ids)
    client = _client(uri, must_exist=False)
    entities = require("mlflow.entities", package="mlflow")
    created: list[str] = []
    try:
        for run in runs:
            record = run.record
            name = EXPERIMENT_PREFIX + record["experiment"]
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
            tags = {"hrm.run_id": str(record["id"]), "hrm.experiment": record["experiment"],
                    "hrm.registry": db.safe_url, "hrm.tags": ",".join(record["tags"]), "hrm.status": record["status"]}
            if record.get("note"):
                tags["mlflow.note.content"] = record["note"]
            started = _ms(record, "started_at") or _ms(record, "created_at")
            created_run = client.create_run(experiment_id, start_time=started, tags=tags,
                                            run_name=f"hrm-{record['id']}")
            mlflow_id = created_run.info.run_id
            created.append(mlflow_id)
            params = [entities.Param(k, v) for k, v in _params(record["config"])]
            metrics = [entities.Metric(series_name(m, layer_style="mlflow"), float(m["value"]),
                                       int(float(m["ts"]) * 1000),
                                       0 if m["kind"] == "summary" or m["epoch"] is None else int(m["epoch"]))
                       for m in run.metrics]
            for start in range(0, max(len(params), 1), 100):
                client.log_batch(mlflow_id, params=params[start : start + 100])
            for start in range(0, len(metrics), 1000):
                client.log_batch(mlflow_id, metrics=metrics[start : start + 1000])
            status = TO_MLFLOW.get(record["status"])
            if status:
                client.set_terminated(mlflow_id, status=status, end_time=_ms(record, "finished_at"))
    except UserError:
        _undo(client, created)
        raise
    except Exception as exc:  # noqa: BLE001
        _undo(client, created)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"export to MLflow {uri} failed (nothing kept): {reason}", 1) from None
    return created


def _undo(client, created: list[str]) -> None:
    for mlflow_id in created:
        try:
            client.delete_run(mlflow_id)
        except Exception:  # noqa: BLE001 - best effort: the store itself is failing
            pass


def _ms(record: dict[str, Any], field: str) -> int | None:
    text = record.get(field)
    if not text:
        return None
    return int(time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S")) * 1000)


# --- import -----------------------------------------------------------------------------------

@dataclass
class ImportResult:
    imported: list[int]
    """hrm run ids of the new records."""
    skipped_existing: int
    skipped_unfinished: int


def _value(text: str) -> Any:
    """An MLflow param (always text) back to a number, bool, null or JSON value where it is one."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return text


def _metric_rows(client, run) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(run.data.metrics):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
        summary = len(history) == 1 and history[0].step == 0
        layer = _LAYER_KEY.fullmatch(key)
        stage_match = _STAGE_KEY.fullmatch(key)
        for point in history:
            row = {"value": point.value, "ts": point.timestamp / 1000, "epoch": point.step, "stage": 0,
                   "layer": None, "key": key, "kind": "epoch"}
            if layer:
                row.update(kind="layer", stage=int(layer.group(1) or 0), layer=int(layer.group(2)), key=layer.group(3))
            elif stage_match:
                row.update(stage=int(stage_match.group(1)), key=stage_match.group(2))
            if summary and not layer:
                row.update(kind="summary", epoch=None)
            rows.append(row)
    rows.sort(key=lambda r: (r["ts"], r["kind"] == "summary"))
    return rows


def import_mlflow(db: Database, uri: str, *, experiments: Sequence[str] = (), tags: Sequence[str] = ()) -> ImportResult:
    """Bring the finished runs of an MLflow store in as read-only records (all experiments, or those named)."""
    client = _client(uri, must_exist=True)
    try:
        if experiments:
            found = []
            for name in experiments:
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise UserError(f"MLflow store {uri} has no experiment {name!r}", 1)
                found.append(experiment)
        else:
            found = list(client.search_experiments())
        origin_prefix = f"mlflow:{uri}#"
        already = store.imported_runs(db, origin_prefix)
        pending = []
        skipped_existing = skipped_unfinished = 0
        for experiment in found:
            token = None
            while True:
                page = client.search_runs([experiment.experiment_id], max_results=1000, page_token=token,
                                          order_by=["attributes.start_time ASC"])
                for run in page:
                    origin = origin_prefix + run.info.run_id
                    if origin in already:
                        skipped_existing += 1
                        continue
                    if run.info.status not in FROM_MLFLOW:
                        skipped_unfinished += 1
                        continue
                    pending.append((experiment, run, _metric_rows(client, run)))
                token = page.token
                if not token:
                    break
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"reading MLflow store {uri} failed (nothing imported): {reason}", 1) from None
    imported = []
    for experiment, run, rows in pending:  # one transaction per run; everything was fetched already
        run_tags = run.data.tags
        name = run_tags.get("hrm.experiment") or f"mlflow/{experiment.name}"
        started = (run.info.start_time or 0) / 1000 or time.time()
        record = store.create_imported_run(
            db, name, {k: _value(v) for k, v in run.data.params.items()},
            imported_from=origin_prefix + run.info.run_id, status=FROM_MLFLOW[run.info.status],
            created_at=started, started_at=started,
            finished_at=(run.info.end_time / 1000) if run.info.end_time else None, metrics=rows,
            info={"mlflow": {"tracking_uri": uri, "experiment": experiment.name, "run_id": run.info.run_id,
                             "run_name": run.info.run_name,
                             "tags": {k: v for k, v in run_tags.items() if not k.startswith("mlflow.")}}},
            tags=["imported", *tags], note=run_tags.get("mlflow.note.content"),
            headline_key=HEADLINE if any(r["kind"] == "summary" and r["key"] == HEADLINE for r in rows) else None,
        )
        imported.append(record.id)
    return ImportResult(imported, skipped_existing, skipped_unfinished)
