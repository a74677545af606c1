"""``hrm export RUN... --to tensorboard DIR``: one event-file folder per run, read by TensorBoard.

Scalars are series named like the registry's keys (``val_ppl``, ``s2/val_ppl``) with the epoch as
step; per-layer metrics become ``layers/<key>/<layer>`` series (TensorBoard groups them under
``layers``); summaries are written at step 0. The config is written as the run's hyperparameters
(the HParams tab compares runs by them). Each run's folder also holds its ``record.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from core.interop import require
from core.interop.source import RunData, collect, flatten_record, series_name
from core.interop.target import staged_folder
from core.registry import Database


def run_folder_name(record) -> str:
    return f"{record['id']}-{record['experiment'].replace('/', '_')}"


def export_tensorboard(db: Database, run_ids: Sequence[int], target: str | os.PathLike) -> Path:
    """Write every run's scalars as TensorBoard event files under ``target`` (new or empty)."""
    event_file_writer = require("tensorboard.summary.writer.event_file_writer", package="tensorboard")
    event_pb2 = require("tensorboard.compat.proto.event_pb2", package="tensorboard")
    summary_pb2 = require("tensorboard.compat.proto.summary_pb2", package="tensorboard")
    runs = collect(db, run_ids)
    with staged_folder(target) as staging:
        for run in runs:
            _write_run(staging / run_folder_name(run.record), run, event_file_writer, event_pb2, summary_pb2)
    return Path(target)


def _write_run(folder: Path, run: RunData, event_file_writer, event_pb2, summary_pb2) -> None:
    folder.mkdir()
    (folder / "record.json").write_text(json.dumps(run.record, indent=2, default=str) + "\n")
    writer = event_file_writer.EventFileWriter(str(folder), flush_secs=3600)
    try:
        first = float(run.metrics[0]["ts"]) if run.metrics else time.time()
        writer.add_event(_hparams_event(run.record, first, event_pb2, summary_pb2))
        for row in run.metrics:
            value = summary_pb2.Summary.Value(tag=series_name(row), simple_value=float(row["value"]))
            step = 0 if row["kind"] == "summary" or row["epoch"] is None else int(row["epoch"])
            writer.add_event(event_pb2.Event(wall_time=float(row["ts"]), step=step,
                                             summary=summary_pb2.Summary(value=[value])))
    finally:
        writer.close()


def _hparams_event(record, wall_time: float, event_pb2, summary_pb2):
    """The HParams plugin's session-start summary holding the run's config (built without TensorFlow)."""
    hp_metadata = require("tensorboard.plugins.hparams.metadata", package="tensorboard")
    plugin_data = require("tensorboard.plugins.hparams.plugin_data_pb2", package="tensorboard")
    info = plugin_data.SessionStartInfo(group_name=str(record["id"]))
    for name, value in flatten_record(record).items():
        if not name.startswith("config.") or value is None:
            continue
        key = name.removeprefix("config.")
        if isinstance(value, bool):
            info.hparams[key].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[key].number_value = float(value)
        else:
            info.hparams[key].string_value = str(value)
    content = plugin_data.HParamsPluginData(session_start_info=info)
    value = summary_pb2.Summary.Value(tag=hp_metadata.SESSION_START_INFO_TAG,
                                      metadata=hp_metadata.create_summary_metadata(content),
                                      tensor=hp_metadata.NULL_TENSOR)
    return event_pb2.Event(wall_time=wall_time, step=0, summary=summary_pb2.Summary(value=[value]))
