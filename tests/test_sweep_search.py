"""Optuna searches: parsing and validation (nothing written on a mistake), then small real studies of
``smoke`` runs executed by the real scheduler, with resume, pruning and ``hrm compare --tag`` ranking."""

from __future__ import annotations

import json
import os
import signal

import optuna
import pytest
from typer.testing import CliRunner

from core import api
from core.registry import store
from core.sweep_search import (
    Param,
    objective_value,
    parse_objective,
    parse_param,
    plan_search,
    ranked_trials,
    recorded_objective,
    run_search,
    study_storage,
)
from hrm_tui.cli import app
from tests.conftest import start_scheduler

runner = CliRunner()


@pytest.mark.parametrize("text, expected", [
    ("lr=log(1e-4,1e-2)", Param("lr", "float", 1e-4, 1e-2, log=True)),
    ("lr=float(0, 0.5)", Param("lr", "float", 0.0, 0.5)),
    ("layers=int(2,6)", Param("layers", "int", 2, 6)),
    ("hidden-size=intlog(16,256)", Param("hidden_size", "int", 16, 256, log=True)),
    ("method=choice(lpt-sum, standard)", Param("method", "choice", choices=("lpt-sum", "standard"))),
    ("layers=2,4,4", Param("layers", "choice", choices=(2, 4))),
    ("noisy=true,false", Param("noisy", "choice", choices=(True, False))),
])
def test_param_forms(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("lr", "expected NAME="),
    ("lr=log(0,1)", "LOW > 0"),
    ("lr=log(1e-2,1e-4)", "LOW must be below HIGH"),
    ("layers=int(2.5,6)", "not an integer"),
    ("lr=float(1)", "takes two numbers"),
    ("lr=normal(0,1)", "unknown form"),
    ("lr=float(a,1)", "not a number"),
    ("lr=float(nan,1)", "finite"),
    ("lr=float(0,)", "empty value"),
])
def test_malformed_params(text, fragment):
    with pytest.raises(api.UserError, match=fragment.replace("(", r"\(")) as info:
        parse_param(text)
    assert info.value.exit_code == 2


def test_objective_forms():
    assert parse_objective("val_ppl:min").direction == "minimize"
    assert parse_objective("acc:max").direction == "maximize"
    goal = parse_objective("s2/val_ppl")
    assert (goal.key, goal.stage, goal.direction, goal.label) == ("val_ppl", 2, "minimize", "s2/val_ppl:min")
    for bad in ("val_ppl:best", ":min", "val ppl"):
        with pytest.raises(api.UserError):
            parse_objective(bad)


def test_plan_validates_every_bound_through_the_config(db_path):
    plan = plan_search("smoke", ["epochs=int(2,6)", "sleep=float(0,0.01)"], objective="val_ppl:min",
                       fixed=["layers=2"], trials=5, parallel=2)
    assert plan.base == {"layers": "2"} and len(plan.params) == 2 and plan.tag.startswith("sweep-smoke-")
    for params, fixed, fragment in [
        (["epochs=int(0,6)"], [], "greater than or equal to 1"),
        (["sleep=float(0,100)"], [], "at sleep=100"),
        (["nope=int(1,2)"], [], "has no parameter 'nope'"),
        (["epochs=int(1,2)", "epochs=int(1,3)"], [], "given twice"),
        (["epochs=int(1,2)"], ["epochs=3"], "both a --param and a --set"),
        ([], [], "nothing to search"),
    ]:
        with pytest.raises(api.UserError, match=fragment):
            plan_search("smoke", params, objective="val_ppl:min", fixed=fixed)
    with pytest.raises(api.UserError, match="unknown experiment|Unknown experiment|no experiment"):
        plan_search("nope", ["a=1,2"], objective="val_ppl:min")
    assert not db_path.exists()  # planning writes nothing


@pytest.fixture
def scheduler(db):
    proc = start_scheduler(db.url, "--max-parallel", "2")
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_a_real_study_through_the_scheduler_resumes_and_ranks(db, db_path, scheduler):
    events = []
    plan = plan_search("smoke", ["epochs=int(2,6)", "layers=2,3"], objective="val_ppl:min", search="random",
                       trials=3, parallel=2, seed=7, tag="search-1")
    study = run_search(db, plan, start_scheduler=False, poll=0.1, on_event=events.append, timeout=240)
    assert [e.kind for e in events].count("queued") == 3 and [e.kind for e in events].count("completed") == 3
    runs = store.list_runs(db, tag="search-1")
    assert len(runs) == 3 and all(r.status.value == "completed" for r in runs)
    trials = study.get_trials()
    assert all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:  # every trial is the run it names, with the value Optuna was told
        run = store.get_run(db, trial.user_attrs["hrm_run_id"])
        assert run.config["epochs"] == trial.params["epochs"] and run.config["layers"] == trial.params["layers"]
        assert trial.value == pytest.approx(objective_value(db, run.id, plan.objective))
    assert study_storage(db).endswith("runs.optuna.db") and (db_path.parent / "runs.optuna.db").exists()

    # a second driver with the same tag and more trials continues the same study
    more = plan_search("smoke", ["epochs=int(2,6)", "layers=2,3"], objective="val_ppl:min", search="random",
                       trials=4, parallel=2, seed=7, tag="search-1")
    study = run_search(db, more, start_scheduler=False, poll=0.1, timeout=240)
    assert len(study.get_trials()) == 4 and len(store.list_runs(db, tag="search-1")) == 4
    ranked = ranked_trials(study)
    assert [r["value"] for r in ranked] == sorted(r["value"] for r in ranked)
    assert study.best_trial.params["epochs"] == max(t.params["epochs"] for t in study.get_trials())  # smoke: more epochs, lower ppl

    with pytest.raises(api.UserError, match="use another --tag"):
        run_search(db, plan_search("smoke", ["epochs=int(2,6)"], objective="train_loss:max", tag="search-1"))

    assert recorded_objective(db, "search-1") == "val_ppl:min" and recorded_objective(db, "other") is None
    result = runner.invoke(app, ["--db", str(db_path), "compare", "--tag", "search-1", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"]["runs"] == [r["run_id"] for r in ranked]  # best first


@pytest.mark.slow
def test_pruned_trials_are_cancelled_runs(db, scheduler):
    """A pruner that stops every trial after its first report: each run is cancelled mid-training."""
    plan = plan_search("smoke", ["epochs=int(40,50)"], objective="val_ppl:min", fixed=["sleep=0.2"],
                       search="random", trials=2, parallel=1, prune=True, seed=1, tag="pruning")
    study = run_search(db, plan, start_scheduler=False, poll=0.1, timeout=240,
                       pruner=optuna.pruners.ThresholdPruner(upper=30.0))  # smoke's epoch-1 val_ppl is ~48
    assert [t.state.name for t in study.get_trials()] == ["PRUNED", "PRUNED"]
    for trial in study.get_trials():
        run = api.wait(db, trial.user_attrs["hrm_run_id"], timeout=60)
        assert run.status.value == "cancelled" and "pruned" in run.tags
        assert run.epoch < 40  # stopped long before its last epoch
        assert trial.intermediate_values and min(trial.intermediate_values) == 1


def test_cli_search_errors_write_nothing(db_path):
    for args, fragment in [
        (["--search", "tpe", "--param", "epochs=int(2,6)"], "needs --objective"),
        (["--search", "grid", "--param", "epochs=int(2,6)", "--objective", "val_ppl:min"], "expected one of random, tpe"),
        (["--search", "tpe", "--param", "epochs=log(0,6)", "--objective", "val_ppl:min"], "LOW > 0"),
        (["--param", "epochs=1,2", "--trials", "3"], "go with --search"),
        (["--search", "tpe", "--param", "epochs=1,2", "--seeds", "2", "--objective", "val_ppl:min"], "--seeds is for grids"),
    ]:
        result = runner.invoke(app, ["--db", str(db_path), "sweep", "smoke", *args])
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.output, (args, result.output)
    assert not db_path.exists()


@pytest.mark.slow
def test_a_stopped_driver_reattaches_to_its_running_trials(db, scheduler):
    plan = plan_search("smoke", ["epochs=int(3,5)"], objective="val_ppl:min", fixed=["sleep=0.2"], search="random",
                       trials=2, parallel=2, seed=5, tag="resumed")
    with pytest.raises(api.UserError, match="timed out with 2 trial"):
        run_search(db, plan, start_scheduler=False, poll=0.1, timeout=0.01)
    first = {r.id for r in store.list_runs(db, tag="resumed")}
    assert len(first) == 2  # queued by the first driver, which stopped
    study = run_search(db, plan, start_scheduler=False, poll=0.1, timeout=240)
    assert {r.id for r in store.list_runs(db, tag="resumed")} == first  # re-attached, nothing queued twice
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]
    assert {t.user_attrs["hrm_run_id"] for t in study.get_trials()} == first
