"""``hrm reproduce`` and ``hrm sweep``: what gets queued, with which tags, and bad input that writes nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from core import api, published
from core.experiments import catalog
from core.registry import store
from core.reproduce import compare_report, plan_reproduce
from hrm_tui.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_background_scheduler(monkeypatch):
    started: list[str] = []
    monkeypatch.setattr(api, "ensure_scheduler", lambda db: started.append(db.url) or 4242)
    monkeypatch.setattr(api, "start_background_scheduler", lambda db, **_: started.append(db.url) or 4242)
    return started


def hrm(*args: str):
    return runner.invoke(app, list(args))


def run_count(path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM run").fetchone()[0]


def queued(db_path, tag: str) -> list[tuple[str, dict]]:
    from core.registry import open_database

    db = open_database(db_path)
    return [(r.experiment, json.loads(r.config_json)) for r in reversed(store.list_runs(db, tag=tag))]


# --- reproduce --------------------------------------------------------------------------------

def test_reproduce_queues_the_runs_with_the_tag_and_starts_a_scheduler(db_path, no_background_scheduler):
    result = hrm("--db", str(db_path), "reproduce", "004", "--only", "10,11")
    assert result.exit_code == 0, result.output
    assert result.stdout == "reproduce-004-published\n"
    runs = queued(db_path, "reproduce-004-published")
    assert [(e, c.get("model") or c.get("loss")) for e, c in runs] == [
        ("confidence-routing", "routed"), ("confidence-routing", "std4"), ("confidence-routing", "std2"),
        ("lpt-routing", "standard"), ("lpt-routing", "full-lpt"), ("lpt-routing", "lpt-ra")]
    for _, config in runs:
        assert config["variant"] == "published" and config["device"] == "cpu" and config["cpu_threads"] == 2
        assert config["seed"] == 42 and config["max_epochs"] == 30 and config["patience"] == 5
    assert no_background_scheduler == [f"sqlite:///{db_path}"]
    # The queued runs are what `compare --report` matches (numbers still missing: nothing ran).
    from core.registry import open_database

    result = compare_report(open_database(db_path), "004", exps=["10"])
    assert all(rec and rec["status"] == "queued" for rec in result.matches.values())
    assert result.summary["counts"] == {"missing": 32}


def test_reproduce_is_idempotent_and_variants_are_separate(db_path, no_background_scheduler):
    assert hrm("--db", str(db_path), "reproduce", "004", "--only", "4", "--no-start-scheduler").exit_code == 0
    again = hrm("--db", str(db_path), "reproduce", "004", "--only", "4", "--no-start-scheduler")
    assert again.exit_code == 0 and "0 queued, 4 already there" in again.output
    assert run_count(db_path) == 4 and no_background_scheduler == []
    corrected = hrm("--db", str(db_path), "reproduce", "004", "--only", "4", "--variant", "corrected",
                    "--no-start-scheduler")
    assert corrected.exit_code == 0 and corrected.stdout == "reproduce-004-corrected\n"
    runs = queued(db_path, "reproduce-004-corrected")
    assert [c["method"] for _, c in runs] == ["standard", "irt", "lpt-sum", "lpt-weighted"]
    assert all(c["variant"] == "corrected" and c["device"] == "auto" for _, c in runs)


@pytest.mark.parametrize("report", published.REPORTS)
def test_reproduce_plans_every_run_of_a_report(report):
    doc = published.load(report)
    items = plan_reproduce(report, "published")
    assert [i.key for i in items] == list(doc["runs"])
    for item in items:
        assert item.config["variant"] == "published"
        api.validate_config(item.experiment, item.config)  # every planned config is valid


def test_reproduce_004_covers_exp_1_to_11(db_path):
    result = hrm("--db", str(db_path), "reproduce", "004", "--no-start-scheduler")
    assert result.exit_code == 0, result.output
    assert all(s["experiment"] in catalog() for s in published.load("004")["runs"].values())
    assert run_count(db_path) == 26
    runs = queued(db_path, "reproduce-004-published")
    assert ("hrm", "sequential") in [(e, c.get("update")) for e, c in runs]
    assert sum(e == "progressive" for e, _ in runs) == 4


def test_reproduce_dry_run_and_bad_input_write_nothing(db_path):
    dry = hrm("--db", str(db_path), "reproduce", "001", "--dry-run")
    assert dry.exit_code == 0 and "recipe=001" in dry.output and "reproduce-001-published" in dry.output
    for args, message in [(["005"], "unknown report '005'"), (["004", "--only", "12"], "report 004 has no experiment 12"),
                          (["004", "--variant", "fixed"], "--variant")]:
        bad = hrm("--db", str(db_path), "reproduce", *args)
        assert bad.exit_code == 2 and message in bad.output and bad.output.count("\n") == 1, bad.output
    assert not db_path.exists()


# --- sweep ------------------------------------------------------------------------------------

def test_sweep_queues_the_grid_with_seeds_and_prints_the_tag(db_path, no_background_scheduler):
    result = hrm("--db", str(db_path), "sweep", "smoke", "--param", "epochs=2,3", "--param", "layers=1,2,4",
                 "--seeds", "2", "--set", "sleep=1e-3", "--tag", "grid-1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "grid-1\n"
    runs = queued(db_path, "grid-1")
    points = [(c["epochs"], c["layers"], c["seed"]) for _, c in runs]
    assert points == [(e, l, s) for e in (2, 3) for l in (1, 2, 4) for s in (42, 43)]
    assert all(c["sleep"] == 0.001 and e == "smoke" for e, c in runs)
    assert no_background_scheduler == [f"sqlite:///{db_path}"]


def test_sweep_default_tag_and_dash_names(db_path):
    result = hrm("--db", str(db_path), "sweep", "smoke", "--param", "fail-at-epoch=0,5", "--no-start-scheduler")
    assert result.exit_code == 0, result.output
    tag = result.stdout.strip()
    assert tag.startswith("sweep-smoke-") and [c["fail_at_epoch"] for _, c in queued(db_path, tag)] == [0, 5]


def test_sweep_dry_run_writes_nothing(db_path):
    result = hrm("--db", str(db_path), "sweep", "smoke", "--param", "epochs=1,2", "--seeds", "3", "--dry-run")
    assert result.exit_code == 0 and "6 runs of smoke" in result.output
    assert [json.loads(line) for line in result.stdout.splitlines()][:2] == [{"epochs": 1, "seed": 42},
                                                                           {"epochs": 1, "seed": 43}]
    assert not db_path.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["nope", "--param", "a=1"], "unknown experiment 'nope'"),
    (["smoke", "--param", "bogus=1,2"], "smoke has no parameter 'bogus'"),
    (["smoke", "--param", "epochs"], "expected NAME=VALUE"),
    (["smoke", "--param", "epochs=2,"], "empty value"),
    (["smoke", "--param", "epochs=2,0"], "--epochs: Input should be greater than or equal to 1 (got '0') at grid point epochs=0"),
    (["smoke", "--param", "epochs=2,x"], "at grid point epochs=x"),
    (["smoke", "--param", "epochs=1", "--param", "epochs=2"], "--param epochs given twice"),
    (["smoke", "--param", "seed=1,2", "--seeds", "2"], "either --seeds N or --param seed"),
    (["smoke", "--seeds", "0"], "--seeds must be at least 1"),
    (["smoke"], "nothing to sweep"),
    (["smoke", "--param", "epochs=1,2", "--set", "epochs=3"], "both a --param and a --set"),
    (["smoke", "--param", "epochs=1,2", "--set", "layers=1,2"], "--set layers takes one value"),
    (["smoke", "--param", "epochs=" + ",".join(str(i) for i in range(1, 60)), "--param", "layers=" +
      ",".join(str(i) for i in range(0, 40))], "more than 2000"),
])
def test_sweep_bad_input_is_one_line_exit_2_and_writes_nothing(db_path, args, message):
    result = hrm("--db", str(db_path), "sweep", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1, result.output
    assert run_count(db_path) == 0
