"""The registry on real SQLite files: lifecycle, queue claims, metrics, schema versions, bad files."""

from __future__ import annotations

import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from core.registry import RegistryError, RunStatus, open_database, store
from core.registry.models import SCHEMA_VERSION


def test_create_claim_finish(db):
    run = store.create_run(db, "smoke", {"epochs": 2, "variant": "published"}, tags=["a", "b"])
    assert run.status == "queued" and run.variant == "published"
    claimed = store.claim_next(db, host="h", gpu="0")
    assert claimed.id == run.id and claimed.status == "starting" and claimed.gpu == "0"
    assert store.claim_next(db, host="h", gpu="1") is None
    assert store.mark_running(db, run.id, pid=123, host="h", info={"seed": 42})
    assert store.finish_run(db, run.id, RunStatus.COMPLETED)
    assert not store.finish_run(db, run.id, RunStatus.FAILED), "a terminal status is never overwritten"
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.finished_at >= final.started_at
    assert store.tags_of(db, [run.id]) == {run.id: ["a", "b"]}


def test_claim_order_respects_priority(db):
    low = store.create_run(db, "smoke", {})
    high = store.create_run(db, "smoke", {}, priority=5)
    assert store.claim_next(db, host="h", gpu="cpu").id == high.id
    assert store.claim_next(db, host="h", gpu="cpu").id == low.id


def test_concurrent_claims_never_duplicate(db_path):
    db = open_database(db_path)
    for _ in range(100):
        store.create_run(db, "smoke", {})

    def claim_all(_):
        mine = []
        worker_db = open_database(db_path)
        while (run := store.claim_next(worker_db, host="h", gpu="cpu")) is not None:
            mine.append(run.id)
        return mine

    with ThreadPoolExecutor(max_workers=8) as pool:
        claimed = [i for ids in pool.map(claim_all, range(8)) for i in ids]
    assert sorted(claimed) == list(range(1, 101))


def test_cancel_queued_is_immediate_and_active_is_flagged(db):
    active = store.create_run(db, "smoke", {})
    queued = store.create_run(db, "smoke", {})
    store.claim_next(db, host="h", gpu="cpu")  # claims `active` (lower id)
    assert store.request_cancel(db, queued.id).status == "cancelled"
    flagged = store.request_cancel(db, active.id)
    assert flagged.status == "starting" and flagged.cancel_requested
    assert not store.mark_running(db, active.id, pid=1, host="h", info={}), "a cancelled run never starts"


def test_metrics_latest_and_nan(db):
    run = store.create_run(db, "smoke", {})
    for epoch, ppl in enumerate([12.0, 9.5, 11.0, math.nan], start=1):
        store.append_metrics(db, run.id, "epoch", {"val_ppl": ppl}, epoch=epoch, total=4)
    store.append_metrics(db, run.id, "layer", {1: {"loss": 2.0}, 2: {"loss": 1.5}}, epoch=1)
    rows = store.metrics(db, run.id)
    assert [r["value"] for r in rows if r["kind"] == "epoch"][:3] == [12.0, 9.5, 11.0]
    assert math.isnan(rows[3]["value"]) and rows[3]["is_nan"]
    assert [(r["layer"], r["value"]) for r in rows if r["kind"] == "layer"] == [(1, 2.0), (2, 1.5)]
    (latest,) = store.latest_metrics(db, [run.id])[run.id]
    assert (latest["min"], latest["min_epoch"], latest["max"], latest["max_epoch"]) == (9.5, 2, 12.0, 1)
    assert latest["last"] is None and latest["last_epoch"] == 4 and latest["count"] == 4
    assert store.get_run(db, run.id).epoch == 4


def test_metrics_paging_after_id(db):
    run = store.create_run(db, "smoke", {})
    for epoch in range(1, 6):
        store.append_metrics(db, run.id, "epoch", {"loss": float(epoch)}, epoch=epoch)
    first = store.metrics(db, run.id, limit=2)
    rest = store.metrics(db, run.id, after_id=first[-1]["id"])
    assert [r["value"] for r in first + rest] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_summary_sets_headline(db):
    run = store.create_run(db, "smoke", {}, headline_key="best_val_ppl")
    store.append_metrics(db, run.id, "summary", {"best_val_ppl": 10.27, "best_epoch": 10})
    assert store.get_run(db, run.id).headline_value == pytest.approx(10.27)


def test_older_schema_is_migrated(db_path):
    db = open_database(db_path)
    store.create_run(db, "smoke", {"epochs": 1}, tags=["keep"])
    with db.engine.begin() as conn:  # turn it into a v1 registry: no tags table, no retry_of column
        conn.execute(text("DROP TABLE runtag"))
        conn.execute(text("ALTER TABLE run DROP COLUMN retry_of"))
        conn.execute(text("UPDATE hrm_meta SET value = '1' WHERE key = 'schema_version'"))
    db.dispose()
    upgraded = open_database(db_path, create=False)
    with upgraded.read() as conn:
        version = conn.execute(text("SELECT value FROM hrm_meta WHERE key = 'schema_version'")).scalar()
    assert int(version) == SCHEMA_VERSION
    assert store.get_run(upgraded, 1).experiment == "smoke"
    retry = store.create_run(upgraded, "smoke", {}, retry_of=1, tags=["x"])
    assert retry.retry_of == 1


def test_newer_schema_is_refused(db_path):
    db = open_database(db_path)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE hrm_meta SET value = '999' WHERE key = 'schema_version'"))
    with pytest.raises(RegistryError, match="newer hrm"):
        open_database(db_path)


def test_foreign_and_broken_files_are_refused(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(RegistryError, match="not an hrm registry"):
        open_database(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(RegistryError, match="cannot read registry"):
        open_database(garbage)
    with pytest.raises(RegistryError, match="no registry"):
        open_database(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_wal_mode_is_on(db):
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_scheduler_heartbeat_is_exclusive(db):
    first = store.register_scheduler(db, host="h", pid=1, slots="cpu", stale_after=10)
    assert first is not None
    assert store.register_scheduler(db, host="h", pid=2, slots="cpu", stale_after=10) is None
    store.unregister_scheduler(db, first)
    assert store.register_scheduler(db, host="h", pid=3, slots="cpu", stale_after=10) is not None
