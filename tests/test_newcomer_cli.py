"""What a newcomer saw in an 80-column terminal, each fixed: ``hrm run --follow``'s live table and
``hrm compare``'s tables keep every number whole instead of squeezing columns out of sight."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from core import api
from core import compare as cmp
from core.compare import Column, Table
from core.registry import RunStatus, open_database, store
from hrm_tui import render
from hrm_tui.cli.compare import fitted_tables
from tests.conftest import subprocess_env, wait_for

LPT_EPOCH = {"train_loss": 13.8684, "train_final_loss": 3.3658, "val_loss": 2.8497, "val_ppl": 17.2821,
             "improved": 1.0, "epoch_time_s": 1.1256}


def printed(renderables, width: int) -> list[str]:
    screen = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    for renderable in renderables:
        screen.print(renderable)
    return screen.file.getvalue().splitlines()


@pytest.fixture
def lpt_registry(db_path):
    """Three finished lpt runs whose configs differ in several keys, as `hrm compare 1 2 3` sees them."""
    db = open_database(db_path, create=True)
    for i, method in enumerate(["standard", "lpt-sum", "lpt-weighted"]):
        run = store.create_run(db, "lpt", {"method": method, "seed": i, "lr": 0.001 * (i + 1), "n_layers": 4 + i,
                                           "patience": 5 + i}, headline_key="best_val_ppl")
        store.mark_running(db, store.claim_next(db, host="h", gpu="cpu").id, pid=1, host="h", info={})
        for epoch in range(1, 4):
            store.append_metrics(db, run.id, "epoch", {k: v / epoch for k, v in LPT_EPOCH.items()}, epoch=epoch, total=30)
        store.append_metrics(db, run.id, "summary", {"best_val_ppl": 10.105 + i, "best_epoch": 3, "params": 275_072})
        store.finish_run(db, run.id, RunStatus.COMPLETED)
    yield db
    db.dispose()


def test_follow_view_at_80_columns_shows_every_epoch_number(lpt_registry):
    rows = [r for r in store.metrics(lpt_registry, 1) if r["kind"] == "epoch"]
    record = api.list_records(lpt_registry, ids=[1])[0]
    lines = printed([render.follow_view(record, rows, {1: {"loss": 3.68}, 2: {"loss": 3.43}}, [], width=80)], 80)
    body = [line for line in lines if line.startswith("│")]
    assert [re.match(r"│\s*(\d+) │", line).group(1) for line in body[:3]] == ["1", "2", "3"], lines
    assert all(len(line) <= 80 for line in lines)
    assert any("not shown at this width: epoch_time_s (hrm show 1 --wide)" in line for line in lines)


def test_compare_runs_at_80_columns_splits_into_blocks_that_keep_the_run_id_and_numbers(lpt_registry):
    records = api.list_records(lpt_registry, ids=[1, 2, 3])
    table = cmp.runs_table(records, baseline=1)
    lines = printed(fitted_tables(table, 80), 80)
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), text
    assert "(continued, 2/2)" in text
    for whole in ("lpt-weighted", "10.105", "12.105", "275,072", "-19.8%", "completed"):
        assert whole in text, whole
    assert "…" not in text
    # every block starts with the run id column, every id shown whole in each block
    headers = [line for line in lines if line.startswith("┃") and "run" in line.split("┃")[1]]
    assert len(headers) == 2
    assert sum(1 for line in lines if re.match(r"│\s+3 │", line)) == 2
    wide = printed(fitted_tables(table, 240), 240)
    assert not any("continued" in line for line in wide)


def test_a_report_table_at_80_columns_keeps_published_ours_and_delta_together():
    columns = [Column("row", "row", "text")]
    for group in ("Parameters", "Trainable", "Best PPL", "Epoch"):
        columns += [Column(f"{group}.pub", f"{group} published", "text", group=group),
                    Column(f"{group}.ours", f"{group} ours", "number", group=group),
                    Column(f"{group}.diff", f"{group} Δ", "number", group=group, signed=True)]
    rows = [{"row": name, "Parameters.pub": "266K", "Parameters.ours": 266_504.0, "Parameters.diff": 504.0,
             "Trainable.pub": "67K", "Trainable.ours": 67_640.0, "Trainable.diff": 640.0,
             "Best PPL.pub": "25.08", "Best PPL.ours": 25.0812, "Best PPL.diff": 0.0012,
             "Epoch.pub": "1", "Epoch.ours": 1.0, "Epoch.diff": 0.0}
            for name in ("3-layer (base)", "4-layer (frozen)", "4-layer (scratch)")]
    table = Table("exp5", "004 Exp 5: layer freezing vs full training", "report", columns, rows,
                  notes=["tolerance: digits"])
    lines = printed(fitted_tables(table, 80), 80)
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), text
    assert text.count("4-layer (scratch)") == text.count("(continued") + 1
    for group in ("Parameters", "Trainable", "Best PPL", "Epoch"):
        header = next(i for i, line in enumerate(lines) if group in line)
        assert "published" in lines[header + 1] and "ours" in lines[header + 1] and "Δ" in lines[header + 1]
    assert "25.0812" in text and "…" not in text
    assert lines[-1].strip() == "tolerance: digits" and lines[0].startswith("004 Exp 5")


def test_compare_layers_of_several_runs_lists_the_stages_in_order(db_path):
    db = open_database(db_path, create=True)
    for stages in (2, 1):
        run = store.create_run(db, "smoke", {"stages": stages}, headline_key="best_val_ppl")
        for stage in range(1, stages + 1) if stages > 1 else (0,):
            store.append_metrics(db, run.id, "layer", {1: {"loss": 1.0 + stage}, 2: {"loss": 0.5 + stage}}, epoch=1,
                                 stage=stage)
    records = api.list_records(db, ids=[1, 2])
    rows = {r["id"]: [m for m in store.metrics(db, r["id"]) if m["kind"] == "layer"] for r in records}
    titles = [t.title for t in cmp.layer_tables(records, rows)]
    db.dispose()
    assert titles == ["per-layer loss (layer × run)", "per-layer loss (layer × run, stage 1)",
                      "per-layer loss (layer × run, stage 2)"]


HELP_COMMANDS = [[name] for name in __import__("hrm_tui.cli", fromlist=["COMMANDS"]).COMMANDS] + [
    ["run", "smoke"], ["run", "cascade"], ["import", "mlflow"], ["models", "fetch"]]


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=" ".join)
def test_help_speaks_the_users_language_not_pythons(command):
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    for python_ism in ("list[", " range>", "9223372036854775807", "<bool>"):
        assert python_ism not in out, f"{' '.join(command)} --help shows {python_ism!r}"
    usage = next(line for line in out.splitlines() if "Usage:" in line).split("[OPTIONS]", 1)[-1]
    assert "{" not in usage and "...]..." not in usage and "[[" not in usage, usage
    assert not re.search(r"\b[a-z]{3,}\b", usage.replace("COMMAND [ARGS]", "")), f"lower-case metavar in {usage!r}"


@pytest.mark.parametrize("args, typo, suggestion", [(["lss"], "lss", "ls"), (["run", "smok"], "smok", "smoke"),
                                                    (["compar", "1"], "compar", "compare")])
def test_a_mistyped_command_names_the_closest_one(args, typo, suggestion, db_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: No such command '{typo}'. Did you mean '{suggestion}'?"]


def test_resume_of_a_missing_run_names_the_registry_like_every_other_command(db_path):
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    open_database(db_path, create=True).dispose()
    for command in (["resume", "999"], ["show", "999"]):
        result = CliRunner().invoke(app, ["--db", str(db_path), *command])
        assert result.exit_code == 1
        assert f"error: run 999 does not exist in sqlite:///{db_path}" in result.output, result.output


def test_logs_follow_prints_the_registry_log_lines_too_and_ends_with_the_run(db_path):
    """`hrm logs N` shows the worker's notes (data used, early stop); `hrm logs N -f` showed nothing of them."""
    import threading
    import time

    from typer.testing import CliRunner

    from hrm_tui.cli import app

    db = open_database(db_path, create=True)
    done = store.create_run(db, "smoke", {}, headline_key="best_val_ppl")
    store.add_log(db, done.id, "data: embedded excerpt", source="worker")
    store.finish_run(db, done.id, RunStatus.COMPLETED)
    live = store.create_run(db, "smoke", {}, headline_key="best_val_ppl")
    store.mark_running(db, store.claim_next(db, host="h", gpu="cpu").id, pid=1, host="h", info={})

    def worker_notes_then_ends():
        time.sleep(0.8)
        store.add_log(db, live.id, "early stop at epoch 13", source="worker")
        time.sleep(0.8)
        store.finish_run(db, live.id, RunStatus.COMPLETED)

    for run_id, note in ((done.id, "worker: data: embedded excerpt"), (live.id, "worker: early stop at epoch 13")):
        plain = CliRunner().invoke(app, ["--db", str(db_path), "logs", str(run_id)])
        thread = threading.Thread(target=worker_notes_then_ends) if run_id == live.id else None
        if thread:
            thread.start()
        followed = CliRunner().invoke(app, ["--db", str(db_path), "logs", str(run_id), "-f"])
        if thread:
            thread.join()
            plain = CliRunner().invoke(app, ["--db", str(db_path), "logs", str(run_id)])
        assert followed.exit_code == 0 and note in followed.output, followed.output
        assert followed.output == plain.output
    db.dispose()


def test_ls_at_80_columns_keeps_the_config_that_tells_runs_apart(db_path):
    """Runs differing in four config keys: the config folds onto two lines instead of vanishing."""
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    db = open_database(db_path, create=True)
    configs = [{"epochs": 8, "seed": seed, "sleep": 0.0, "fail_at_epoch": 0} for seed in (1, 2, 3)]
    for config in [*configs, {"epochs": 60, "seed": 42, "sleep": 0.8, "fail_at_epoch": 0}]:
        run = store.create_run(db, "smoke", config, headline_key="best_val_ppl")
        store.mark_running(db, store.claim_next(db, host="h", gpu="cpu").id, pid=1, host="h", info={})
        store.append_metrics(db, run.id, "epoch", {"val_ppl": 9.4877}, stage=2, epoch=49, total=60)
        if config["epochs"] == 8:
            store.finish_run(db, run.id, RunStatus.COMPLETED)
    db.dispose()
    result = CliRunner().invoke(app, ["--db", str(db_path), "ls"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert " config " in lines[1] and "seed=3" in result.output and "sleep=0.8" in result.output
    assert "not shown at this width: elapsed, variant, gpu" in result.output


def test_ctrl_c_during_wait_says_the_run_goes_on_and_how_to_come_back(db_path):
    import signal
    import subprocess
    import sys
    import time

    waiting = subprocess.Popen([sys.executable, "-m", "hrm_tui", "--db", str(db_path), "run", "smoke",
                                "--no-start-scheduler", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    said = []
    for line in waiting.stderr:  # the last line before it blocks in the wait
        said.append(line)
        if line.startswith("no scheduler is running"):
            break
    time.sleep(0.5)
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=30)
    err = "".join(said) + err
    assert waiting.returncode == 130, err
    assert "stopped waiting for run 1; the run goes on waiting in the queue." in err  # not "in the background"
    assert "hrm follow 1" in err and "Traceback" not in err and "aborted" not in err
    assert api.list_records(api.open_registry(str(db_path)), ids=[1])[0]["status"] == "queued"


def test_resume_wait_prints_the_result_line_like_run_wait(db_path):
    import os
    import signal
    import subprocess
    import sys

    def hrm(*args):
        return subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), *args], capture_output=True,
                              text=True, env=subprocess_env(), timeout=120)

    first = hrm("run", "smoke", "--epochs", "3", "--fail-at-epoch", "2", "--wait")
    try:
        assert first.returncode == 1 and "run 1 failed" in first.stderr, first.stderr
        again = hrm("resume", "1", "--wait")
        assert again.returncode == 1, again.stderr
        last = again.stderr.splitlines()[-1]  # one line, however long: scripts grep it
        assert last.startswith("run 1 failed in ") and last.endswith("smoke failure requested at epoch 2)"), last
    finally:
        db = api.open_registry(str(db_path))
        for scheduler in store.live_schedulers(db, stale_after=10):
            os.kill(scheduler["pid"], signal.SIGTERM)
        wait_for(lambda: not api.scheduler_alive(db), timeout=10)


def test_ls_prints_config_values_as_the_dashboard_does(db_path):
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    db = open_database(db_path, create=True)
    store.create_run(db, "smoke", {"noisy": True, "epochs": 10000}, headline_key="best_val_ppl")
    store.create_run(db, "smoke", {"noisy": False, "epochs": 3}, headline_key="best_val_ppl")
    db.dispose()
    out = CliRunner().invoke(app, ["--db", str(db_path), "ls"], env={"COLUMNS": "120"}).output
    assert "epochs=10,000 noisy=yes" in out and "epochs=3 noisy=no" in out, out


def _torch_build() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return ""


@pytest.mark.skipif(not _torch_build().endswith("+cpu"), reason="needs a CPU-only torch wheel installed")
def test_a_cuda_run_on_a_cpu_only_torch_is_refused_at_submit(db_path):
    """It was queued and failed a second later: AssertionError: Torch not compiled with CUDA enabled."""
    import subprocess
    import sys

    for args in (["run", "lpt", "--device", "cuda:0", "--no-start-scheduler"],
                 ["run", "lpt", "--device", "cuda", "--no-start-scheduler", "--wait"]):
        result = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), *args], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.splitlines() == [
            f"error: lpt: --device {args[3]}: the installed torch ({_torch_build()}) is a CPU-only build; "
            f"use --device cpu or auto"]
    assert not db_path.exists() or api.list_records(api.open_registry(str(db_path))) == []
    smoke = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), "run", "smoke", "--device", "cuda",
                            "--no-start-scheduler"], capture_output=True, text=True, timeout=60)
    assert smoke.returncode == 0  # smoke needs no torch: its device is a label


def test_import_of_one_mlflow_run_says_run_n(tmp_path, lpt_registry):
    pytest.importorskip("mlflow")
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    store_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exported = CliRunner().invoke(app, ["--db", lpt_registry.url, "export", "1", "--to", "mlflow", store_uri])
    assert exported.exit_code == 0, exported.output
    target = tmp_path / "other.db"
    imported = CliRunner().invoke(app, ["--db", str(target), "import", "mlflow", store_uri])
    assert imported.exit_code == 0, imported.output
    assert "1 run(s) imported (run 1)" in imported.output, imported.output


@pytest.mark.parametrize("group", [[], ["run"], ["models"], ["import"]], ids=lambda g: " ".join(["hrm", *g]))
def test_a_group_without_a_command_prints_its_help_and_no_empty_error_line(group, tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "hrm_tui", *group], capture_output=True, text=True, cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 2
    assert "Usage:" in result.stdout and "Commands" in result.stdout
    assert result.stderr == "", result.stderr  # was "error: " and nothing else


def test_compare_at_80_columns_wraps_number_headers_before_a_config_value():
    columns = [Column("run", "run", "integer"), Column("status", "status", "text"), Column("epochs", "epochs", "text"),
               Column("config.sleep", "sleep", "text"), Column("best", "best_val_ppl (best)"),
               Column("best_epoch", "epoch of best", "integer"), Column("last", "val_ppl (last)"),
               Column("params", "params", "integer")]
    rows = [{"run": 21, "status": "completed", "epochs": "3", "config.sleep": "0.0047575216553250145", "best": 16.7666,
             "best_epoch": 3, "last": 16.7666, "params": 4000}]
    lines = printed(fitted_tables(Table("runs", "runs", "runs", columns, rows), 80), 80)
    assert any("0.0047575216553250145" in line for line in lines), "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)


def test_follow_of_a_queued_run_with_no_scheduler_says_so(db_path):
    """It waited in silence for a scheduler that was not there."""
    import signal
    import subprocess
    import sys
    import time

    db = open_database(db_path, create=True)
    store.create_run(db, "smoke", {}, headline_key="best_val_ppl")
    db.dispose()
    following = subprocess.Popen([sys.executable, "-m", "hrm_tui", "--db", str(db_path), "follow", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said = []
    for line in following.stderr:
        said.append(line)
        if line.startswith("run 1 is queued"):
            break
    time.sleep(0.5)
    following.send_signal(signal.SIGINT)
    out, err = following.communicate(timeout=30)
    err = "".join(said) + err
    assert said[1] == "run 1 is queued and no scheduler is running: start one with `hrm scheduler`\n", err
    assert following.returncode == 130 and "the run goes on waiting in the queue" in err


def test_a_sweep_dry_run_says_what_the_real_sweep_would_refuse(tmp_path, monkeypatch):
    """`hrm sweep cascade ... --dry-run` showed 18 runs; the sweep itself was then refused (no Alpaca)."""
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    monkeypatch.delenv("HRM_ALPACA_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["--db", str(tmp_path / "runs.db"), "sweep", "cascade", "--param", "hard_ratio=0.1,0.3",
            "--no-start-scheduler"]
    real = CliRunner().invoke(app, args)
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    if real.exit_code == 0:
        pytest.skip("Alpaca is reachable here: both go through")
    assert real.exit_code == dry.exit_code == 1
    assert dry.output == real.output and "no Alpaca records" in dry.output
