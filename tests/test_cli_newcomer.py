"""What a newcomer meets first (issue #13): --follow, --wait, interrupting a follow, the scheduler line."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from core import api
from core.registry import open_database, store
from hrm_tui.render import last_epochs
from tests.conftest import subprocess_env, wait_for


def hrm_cmd(db_path, *args: str) -> list[str]:
    return [sys.executable, "-m", "hrm_tui", "--db", str(db_path), *args]


def stop_background_schedulers(db_path) -> None:
    db = open_database(db_path)
    try:
        for beat in store.live_schedulers(db, stale_after=30):
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.kill(beat["pid"], signal.SIGTERM)
        wait_for(lambda: not api.scheduler_alive(db), timeout=15)
    finally:
        db.dispose()


@pytest.mark.slow  # a real background scheduler and three workers (about a minute on two busy cores)
def test_follow_wait_and_the_background_scheduler_from_a_shell(db_path):
    env = subprocess_env()
    try:
        followed = subprocess.run(hrm_cmd(db_path, "run", "smoke", "--epochs", "15", "--layers", "2", "--follow"),
                                  capture_output=True, text=True, env=env, timeout=180)
        assert followed.returncode == 0, followed.stderr
        lines = followed.stdout.splitlines()
        assert lines[0] == "1", "the run id first (stdout is not a terminal)"
        epochs = [line for line in lines if line.startswith("epoch ")]
        assert [int(line.split()[1]) for line in epochs] == list(range(1, 16)), "every epoch, once, in order"
        assert all("val_ppl" in line and "| L1 " in line and " L2 " in line for line in epochs), "whole epochs"
        assert re.search(r"exits after 5 min with nothing to run", followed.stderr), followed.stderr
        assert re.search(r"run 1 completed in \d+s: best_val_ppl [\d.]+ at epoch \d+", followed.stderr), followed.stderr

        waited = subprocess.run(hrm_cmd(db_path, "run", "smoke", "--epochs", "2", "--wait"),
                                capture_output=True, text=True, env=env, timeout=180)
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout == "2\n"
        assert "run 2 queued" in waited.stderr and re.search(r"run 2 completed in \d+s: best_val_ppl", waited.stderr)
        failed = subprocess.run(hrm_cmd(db_path, "run", "smoke", "--fail-at-epoch", "1", "--wait"),
                                capture_output=True, text=True, env=env, timeout=180)
        assert failed.returncode == 1 and "run 3 failed" in failed.stderr
    finally:
        stop_background_schedulers(db_path)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopping_a_follow_leaves_the_run_and_says_how_to_come_back(db_path, signum, code):
    db = open_database(db_path, create=True)
    run = store.create_run(db, "smoke", {"epochs": 3})
    proc = subprocess.Popen(hrm_cmd(db_path, "follow", str(run.id)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env())
    try:
        first = proc.stderr.readline()
        assert f"following run {run.id}" in first
        time.sleep(0.5)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert "the run goes on" in err and f"hrm follow {run.id}" in err and f"hrm logs {run.id} -f" in err
    assert store.get_run(db, run.id).status == "queued", "following never changes the run"
    db.dispose()


def test_the_live_view_keeps_whole_epochs():
    rows = [{"kind": "epoch", "stage": 0, "epoch": e, "key": k, "value": 1.0}
            for e in range(1, 16) for k in ("train_loss", "val_loss", "val_ppl")]
    kept = last_epochs(rows, 12)
    assert sorted({r["epoch"] for r in kept}) == list(range(4, 16))
    assert len(kept) == 36
    staged = [{"stage": s, "epoch": e, "key": "x"} for s in (1, 2) for e in (1, 2)]
    assert [(r["stage"], r["epoch"]) for r in last_epochs(staged, 3)] == [(1, 2), (2, 1), (2, 2)]


def test_plain_follow_prints_an_epoch_once_its_layers_arrived(capsys):
    """The epoch event and its per-layer event may come in two polls: still one line per epoch."""
    from hrm_tui.cli.follow import EpochLines

    lines = EpochLines()
    lines.add([{"kind": "epoch", "stage": 0, "epoch": 1, "key": "val_ppl", "value": 9.5}], [])
    lines.flush(keep_last=True)
    assert capsys.readouterr().out == ""
    lines.add([{"kind": "layer", "stage": 0, "epoch": 1, "layer": 1, "key": "loss", "value": 2.5},
               {"kind": "epoch", "stage": 0, "epoch": 2, "key": "val_ppl", "value": 9.0}], [{"message": "note"}])
    lines.flush(keep_last=True)
    assert capsys.readouterr().out.splitlines() == ["epoch 1  val_ppl 9.5  | L1 2.5"]
    lines.flush(keep_last=False)
    assert capsys.readouterr().out.splitlines() == ["epoch 2  val_ppl 9", "note"]


def test_the_result_line_names_the_headline_and_its_epoch():
    from hrm_tui.cli.follow import result_line

    record = {"id": 4, "status": "completed", "elapsed_s": 65.0, "headline": {"key": "best_val_ppl", "value": 9.75},
              "latest": {"best_epoch": {"last": 7.0}, "val_ppl": {"min": 9.75, "min_epoch": 7}}}
    assert result_line(record) == "run 4 completed in 1m05s: best_val_ppl 9.75 at epoch 7"
    running = {**record, "status": "failed", "headline": {"key": "best_val_ppl", "value": None},
               "latest": {"val_ppl": {"min": 10.5, "min_epoch": 3}}}
    assert result_line(running, "boom") == "run 4 failed in 1m05s: best val_ppl so far 10.5 at epoch 3 (boom)"
    assert result_line({"id": 5, "status": "cancelled", "elapsed_s": None, "headline": {}, "latest": {}}) == \
        "run 5 cancelled"


def test_a_refused_second_scheduler_prints_only_why(db_path):
    """`hrm scheduler` while one of its name holds the lease: one error line, no start banner first."""
    env = subprocess_env()
    first = subprocess.Popen(hrm_cmd(db_path, "scheduler"), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        db = open_database(db_path)
        wait_for(lambda: api.scheduler_alive(db), timeout=30)
        db.dispose()
        second = subprocess.run(hrm_cmd(db_path, "scheduler", "--once"), env=env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [second.stderr.strip()], second.stderr
        assert second.stderr.startswith("error: a scheduler named") and "already running" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        banner = first.communicate(timeout=30)[1]
    assert banner.startswith("scheduler "), "the scheduler that got the lease does print its banner"
