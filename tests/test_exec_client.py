"""``hrm exec`` and the tracking client (``hrm_tui.init``): real registry, real scripts, real scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import hrm_tui as hrm
from core import api, tracking
from core.experiments import get_experiment
from core.registry import RunStatus, open_database, store
from core.scheduler.process import pid_alive
from tests.conftest import run_scheduler_once, start_scheduler, status_of, subprocess_env, wait_for
from tests.pg_fixture import pg_server, pg_url  # noqa: F401 - fixtures

SCRIPT = textwrap.dedent('''
    import os, sys, time
    import hrm_tui as hrm

    lr = float(sys.argv[sys.argv.index("--lr") + 1])
    epochs = int(os.environ.get("EPOCHS", "3"))
    run = hrm.init(experiment="my-exp", config={"lr": lr, "epochs": epochs}, tags=["from-script"])
    open("child.pid", "w").write(str(os.getpid()))
    for epoch in range(1, epochs + 1):
        print(f"epoch {epoch} of the script", flush=True)
        run.log_epoch(epoch, {"train_loss": 3.0 / epoch, "val_ppl": 20.0 / epoch}, total=epochs)
        run.log_layers(epoch, {1: {"loss": 2.0 / epoch}, 2: {"loss": 1.0 / epoch}})
        time.sleep(float(os.environ.get("SLEEP", "0")))
    run.summary({"best_val_ppl": 20.0 / epochs})
    if "--crash" in sys.argv:
        raise ValueError("boom after the last epoch")
    run.finish()
''')


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_tui", *args], capture_output=True, text=True,
                          env={**subprocess_env(), **(env or {})}, timeout=timeout)


def metric_rows(db, run_id, kind):
    return [r for r in store.metrics(db, run_id) if r["kind"] == kind]


# --- submit-time checks ----------------------------------------------------------------------------

def test_exec_config_resolves_and_refuses(tmp_path):
    exec_exp = get_experiment("exec")
    (tmp_path / "train.py").write_text("print('hi')\n")
    config = exec_exp.make_config(argv=["python3", "train.py"], cwd=str(tmp_path))
    assert os.path.isabs(config.executable) and config.cwd == str(tmp_path)
    assert exec_exp.make_config(argv=["python3", "-m", "json.tool"], cwd=str(tmp_path)).argv[1] == "-m"
    for argv, message in (([], "no command"), (["hrm-no-such-program"], "not found on PATH"),
                          (["python3", "missing.py"], "script 'missing.py' does not exist"),
                          (["./run.sh"], "not found in")):
        with pytest.raises(ValueError, match=message):
            exec_exp.make_config(argv=argv, cwd=str(tmp_path))
    with pytest.raises(ValueError, match="'EPOCHS' is not KEY=VALUE"):
        exec_exp.make_config(argv=["python3", "train.py"], cwd=str(tmp_path), env=["EPOCHS"])


def test_exec_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    for args, message in ((["exec"], "no command"), (["exec", "--", "hrm-no-such-program", "--x"], "not found on PATH"),
                          (["exec", "--", sys.executable, "missing.py"], "missing.py' does not exist"),
                          (["exec", "-e", "NOEQUALS", "--", "true"], "'NOEQUALS' is not KEY=VALUE"),
                          (["exec", "--gpus", "2", "--", "true"], "--gpus 2")):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "runs.db").exists()


# --- the client on its own run ------------------------------------------------------------------------

def test_client_run_records_every_event(db_path):
    with hrm.init(experiment="my-exp", config={"lr": 1e-3, "layers": 2}, tags=["nb"], db=str(db_path)) as run:
        for epoch in (1, 2):
            run.log_epoch(epoch, {"train_loss": 1.0 / epoch, "val_ppl": 10.0 / epoch}, total=2)
            run.log_layers(epoch, {1: {"loss": 2.0}, 2: {"loss": 1.0}})
        run.log_table("sweep", [{"threshold": 0.5, "exit_pct": 12.5}])
        run.summary({"best_val_ppl": 5.0})
    db = open_database(db_path, create=False)
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.experiment == "my-exp" and final.headline_value == 5.0
    assert json.loads(final.config_json) == {"lr": 1e-3, "layers": 2}
    assert store.tags_of(db, [run.id])[run.id] == ["nb"]
    assert [r["value"] for r in metric_rows(db, run.id, "epoch") if r["key"] == "val_ppl"] == [10.0, 5.0]
    assert sorted((r["epoch"], r["layer"]) for r in metric_rows(db, run.id, "layer")) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert store.result_tables(db, run.id)[0]["rows"] == [{"threshold": 0.5, "exit_pct": 12.5}]
    assert api.list_records(db, experiment="my-exp")[0]["latest"]["val_ppl"]["min"] == 5.0
    with pytest.raises(api.UserError, match="recorded by a script"):
        api.retry(db, run.id)


@pytest.mark.slow
def test_client_on_postgresql(pg_url):  # noqa: F811 - the fixture
    with hrm.init(experiment="pg-exp", config={"lr": 0.1}, tags=["pg"], db=pg_url) as run:
        run.log_epoch(1, {"val_ppl": 7.5}, total=1)
        run.log_layers(1, {1: {"loss": 2.0}, 2: {"loss": 1.0}})
        run.summary({"best_val_ppl": 7.5})
    db = open_database(pg_url, create=False)
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.headline_value == 7.5
    assert len(metric_rows(db, run.id, "layer")) == 2 and store.tags_of(db, [run.id])[run.id] == ["pg"]


def test_client_bad_calls_raise_one_line_and_write_nothing(db_path):
    run = hrm.init(experiment="my-exp", db=str(db_path))
    db = open_database(db_path, create=False)
    bad_calls = {
        "layer 'first' is not an integer": lambda: run.log_layers(1, {"first": {"loss": 1.0}}),
        "layer 1.0 is not an integer": lambda: run.log_layers(1, {1.0: {"loss": 1.0}}),
        "epoch must be a non-negative integer": lambda: run.log_epoch("2", {"loss": 1.0}),
        "metric 'loss' is not a number": lambda: run.log_epoch(1, {"loss": "low"}),
        "metrics must be a mapping": lambda: run.summary([1, 2]),
        "rows must be a list of mappings": lambda: run.log_table("t", {"a": 1}),
    }
    for message, call in bad_calls.items():
        with pytest.raises(hrm.TrackingError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    assert store.metrics(db, run.id) == [] and store.result_tables(db, run.id) == []
    run.finish()
    with pytest.raises(hrm.TrackingError, match=rf"run {run.id} is finished: log_epoch\(\) after finish\(\)"):
        run.log_epoch(1, {"loss": 1.0})
    with pytest.raises(hrm.TrackingError, match="needs experiment="):
        hrm.init(db=str(db_path))
    with pytest.raises(hrm.TrackingError, match="run 999 does not exist"):
        hrm.init(db=str(db_path), run_id=999)


def test_context_manager_crash_leaves_failed_with_traceback(db_path):
    with pytest.raises(ZeroDivisionError):
        with hrm.init(experiment="my-exp", db=str(db_path)) as run:
            run.log_epoch(1, {"val_ppl": 9.0})
            1 / 0  # noqa: B018
    final = store.get_run(open_database(db_path, create=False), run.id)
    assert final.status == "failed" and final.error == "ZeroDivisionError: division by zero"
    assert "Traceback" in final.stderr_tail and "1 / 0" in final.stderr_tail


def test_script_without_context_manager_crash_and_normal_exit(tmp_path, db_path):
    crash = tmp_path / "crash.py"
    crash.write_text("import hrm_tui as hrm\nrun = hrm.init(experiment='s', db='runs.db')\n"
                     "run.log_epoch(1, {'val_ppl': 3.0})\nraise RuntimeError('lost the GPU')\n")
    ends = tmp_path / "ends.py"
    ends.write_text("import hrm_tui as hrm\nrun = hrm.init(experiment='s', db='runs.db')\nrun.log_epoch(1, {'x': 1})\n")
    assert subprocess.run([sys.executable, str(crash)], env=subprocess_env(), capture_output=True).returncode == 1
    assert subprocess.run([sys.executable, str(ends)], env=subprocess_env(), capture_output=True).returncode == 0
    db = open_database(db_path, create=False)
    crashed, ended = sorted(store.list_runs(db), key=lambda r: r.id)
    assert crashed.status == "failed" and crashed.error == "RuntimeError: lost the GPU"
    assert "crash.py\", line 4" in crashed.stderr_tail and len(metric_rows(db, crashed.id, "epoch")) == 1
    assert ended.status == "completed"


def test_sigterm_of_a_script_leaves_its_run_cancelled(tmp_path, db_path):
    script = tmp_path / "long.py"
    script.write_text("import time, hrm_tui as hrm\nrun = hrm.init(experiment='s', db='runs.db')\n"
                      "run.log_epoch(1, {'x': 1.0})\nprint('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)], env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM, "the process still dies by the signal"
    (run,) = store.list_runs(open_database(db_path, create=False))
    assert run.status == "cancelled" and run.error == "terminated by SIGTERM"


def test_a_script_run_beats_while_its_process_lives(db_path, monkeypatch):
    from core.registry.leases import stale_running

    monkeypatch.setenv(tracking.HEARTBEAT_ENV, "0.2")
    run = hrm.init(experiment="my-exp", db=str(db_path))
    db = open_database(db_path, create=False)
    first = store.get_run(db, run.id).heartbeat_at
    wait_for(lambda: store.get_run(db, run.id).heartbeat_at > first, timeout=10)
    time.sleep(1.2)
    assert run.id not in [r["id"] for r in stale_running(db, stale_after=1.0)], "an idle notebook run stays alive"
    run.finish()
    ended = store.get_run(db, run.id).heartbeat_at
    time.sleep(0.6)
    assert store.get_run(db, run.id).heartbeat_at == ended, "no beat after finish()"


@pytest.mark.slow
def test_a_sigkilled_script_run_is_lost_by_any_scheduler(tmp_path, db_path):
    script = tmp_path / "killed.py"
    script.write_text("import time, hrm_tui as hrm\nrun = hrm.init(experiment='s', db='runs.db')\n"
                      "run.log_epoch(1, {'x': 1.0})\nprint('ready', flush=True)\ntime.sleep(60)\n")
    env = {**subprocess_env(), tracking.HEARTBEAT_ENV: "0.2"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait(10)
    db = open_database(db_path, create=False)
    (run,) = store.list_runs(db)
    assert run.status == "running", "SIGKILL leaves no chance to write"
    scheduler = start_scheduler(db.url, "--stale-after", "1")
    try:
        wait_for(lambda: status_of(db, run.id) == "lost", timeout=30)
        assert "no worker heartbeat" in store.get_run(db, run.id).error
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(15)


def test_cancel_reaches_a_script_run(db_path, monkeypatch):
    monkeypatch.setattr(tracking, "CANCEL_POLL_S", 0.0)
    run = hrm.init(experiment="my-exp", db=str(db_path))
    run.log_epoch(1, {"loss": 1.0})
    db = open_database(db_path, create=False)
    api.cancel(db, run.id)
    with pytest.raises(hrm.RunCancelled):
        run.log_epoch(2, {"loss": 0.5})
    assert status_of(db, run.id) == "cancelled" and len(metric_rows(db, run.id, "epoch")) == 1


def test_attached_client_writes_into_the_worker_run(db, monkeypatch):
    queued = api.submit(db, "smoke", {"epochs": 1})
    assert store.mark_running(db, queued.id, pid=os.getpid(), host="here", info={})
    monkeypatch.setenv(tracking.RUN_ID_ENV, str(queued.id))
    monkeypatch.setenv(tracking.DB_ENV, db.url)
    run = hrm.init(experiment="attached-exp", config={"lr": 0.1}, tags=["extra"])
    assert run.attached and run.id == queued.id
    run.log_epoch(1, {"val_ppl": 7.0})
    run.finish()
    final = store.get_run(db, queued.id)
    assert final.status == "running", "the worker, not the script, ends an hrm exec run"
    info = json.loads(final.info_json)
    assert info["script_experiment"] == "attached-exp" and info["script_config"] == {"lr": 0.1}
    assert store.tags_of(db, [queued.id])[queued.id] == ["extra"]
    store.finish_run(db, queued.id, RunStatus.COMPLETED)
    with pytest.raises(hrm.TrackingError, match="is already completed"):
        hrm.init(experiment="attached-exp")


# --- hrm exec through the real scheduler -----------------------------------------------------------------

@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def queue_exec(db, *args: str) -> int:
    result = cli("exec", "--db", db.url, "--no-start-scheduler", *args)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


@pytest.mark.slow
def test_exec_runs_a_script_that_logs_through_the_client(db, script):
    run_id = queue_exec(db, "--name", "lr sweep", "--tag", "cli-tag", "--", sys.executable, script.name, "--lr", "0.01")
    run_scheduler_once(db.url)
    final = store.get_run(db, run_id)
    assert final.status == "completed" and final.exit_code == 0 and final.experiment == "exec"
    config = json.loads(final.config_json)
    assert config["argv"] == [sys.executable, "train.py", "--lr", "0.01"] and config["name"] == "lr sweep"
    assert [r["value"] for r in metric_rows(db, run_id, "epoch") if r["key"] == "val_ppl"] == [20.0, 10.0, 20.0 / 3]
    assert {(r["epoch"], r["layer"]) for r in metric_rows(db, run_id, "layer")} == {(e, l) for e in (1, 2, 3) for l in (1, 2)}
    assert store.tags_of(db, [run_id])[run_id] == ["cli-tag", "from-script"]
    info = json.loads(final.info_json)
    assert info["script_experiment"] == "my-exp" and info["script_config"] == {"lr": 0.01, "epochs": 3}
    logs = cli("logs", str(run_id), "--db", db.url)
    assert "epoch 3 of the script" in logs.stdout

    retried = cli("retry", str(run_id), "--db", db.url, "--no-start-scheduler")
    assert retried.returncode == 0, retried.stderr
    run_scheduler_once(db.url)
    again = max(store.list_runs(db), key=lambda r: r.id)
    assert again.id != run_id and again.retry_of == run_id and again.status == "completed"


@pytest.mark.slow
def test_exec_crashing_script_fails_with_traceback_tail(db, script):
    run_id = queue_exec(db, "--", sys.executable, script.name, "--lr", "0.1", "--crash")
    run_scheduler_once(db.url)
    final = store.get_run(db, run_id)
    assert final.status == "failed"
    assert "exited with code 1" in final.error and "ValueError: boom after the last epoch" in final.error
    assert 'train.py", line 16' in final.stderr_tail and "ValueError: boom after the last epoch" in final.stderr_tail
    assert len([r for r in metric_rows(db, run_id, "epoch") if r["key"] == "val_ppl"]) == 3, "rows before the crash stay"


@pytest.mark.slow
def test_exec_cancel_stops_the_command_and_its_run(db, script, tmp_path):
    run_id = queue_exec(db, "--env", "EPOCHS=1000", "-e", "SLEEP=0.2", "--", sys.executable, script.name, "--lr", "0.1")
    scheduler = start_scheduler(db.url)
    try:
        wait_for(lambda: len(metric_rows(db, run_id, "epoch")) >= 2 and (tmp_path / "child.pid").exists())
        child = int((tmp_path / "child.pid").read_text())
        assert pid_alive(child)
        started = time.monotonic()
        assert cli("cancel", str(run_id), "--db", db.url).returncode == 0
        wait_for(lambda: status_of(db, run_id) == "cancelled", timeout=30)
        wait_for(lambda: not pid_alive(child), timeout=10)
        assert time.monotonic() - started < 15
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(15)
