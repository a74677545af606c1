"""What an exporter reads: each run's record, its metric history and series names shared by all formats."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import UserError
from core.registry import Database, store


@dataclass(frozen=True)
class RunData:
    record: dict[str, Any]
    """The ``hrm.runs/v1`` record plus ``note`` and ``imported_from``."""
    metrics: list[dict[str, Any]]
    """Metric rows in emission order: kind, stage, epoch, layer, key, value, ts."""


def collect(db: Database, run_ids: Sequence[int]) -> list[RunData]:
    """The runs to export, in the order given (UserError before anything is written if one is missing)."""
    if not run_ids:
        raise UserError("no runs to export: give run ids", 2)
    runs = {r.id: r for r in store.list_runs(db, ids=list(dict.fromkeys(run_ids)))}
    missing = [i for i in run_ids if i not in runs]
    if missing:
        raise UserError(f"run {missing[0]} does not exist in {db.safe_url}", 1)
    latest = store.latest_metrics(db, list(runs))
    rows = store.metrics_of(db, list(runs))
    by_run: dict[int, list[dict[str, Any]]] = {i: [] for i in runs}
    for row in rows:
        by_run[row["run_id"]].append(row)
    out = []
    for run_id in dict.fromkeys(run_ids):
        run = runs[run_id]
        record = run.record(latest.get(run_id, []))
        record["note"] = getattr(run, "note", None)
        record["imported_from"] = getattr(run, "imported_from", None)
        out.append(RunData(record, by_run[run_id]))
    return out


def series_name(row: Mapping[str, Any], *, layer_style: str = "tensorboard") -> str:
    """One name per series: ``val_ppl``, ``s2/val_ppl``; per-layer rows ``layers/loss/3`` (TensorBoard
    groups by the first part) or ``layer3/loss`` (MLflow); summaries keep their key."""
    prefix = f"s{row['stage']}/" if row["stage"] else ""
    if row["kind"] == "layer":
        if layer_style == "tensorboard":
            return f"{prefix}layers/{row['key']}/{row['layer']}"
        return f"{prefix}layer{row['layer']}/{row['key']}"
    return prefix + row["key"]


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A run record as one flat row: run fields, ``config.*`` and each metric's last / .min / .max
    (the names of the ``--where`` language); what ``to_pandas()`` and the CSV/Parquet exports hold."""
    row: dict[str, Any] = {name: record.get(name) for name in FLAT_RUN_COLUMNS}
    row["tags"] = ",".join(record.get("tags", ()))
    row["epoch"] = record["progress"]["epoch"]
    row["total_epochs"] = record["progress"]["total_epochs"]
    row["headline_key"] = record["headline"]["key"]
    row["headline"] = record["headline"]["value"]
    row.update(_flat("config.", record.get("config", {})))
    for key, stats in sorted(record.get("latest", {}).items()):
        row[key] = stats["last"]
        row[f"{key}.min"] = stats["min"]
        row[f"{key}.max"] = stats["max"]
    return row


FLAT_RUN_COLUMNS = ("id", "experiment", "variant", "status", "tags", "note", "created_at", "started_at",
                    "finished_at", "elapsed_s", "epoch", "total_epochs", "headline_key", "headline", "error",
                    "retry_of", "imported_from")


def _flat(prefix: str, mapping: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            yield from _flat(f"{prefix}{key}.", value)
        elif isinstance(value, list):
            yield f"{prefix}{key}", str(value)
        else:
            yield f"{prefix}{key}", value
