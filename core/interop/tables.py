"""``hrm export RUN... --to csv|parquet DIR``: ``runs`` (one flat row per run) and ``metrics`` (long format).

``runs`` has the columns of :func:`core.interop.source.flatten_record` (``config.*``, metric
last/.min/.max); ``metrics`` has run, kind, stage, epoch, layer, key, value, ts. CSV needs nothing
beyond Python; Parquet is written by pyarrow (``[interop]``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from core.interop import require
from core.interop.source import collect, flatten_record
from core.interop.target import staged_folder
from core.registry import Database

METRIC_COLUMNS = ("run", "kind", "stage", "epoch", "layer", "key", "value", "ts")
FORMATS = ("csv", "parquet")


def export_tables(db: Database, run_ids: Sequence[int], target: str | os.PathLike, *, fmt: str) -> Path:
    """Write ``runs.<fmt>`` and ``metrics.<fmt>`` into ``target`` (a new or empty folder)."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    pyarrow = require("pyarrow") if fmt == "parquet" else None
    runs = collect(db, run_ids)
    flat = [flatten_record(r.record) for r in runs]
    columns: list[str] = []
    for row in flat:
        columns.extend(k for k in row if k not in columns)
    metric_rows = [{"run": m["run_id"], **{k: m[k] for k in METRIC_COLUMNS[1:]}} for r in runs for m in r.metrics]
    with staged_folder(target) as staging:
        if fmt == "csv":
            _write_csv(staging / "runs.csv", columns, flat)
            _write_csv(staging / "metrics.csv", list(METRIC_COLUMNS), metric_rows)
        else:
            _write_parquet(pyarrow, staging / "runs.parquet", columns, flat)
            _write_parquet(pyarrow, staging / "metrics.parquet", list(METRIC_COLUMNS), metric_rows)
    return Path(target)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def _write_parquet(pyarrow, path: Path, columns: list[str], rows: list[dict]) -> None:
    import pyarrow.parquet as pq

    data = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds and not kinds <= {int, float, bool} and not kinds <= {str}:
            values = [None if v is None else str(v) for v in values]  # a column that mixes types: text
        elif kinds == {int, float}:
            values = [None if v is None else float(v) for v in values]
        data[name] = values
    pq.write_table(pyarrow.table(data), path)
