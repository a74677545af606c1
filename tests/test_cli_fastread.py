"""The stdlib SQLite reader (``core.registry.fastread``) returns exactly what ``core.api`` returns."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys

import pytest

from core import api
from core.registry import fastread, models, open_database, store


@pytest.fixture
def filled(db_path):
    """A registry with every kind of row: tags, stages, NaN, summaries, tables, a cancelled run."""
    db = open_database(db_path, create=True)
    plain = store.create_run(db, "smoke", {"epochs": 3, "seed": 1}, tags=["b", "a"], headline_key="best_val_ppl")
    for epoch, ppl in enumerate([12.0, 9.5, math.nan], start=1):
        store.append_metrics(db, plain.id, "epoch", {"val_ppl": ppl, "loss": 1.0 / epoch}, epoch=epoch, total=3)
        store.append_metrics(db, plain.id, "layer", {1: {"loss": 2.0}, 2: {"loss": math.nan}}, epoch=epoch)
    staged = store.create_run(db, "lpt", {"method": "lpt-sum"}, tags=["a"], priority=3, headline_key="best_val_ppl")
    store.set_stage(db, staged.id, 2, "grow", 4)
    store.append_metrics(db, staged.id, "epoch", {"val_ppl": 30.0}, stage=2, epoch=1, total=4)
    store.append_metrics(db, staged.id, "summary", {"best_val_ppl": 29.5, "best_epoch": 1})
    store.add_table(db, staged.id, "thresholds", [{"t": 0.5, "acc": 0.9}, {"t": 0.9, "acc": None}], stage=2)
    store.merge_info(db, staged.id, {"params": 152064, "device": "cpu"})
    claimed = store.claim_next(db, host="h", gpu="cpu")
    store.mark_running(db, claimed.id, pid=123, host="h", info={"torch": "2.13"})
    store.finish_run(db, claimed.id, models.RunStatus.FAILED, exit_code=1, error="boom")
    cancelled = store.create_run(db, "smoke", {"epochs": 1})
    store.request_cancel(db, cancelled.id)
    for i in range(5):
        store.create_run(db, "smoke", {"epochs": 1, "seed": i}, tags=[f"t{i % 2}"])
    yield db
    db.dispose()


def _same(a, b) -> bool:
    """Equal as JSON (NaN equal to NaN)."""
    return json.dumps(a, sort_keys=False, default=str) == json.dumps(b, sort_keys=False, default=str)


def test_reader_knows_the_current_schema():
    assert fastread.SCHEMA_VERSION == models.SCHEMA_VERSION


@pytest.mark.parametrize("filters", [
    {}, {"last": 3}, {"last": 2, "offset": 2}, {"offset": 4}, {"statuses": ["queued"]},
    {"statuses": ["failed", "cancelled"]}, {"experiment": "lpt"}, {"tag": "a"}, {"tag": "t1", "last": 1},
    {"ids": [2, 1]}, {"ids": []}, {"experiment": "nope"},
])
def test_records_are_identical_to_the_api(filled, db_path, filters):
    conn = fastread.connect(db_path)
    assert conn is not None
    try:
        fast = fastread.list_records(conn, **filters)
    finally:
        conn.close()
    slow = api.list_records(filled, **filters)
    assert _same(fast, slow), (fast, slow)
    counted = {k: v for k, v in filters.items() if k in ("statuses", "experiment", "tag")}
    conn = fastread.connect(db_path)
    assert fastread.count_runs(conn, **counted) == len(api.list_records(filled, **counted))
    conn.close()


@pytest.mark.parametrize("run_id", [1, 2, 3, 4])
def test_run_details_are_identical_to_the_api(filled, db_path, run_id):
    conn = fastread.connect(db_path)
    fast = fastread.run_details(conn, run_id)
    conn.close()
    slow = api.list_records(filled, ids=[run_id])[0]
    slow["metrics"] = store.metrics(filled, run_id)
    slow["tables"] = store.result_tables(filled, run_id)
    slow.update(api.attempt_fields(filled, run_id))  # what `hrm show --json` adds on the full path
    assert _same(fast, slow)
    assert fastread.run_details(fastread.connect(db_path), 999) is None


def test_cli_json_matches_the_full_path(filled, db_path):
    """`hrm ls --json` / `hrm show --json` as whole processes print what core.api's records say."""
    def hrm(*args):
        out = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    listed = hrm("ls", "--json", "--all")
    assert _same(listed["runs"], api.list_records(filled))
    shown = hrm("show", "2", "--json")["run"]
    assert shown["tables"][0]["name"] == "thresholds" and shown["headline"]["value"] == 29.5


@pytest.mark.parametrize("target", ["postgresql://u@h/db", "sqlite://", ":memory:", "sqlite:///:memory:", ""])
def test_other_targets_take_the_full_path(target):
    assert fastread.connect(target) is None


def test_files_that_are_not_current_registries_take_the_full_path(tmp_path, db_path, filled):
    missing = tmp_path / "missing.db"
    assert fastread.connect(missing) is None and not missing.exists()
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert fastread.connect(foreign) is None
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite" * 100)
    assert fastread.connect(garbage) is None
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE hrm_meta SET value = '2' WHERE key = 'schema_version'")
    assert fastread.connect(db_path) is None, "an older schema must go through the migrating path"


def test_sqlite_url_of_an_absolute_path(db_path, filled):
    conn = fastread.connect(f"sqlite:///{db_path}")
    assert conn is not None and len(fastread.list_records(conn)) == 8
    conn.close()
