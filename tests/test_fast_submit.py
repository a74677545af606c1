"""``hrm run`` on SQLite takes the light path (core.fastsubmit + core.registry.fastwrite): same row, same
checks, same messages as the full path (core.api.submit + store.create_run), without SQLAlchemy or the catalog."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from core import api
from core.experiments import get_experiment
from core.fastsubmit import builtin_experiment, checked_config
from core.registry import fastwrite, store
from core.registry.models import Run
from hrm_tui.cli import app

from conftest import subprocess_env

runner = CliRunner()
VARYING = {"id", "created_at", "updated_at"}


def _row(db_path, run_id: int) -> dict:
    conn = sqlite3.connect(db_path)
    cursor = conn.execute("SELECT * FROM run WHERE id = ?", (run_id,))
    row = dict(zip([d[0] for d in cursor.description], cursor.fetchone()))
    tags = sorted(t for (t,) in conn.execute("SELECT tag FROM runtag WHERE run_id = ?", (run_id,)))
    conn.close()
    return {**{k: v for k, v in row.items() if k not in VARYING}, "tags": tags}


def test_run_defaults_are_the_run_tables():
    fields = {name: info.default for name, info in Run.model_fields.items() if name != "id"}
    assert fastwrite.RUN_DEFAULTS.keys() == fields.keys()
    for name, default in fields.items():
        if name != "experiment":  # required: no default
            assert fastwrite.RUN_DEFAULTS[name] == default, name
    from core.registry import db as registry_db
    from core.scheduler.loop import HEARTBEAT_STALE_AFTER

    assert fastwrite.SCHEDULER_STALE_AFTER == HEARTBEAT_STALE_AFTER
    assert fastwrite.LOCK_SLICE_S * 1000 == registry_db.LOCK_SLICE_MS
    assert fastwrite.LOCK_TIMEOUT_S == registry_db.LOCK_TIMEOUT_S
    assert fastwrite.JOURNAL_SIZE_LIMIT == registry_db.JOURNAL_SIZE_LIMIT


@pytest.mark.parametrize(("name", "values", "tags", "priority"), [
    ("smoke", {"epochs": 3, "layers": 2}, ["a", "b", "a"], 5),
    ("lpt", {"method": "lpt-sum", "variant": "published"}, [], -2),
    ("exec", {"argv": ["true"], "cwd": "/", "name": "", "gpus": 0, "env": []}, ["x"], 0),
])
def test_fast_row_equals_the_full_paths_row(db, db_path, name, values, tags, priority):
    full = api.submit(db, name, values, tags=tags, priority=priority)
    experiment = builtin_experiment(name)
    assert experiment is get_experiment(name)
    config = checked_config(experiment, values)
    with fastwrite.connect(db_path) as fast:
        row = fast.create_run(name, config.model_dump(mode="json"), tags=tags, priority=priority,
                              headline_key=experiment.headline)
    assert row["id"] == full.id + 1
    assert _row(db_path, row["id"]) == _row(db_path, full.id)
    assert store.get_run(db, row["id"]).config == json.loads(row["config_json"])


def test_ids_are_never_reused(db, db_path):
    first = api.submit(db, "smoke", {"epochs": 1})
    second = api.submit(db, "smoke", {"epochs": 1})
    store.delete_run(db, second.id)
    with fastwrite.connect(db_path) as fast:
        row = fast.create_run("smoke", {"epochs": 1})
    assert row["id"] == second.id + 1 > first.id
    conn = sqlite3.connect(db_path)
    conn.execute("DELETE FROM run WHERE id = ?", (row["id"],))
    conn.commit()
    conn.close()
    assert api.submit(db, "smoke", {"epochs": 1}).id == row["id"] + 1


def test_scheduler_alive_agrees_with_the_api(db, db_path):
    name = socket.gethostname()
    with fastwrite.connect(db_path) as fast:
        assert not fast.scheduler_alive(name) and not api.scheduler_alive(db, name=name)
        conn = sqlite3.connect(db_path)
        now = time.time()
        conn.execute("INSERT INTO schedulerlease (name, epoch, host, pid, started_at, beat_at, slots) "
                     "VALUES (?, 1, ?, 1, ?, ?, 'cpu')", (name, name, now, now))
        conn.commit()
        assert fast.scheduler_alive(name) and api.scheduler_alive(db, name=name)
        assert not fast.scheduler_alive("elsewhere") and not api.scheduler_alive(db, name="elsewhere")
        conn.execute("UPDATE schedulerlease SET beat_at = ?", (now - 60,))
        conn.commit()
        conn.close()
        assert not fast.scheduler_alive(name) and not api.scheduler_alive(db, name=name)


def test_unusual_registries_take_the_full_path(db, db_path, tmp_path, monkeypatch):
    assert fastwrite.connect(db_path) is not None
    assert fastwrite.connect(tmp_path / "missing.db") is None
    assert fastwrite.connect("postgresql+psycopg://u@localhost/x") is None
    assert fastwrite.connect("sqlite:///:memory:") is None
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    assert fastwrite.connect(tmp_path / "junk.db") is None
    monkeypatch.setenv("HRM_DURABILITY", "sometimes")
    assert fastwrite.connect(db_path) is None
    monkeypatch.setenv("HRM_DURABILITY", "full")
    with fastwrite.connect(db_path) as fast:
        assert fast.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    monkeypatch.delenv("HRM_DURABILITY")
    conn = sqlite3.connect(db_path)
    conn.execute("ALTER TABLE run ADD COLUMN from_a_newer_hrm INTEGER")  # a column this module does not know
    conn.commit()
    conn.close()
    assert fastwrite.connect(db_path) is None
    result = runner.invoke(app, ["--db", str(db_path), "run", "smoke", "--no-start-scheduler"])
    assert result.exit_code == 0, result.output  # the full path still queues it


def _hrm(db_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), *args], capture_output=True,
                          text=True, env=env or subprocess_env(), timeout=120)


def test_hrm_run_imports_neither_sqlalchemy_nor_the_catalog(db, db_path):
    probe = (
        "import sys\n"
        "from hrm_tui.cli import app\n"
        "try:\n"
        f"    app(['--db', {str(db_path)!r}, 'run', 'smoke', '--epochs', '2', '-t', 'q', '--no-start-scheduler'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('sqlalchemy', 'sqlmodel', 'torch', 'rich', 'core.api', 'core.experiments.lpt', 'core.registry.db')\n"
        "print(sorted({m.split('.')[0] if m.split('.')[0] != 'core' else m for m in sys.modules\n"
        "              if m.startswith(heavy)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=subprocess_env(),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert out.stderr.splitlines()[0] == "run 1 queued (smoke, corrected)"
    assert "no scheduler is running" in out.stderr
    run = store.get_run(db, 1)
    assert run.status.value == "queued" and run.config["epochs"] == 2 and list(run.tags) == ["q"]


@pytest.mark.parametrize("args", [
    ["smoke", "--epochs", "0"],
    ["smoke", "--layers", "999999"],
    ["cascade", "--hard-ratio", "1.5"],
    ["lpt", "--data", "dir"],
    ["saturation"],  # no Alpaca anywhere: refused by the preflight, exit 1
    ["cascade", "--data-file", "ALPACA", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct"],  # no model here
])
def test_errors_are_the_full_paths(db, db_path, tmp_path, args):
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text('[{"instruction": "a", "input": "", "output": "b"}]')
    args = [str(alpaca) if a == "ALPACA" else a for a in args]
    env = {**subprocess_env(), "HF_HUB_OFFLINE": "1", "HRM_CACHE": str(tmp_path / "empty-cache"),
           "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}
    env.pop("HRM_ALPACA_FILE", None)
    env.pop("HRM_MODEL_DIR", None)
    fast = _hrm(db_path, "run", *args, "--no-start-scheduler", env=env)
    full = _hrm(db_path, "run", *args, "--no-start-scheduler", "--retries", "0", env=env)  # forces the full path
    assert fast.returncode == full.returncode in (1, 2)
    assert fast.stderr == full.stderr and len(fast.stderr.strip().splitlines()) == 1, fast.stderr
    assert fast.stderr.startswith("error: ") and fast.stdout == ""
    assert store.list_runs(db) == []


def test_a_locked_registry_is_one_line(db, db_path):
    env = {**subprocess_env(), "HRM_LOCK_TIMEOUT": "0.5"}
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        out = _hrm(db_path, "run", "smoke", "--no-start-scheduler", env=env)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert out.returncode == 1
    assert out.stderr.startswith("error: registry ") and "stayed locked by another writer" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and store.list_runs(db) == []


def test_the_first_run_creates_the_registry_then_runs_go_fast(tmp_path):
    path = tmp_path / "new.db"
    first = _hrm(path, "run", "smoke", "--no-start-scheduler")
    second = _hrm(path, "run", "smoke", "--epochs", "2", "--no-start-scheduler")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == "1\n" and second.stdout == "2\n"
    assert second.stderr.splitlines()[0] == "run 2 queued (smoke, corrected)"
