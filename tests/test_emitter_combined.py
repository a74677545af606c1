"""An epoch and its per-layer metrics as one event: one transaction, one sequence number, one commit.

Real registry files, a second real connection reading between the writer's statements, the real
spool and replay of :mod:`core.registry.emitter`, the real tracking client.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3

import pytest

import hrm_tui as hrm
from core import api
from core.registry import open_database, store
from core.registry.emitter import SPOOL_NAME, RegistryEmitter, apply_event, read_spool, replay_spool
from core.runtime import RecordingEmitter
from tests.pg_fixture import pg_server, pg_url  # noqa: F401 - fixtures

LAYERS = 4


def _numbers(epoch: int) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    run_level = {"train_loss": 2.0 / epoch, "val_loss": 2.1 / epoch, "val_ppl": 8.0 + 1.0 / epoch}
    return run_level, {layer: {"loss": 1.0 / (epoch + layer)} for layer in range(1, LAYERS + 1)}


class _Watcher:
    """Reads the registry through its own connection before every statement the writer runs.

    Records each moment a reader could see an epoch's run-level rows without all its layer rows
    (or layer rows without the epoch), and counts the writer's commits.
    """

    def __init__(self, db_path, run_id: int) -> None:
        self.reader = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
        self.run_id = run_id
        self.torn: list[dict] = []
        self.commits = 0

    def __call__(self, statement: str) -> None:
        if statement.strip().upper().startswith("COMMIT"):
            self.commits += 1
        counts: dict[int, dict[str, int]] = {}
        for epoch, kind, count in self.reader.execute(
                "SELECT epoch, kind, count(*) FROM metric WHERE run_id = ? GROUP BY epoch, kind", (self.run_id,)):
            counts.setdefault(epoch, {})[kind] = count
        for epoch, kinds in counts.items():
            if kinds.get("epoch", 0) != 3 or kinds.get("layer", 0) != LAYERS:
                self.torn.append({"at_epoch": epoch, "rows": kinds})

    def close(self) -> None:
        self.reader.close()


def _watch(db, db_path, run_id: int) -> _Watcher:
    watcher = _Watcher(db_path, run_id)
    db.driver_write().driver.set_trace_callback(watcher)  # the writer's own connection (this thread's)
    return watcher


def test_a_combined_epoch_is_one_commit_and_never_seen_without_its_layers(db, db_path, tmp_path):
    run_id = api.submit(db, "smoke", {}).id
    emit = RegistryEmitter(db, run_id, spool_path=tmp_path / SPOOL_NAME)  # numbered, like a worker's
    first_seq = emit.seq
    watcher = _watch(db, db_path, run_id)
    try:
        for epoch in range(1, 6):
            run_level, per_layer = _numbers(epoch)
            emit.epoch(epoch, run_level, total=5, layers=per_layer)
    finally:
        db.driver_write().driver.set_trace_callback(None)
        watcher.close()
    assert watcher.torn == []
    assert watcher.commits == 5
    assert emit.seq == first_seq + 5, "one sequence number per combined event"
    run = store.get_run(db, run_id)
    assert (run.epoch, run.total_epochs, run.event_seq) == (5, 5, first_seq + 5)
    rows = store.metrics(db, run_id)
    assert len(rows) == 5 * (3 + LAYERS)
    assert sorted((r["epoch"], r["layer"]) for r in rows if r["kind"] == "layer") == [
        (e, layer) for e in range(1, 6) for layer in range(1, LAYERS + 1)]
    latest = {r["key"]: r for r in store.latest_metrics(db, [run_id])[run_id]}
    assert set(latest) == {"train_loss", "val_loss", "val_ppl"}, "layer rows keep out of the latest metrics"
    assert latest["val_ppl"]["count"] == 5 and latest["val_ppl"]["min"] == 8.2 and latest["val_ppl"]["min_epoch"] == 5


def test_the_watcher_sees_the_gap_between_two_separate_events(db, db_path, tmp_path):
    """The check above can fail: an epoch event followed by a layers event is seen torn, twice committed."""
    run_id = api.submit(db, "smoke", {}).id
    emit = RegistryEmitter(db, run_id, spool_path=tmp_path / SPOOL_NAME)
    watcher = _watch(db, db_path, run_id)
    try:
        for epoch in range(1, 4):
            run_level, per_layer = _numbers(epoch)
            emit.epoch(epoch, run_level, total=3)
            emit.layers(epoch, per_layer)
    finally:
        db.driver_write().driver.set_trace_callback(None)
        watcher.close()
    assert {t["at_epoch"] for t in watcher.torn} == {1, 2, 3}
    assert watcher.commits == 6


def test_a_combined_event_spools_as_one_line_and_replays_once(db, db_path, tmp_path):
    run_id = api.submit(db, "smoke", {}).id
    store.claim_next(db, host="h", gpu="cpu")
    spool = tmp_path / SPOOL_NAME
    emit = RegistryEmitter(db, run_id, spool_path=spool)
    run_level, per_layer = _numbers(1)
    emit.epoch(1, run_level, total=3, layers=per_layer)
    os.environ["HRM_LOCK_TIMEOUT"] = "0.3"
    try:
        blocker = open_database(db_path)
        with blocker.write():  # another writer holds the lock: this one cannot write
            other = open_database(db_path)  # a fresh engine reads the short lock timeout
            emit.db = other
            run_level, per_layer = _numbers(2)
            emit.epoch(2, run_level, total=3, layers={**per_layer, 2: {"loss": math.nan}})
            (line,) = spool.read_text().splitlines()
        blocker.dispose()
    finally:
        del os.environ["HRM_LOCK_TIMEOUT"]
    spooled = json.loads(line)
    assert spooled["op"] == "epoch" and spooled["seq"] == emit.seq and len(spooled["args"]["layers"]) == LAYERS
    (event,) = read_spool(spool)
    emit.backoff.next_at = 0
    run_level, per_layer = _numbers(3)
    emit.epoch(3, run_level, total=3, layers=per_layer)  # the registry answers: the spool first, then this
    assert not spool.exists()
    rows = store.metrics(db, run_id)
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1] * 3 + [2] * 3 + [3] * 3
    assert [(r["epoch"], r["layer"]) for r in rows if r["kind"] == "layer"] == [
        (e, layer) for e in (1, 2, 3) for layer in range(1, LAYERS + 1)]
    assert [math.isnan(r["value"]) for r in rows if r["kind"] == "layer" and r["epoch"] == 2] == [
        False, True, False, False]
    before = len(rows)
    # Its first commit succeeded unseen: a second replay (from a spool file, or a retry) is a no-op.
    apply_event(db, run_id, event)
    spool.write_text(json.dumps(event) + "\n")
    assert replay_spool(db, run_id, spool) == 1
    assert len(store.metrics(db, run_id)) == before
    latest = {r["key"]: r for r in store.latest_metrics(db, [run_id])[run_id]}
    assert latest["val_ppl"]["count"] == 3
    assert store.get_run(db, run_id).epoch == 3
    other.dispose()


def test_epoch_without_layers_and_empty_layers_stay_plain_epoch_events(db, tmp_path):
    run_id = api.submit(db, "smoke", {}).id
    emit = RegistryEmitter(db, run_id, spool_path=tmp_path / SPOOL_NAME)
    emit.epoch(1, {"val_ppl": 9.0}, total=2)
    emit.epoch(2, {"val_ppl": 8.0}, total=2, layers={})
    assert [(r["kind"], r["epoch"]) for r in store.metrics(db, run_id)] == [("epoch", 1), ("epoch", 2)]
    assert store.get_run(db, run_id).epoch == 2


def _wide_epoch(emit: RegistryEmitter) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """An epoch of 3 + 40 × 4 = 163 rows (more than one multi-row statement holds), with NaN and ±inf."""
    run_level = {"train_loss": math.nan, "val_loss": math.inf, "val_ppl": 7.5}
    per_layer = {layer: {"loss": 1.0 / layer, "norm": float(layer), "cos": -math.inf if layer == 40 else 0.5,
                         "gap": math.nan if layer == 1 else 0.0} for layer in range(1, 41)}
    emit.epoch(1, run_level, total=1, layers=per_layer)
    return run_level, per_layer


def _assert_wide_epoch(db, run_id: int, run_level, per_layer) -> None:
    rows = store.metrics(db, run_id)
    expected = [("epoch", None, k, v) for k, v in run_level.items()]
    expected += [("layer", layer, k, v) for layer, values in per_layer.items() for k, v in values.items()]
    assert len(rows) == len(expected) == 163
    for row, (kind, layer, key, value) in zip(rows, expected):  # in emission order
        assert (row["kind"], row["layer"], row["key"]) == (kind, layer, key)
        if math.isnan(value):
            assert math.isnan(row["value"])
        else:
            assert row["value"] == (max(-1e308, min(1e308, value)))
    latest = {r["key"]: r for r in store.latest_metrics(db, [run_id])[run_id]}
    assert set(latest) == set(run_level) and latest["val_loss"]["last"] == 1e308


def test_a_wide_epoch_spans_several_statements_in_order(db, tmp_path):
    run_id = api.submit(db, "smoke", {}).id
    emit = RegistryEmitter(db, run_id, spool_path=tmp_path / SPOOL_NAME)
    _assert_wide_epoch(db, run_id, *_wide_epoch(emit))


def test_recording_emitter_keeps_the_layers_event_after_its_epoch():
    emit = RecordingEmitter()
    emit.epoch(3, {"val_ppl": 9.0}, stage=2, total=4, layers={1: {"loss": 1.5}})
    emit.epoch(4, {"val_ppl": 8.0}, stage=2, total=4)
    assert [e["t"] for e in emit.events] == ["epoch", "layers", "epoch"]
    assert emit.of("layers") == [{"t": "layers", "epoch": 3, "stage": 2, "layers": {1: {"loss": 1.5}}}]


def test_tracking_client_log_epoch_with_layers(db_path):
    with hrm.init(experiment="my-exp", db=str(db_path)) as run:
        run.log_epoch(1, {"val_ppl": 9.0}, total=1, layers={1: {"loss": 2.0}, 2: {"loss": 1.0}})
        with pytest.raises(hrm.TrackingError, match="layer 'a' is not an integer") as info:
            run.log_epoch(2, {"val_ppl": 8.0}, layers={"a": {"loss": 1.0}})
        assert "\n" not in str(info.value)
    db = open_database(db_path, create=False)
    rows = store.metrics(db, run.id)
    assert [(r["kind"], r["epoch"], r["layer"]) for r in rows] == [
        ("epoch", 1, None), ("layer", 1, 1), ("layer", 1, 2)], "the refused call wrote nothing"
    db.dispose()


@pytest.mark.slow
def test_combined_epoch_on_postgresql_replays_once(pg_url, tmp_path):  # noqa: F811 - the fixture
    db = open_database(pg_url, create=True)
    try:
        run_id = api.submit(db, "smoke", {}).id
        emit = RegistryEmitter(db, run_id, spool_path=tmp_path / SPOOL_NAME)
        run_level, per_layer = _numbers(1)
        emit.epoch(1, run_level, total=1, layers=per_layer)
        event = {"seq": emit.seq, "op": "epoch",
                 "args": {"metrics": run_level, "epoch": 1, "total": 1, "stage": 0,
                          "layers": {str(k): v for k, v in per_layer.items()}}}
        apply_event(db, run_id, event)  # the same numbered event again: skipped whole
        rows = store.metrics(db, run_id)
        assert len(rows) == 3 + LAYERS
        assert store.get_run(db, run_id).epoch == 1
        wide_id = api.submit(db, "smoke", {}).id
        wide = RegistryEmitter(db, wide_id, spool_path=tmp_path / "wide" / SPOOL_NAME)
        _assert_wide_epoch(db, wide_id, *_wide_epoch(wide))
    finally:
        db.dispose()
