"""The CLI through Typer's runner: queueing, listings, JSON schemas and every bad-input path."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from core.registry import open_database, store
from core.registry.emitter import RegistryEmitter
from hrm_tui.cli import app

runner = CliRunner()


def hrm(*args: str):
    return runner.invoke(app, list(args))


def run_count(path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM run").fetchone()[0]


def test_run_queues_with_config_and_tags(db_path):
    result = hrm("--db", str(db_path), "run", "smoke", "--epochs", "7", "--variant", "published",
                 "--tag", "demo", "--no-start-scheduler")
    assert result.exit_code == 0, result.output
    db = open_database(db_path)
    (run,) = store.list_runs(db)
    assert run.status == "queued" and run.variant == "published"
    assert json.loads(run.config_json)["epochs"] == 7
    assert store.tags_of(db, [run.id]) == {run.id: ["demo"]}


def test_db_from_environment(db_path, monkeypatch):
    monkeypatch.setenv("HRM_DB", str(db_path))
    assert hrm("run", "smoke", "--no-start-scheduler").exit_code == 0
    assert run_count(db_path) == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "nope"], 2, "No such command"),
        (["run", "smoke", "--bogus", "1"], 2, "--bogus"),
        (["run", "smoke", "--epochs", "0"], 2, "--epochs: Input should be greater than or equal to 1"),
        (["run", "smoke", "--epochs", "ten"], 2, "--epochs"),
        (["run", "smoke", "--variant", "weird"], 2, "--variant"),
        (["run", "smoke", "--device", "tpu"], 2, "--device"),
        (["run", "lpt", "--data-dir", "/no/such/dir"], 2, "--data-dir: '/no/such/dir' does not exist"),
        (["run", "saturation", "--data-file", "/no/such.json"], 2, "--data-file: '/no/such.json' does not exist"),
        (["run", "cascade", "--model", "./missing.gguf"], 2, "--model: './missing.gguf' does not exist"),
        (["run", "cascade", "--hard-ratio", "1.5"], 2, "--hard-ratio: Input should be less than 1"),
        (["show", "99"], 1, "run 99 does not exist"),
        (["cancel", "99"], 1, "run 99 does not exist"),
        (["retry", "99"], 1, "run 99 does not exist"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(db_path, args, code, message):
    open_database(db_path).dispose()  # an existing, empty registry
    result = hrm("--db", str(db_path), *args, *(["--no-start-scheduler"] if args[0] == "run" else []))
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert "Traceback" not in result.output
    assert run_count(db_path) == 0


def test_out_of_range_rejected_before_the_registry_is_created(db_path):
    result = hrm("--db", str(db_path), "run", "smoke", "--stages", "99", "--no-start-scheduler")
    assert result.exit_code == 2 and "--stages" in result.output
    assert not db_path.exists(), "nothing is written for bad input, not even an empty registry"


@pytest.mark.parametrize("content", [b"garbage" * 200, None])
def test_unreadable_or_foreign_database(tmp_path, content):
    path = tmp_path / "bad.db"
    if content:
        path.write_bytes(content)
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (x)")
    result = hrm("--db", str(path), "ls")
    assert result.exit_code == 1 and result.output.startswith("error:") and len(result.output.splitlines()) == 1


def test_missing_registry_for_reads(tmp_path):
    result = hrm("--db", str(tmp_path / "none.db"), "ls")
    assert result.exit_code == 1 and "no registry" in result.output
    assert not (tmp_path / "none.db").exists()


def seeded(db_path):
    db = open_database(db_path)
    for epochs in (3, 5):
        assert hrm("--db", str(db_path), "run", "smoke", "--epochs", str(epochs), "--no-start-scheduler").exit_code == 0
    emit = RegistryEmitter(db, 1)
    store.claim_next(db, host="h", gpu="cpu")
    store.mark_running(db, 1, pid=1, host="h", info={"seed": 42})
    emit.epoch(1, {"train_loss": 2.5, "val_ppl": 12.0}, total=3)
    emit.layers(1, {1: {"loss": 3.1}, 2: {"loss": 2.6}})
    emit.epoch(2, {"train_loss": 2.1, "val_ppl": 9.75}, total=3)
    emit.summary({"best_val_ppl": 9.75, "best_epoch": 2})
    emit.table("thresholds", [{"threshold": 0.5, "shallow_pct": 91.1}])
    return db


def test_ls_json_schema_and_filters(db_path):
    seeded(db_path)
    result = hrm("--db", str(db_path), "ls", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == "hrm.runs/v1"
    by_id = {r["id"]: r for r in data["runs"]}
    assert set(by_id) == {1, 2}
    assert by_id[1]["status"] == "running" and by_id[1]["progress"]["epoch"] == 2
    assert by_id[1]["headline"] == {"key": "best_val_ppl", "value": 9.75}
    assert by_id[1]["latest"]["val_ppl"]["min"] == 9.75 and by_id[1]["latest"]["val_ppl"]["min_epoch"] == 2
    queued = json.loads(hrm("--db", str(db_path), "ls", "--json", "--status", "queued").output)["runs"]
    assert [r["id"] for r in queued] == [2]
    assert [r["id"] for r in json.loads(hrm("--db", str(db_path), "ls", "--json", "--last", "1").output)["runs"]] == [2]
    assert json.loads(hrm("--db", str(db_path), "ls", "--json", "-e", "other").output)["runs"] == []


def test_ls_and_show_render_tables(db_path):
    seeded(db_path)
    listing = hrm("--db", str(db_path), "ls")
    assert listing.exit_code == 0 and "smoke" in listing.output and "running" in listing.output
    shown = hrm("--db", str(db_path), "show", "1")
    assert shown.exit_code == 0, shown.output
    for expected in ("per-epoch metrics", "9.75", "per-layer loss", "3.1", "thresholds", "91.1", "seed=42"):
        assert expected in shown.output
    data = json.loads(hrm("--db", str(db_path), "show", "1", "--json").output)["run"]
    assert len(data["metrics"]) == 4 + 2 + 2 and data["tables"][0]["name"] == "thresholds"


def test_cancel_retry_delete(db_path):
    seeded(db_path)
    assert "cancelled" in hrm("--db", str(db_path), "cancel", "2").output
    again = hrm("--db", str(db_path), "cancel", "2")
    assert again.exit_code == 1 and "already cancelled" in again.output
    retried = hrm("--db", str(db_path), "retry", "2", "--no-start-scheduler")
    assert retried.exit_code == 0 and "run 3 queued" in retried.output
    db = open_database(db_path)
    assert store.get_run(db, 3).retry_of == 2 and store.get_run(db, 3).config_json == store.get_run(db, 2).config_json
    refused = hrm("--db", str(db_path), "delete", "1", "--yes")
    assert refused.exit_code == 1 and "cancel it before deleting" in refused.output
    assert hrm("--db", str(db_path), "delete", "2", "--yes").exit_code == 0
    assert store.get_run(db, 2) is None


def test_experiments_lists_the_catalog_with_bounds(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = json.loads(hrm("experiments", "--json").output)
    smoke = next(e for e in data["experiments"] if e["name"] == "smoke")
    epochs = next(p for p in smoke["parameters"] if p["name"] == "epochs")
    assert epochs == {"name": "epochs", "type": "int", "default": 3, "bounds": "1 ≤ x ≤ 10000", "choices": None,
                      "description": "number of epochs to emit"}
    variant = next(p for p in smoke["parameters"] if p["name"] == "variant")
    assert variant["choices"] == ["published", "corrected"]
    assert "smoke" in hrm("experiments").output


def test_generated_options_follow_the_config(db_path):
    help_text = hrm("run", "smoke", "--help").output
    for option in ("--epochs", "--fail-at-epoch", "--noisy", "--variant", "--follow", "--wait"):
        assert option in help_text
