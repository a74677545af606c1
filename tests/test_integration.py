"""Scheduler + worker end to end: real SQLite file, real subprocesses, real signals."""

from __future__ import annotations

import os
import signal
import time

import pytest

from core import api
from core.paths import worker_log
from core.registry import store
import subprocess
import sys

from tests.conftest import run_scheduler_once, start_scheduler, status_of, subprocess_env, wait_for

pytestmark = pytest.mark.slow


def epoch_rows(db, run_id):
    return [r for r in store.metrics(db, run_id) if r["kind"] == "epoch"]


def test_run_goes_queued_running_completed(db):
    run = api.submit(db, "smoke", {"epochs": 3, "layers": 4})
    assert status_of(db, run.id) == "queued"
    result = run_scheduler_once(db.url)
    assert result.returncode == 0, result.stderr
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.exit_code == 0 and final.started_at and final.finished_at
    rows = store.metrics(db, run.id)
    assert len(epoch_rows(db, run.id)) == 3 * 3
    layer_rows = [r for r in rows if r["kind"] == "layer"]
    assert sorted({r["layer"] for r in layer_rows}) == [1, 2, 3, 4] and len(layer_rows) == 12
    info = api.run_record(final)["info"]
    assert info["seed"] == 42 and info["python"] and "torch" in info and info["params"] == 4000


def test_failing_experiment_ends_failed_with_error(db):
    run = api.submit(db, "smoke", {"epochs": 5, "fail_at_epoch": 3})
    run_scheduler_once(db.url)
    final = store.get_run(db, run.id)
    assert final.status == "failed" and final.exit_code == 1
    assert "smoke failure requested at epoch 3" in final.error
    assert "Traceback" in final.stderr_tail
    assert len(epoch_rows(db, run.id)) == 2 * 3, "epochs before the failure are kept"


def test_stray_prints_do_not_corrupt_events(db):
    run = api.submit(db, "smoke", {"epochs": 4, "noisy": True})
    run_scheduler_once(db.url)
    assert status_of(db, run.id) == "completed"
    assert len(epoch_rows(db, run.id)) == 4 * 3
    log = worker_log(db.url, run.id).read_text()
    assert log.count("stray print {not json}") == 4 and log.count("stray stderr line") == 4


def test_sigkilled_worker_keeps_its_rows_and_fails(db):
    run = api.submit(db, "smoke", {"epochs": 1000, "sleep": 0.05})
    scheduler = start_scheduler(db.url)
    try:
        wait_for(lambda: len(epoch_rows(db, run.id)) >= 5 * 3)
        pid = store.get_run(db, run.id).pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: status_of(db, run.id) == "failed")
        before = len(epoch_rows(db, run.id))
        final = store.get_run(db, run.id)
        assert "SIGKILL" in final.error and final.exit_code == -signal.SIGKILL
        assert before >= 15 and before % 3 == 0, "every emitted epoch is complete and present"
    finally:
        scheduler.terminate()
        scheduler.wait(10)


def test_cancel_ends_cancelled_within_seconds(db):
    run = api.submit(db, "smoke", {"epochs": 1000, "sleep": 0.05})
    scheduler = start_scheduler(db.url)
    try:
        wait_for(lambda: status_of(db, run.id) == "running" and epoch_rows(db, run.id))
        started = time.monotonic()
        api.cancel(db, run.id)
        wait_for(lambda: status_of(db, run.id) == "cancelled", timeout=10)
        assert time.monotonic() - started < 5
        assert store.get_run(db, run.id).error == "cancelled by request"
    finally:
        scheduler.terminate()
        scheduler.wait(10)


def test_killed_scheduler_is_reconciled_at_restart(db):
    alive = api.submit(db, "smoke", {"epochs": 400, "sleep": 0.05})
    doomed = api.submit(db, "smoke", {"epochs": 1000, "sleep": 0.05})
    scheduler = start_scheduler(db.url, "--max-parallel", "2")
    wait_for(lambda: status_of(db, alive.id) == "running" and status_of(db, doomed.id) == "running")
    scheduler.send_signal(signal.SIGKILL)
    scheduler.wait(10)
    os.kill(store.get_run(db, doomed.id).pid, signal.SIGKILL)  # this orphan dies with nobody watching
    wait_for(lambda: len(epoch_rows(db, alive.id)) >= 3, timeout=10)
    time.sleep(11)  # let the dead scheduler's heartbeat go stale
    result = run_scheduler_once(db.url)
    assert result.returncode == 0, result.stderr
    assert status_of(db, doomed.id) == "lost"
    assert "gone when the scheduler restarted" in store.get_run(db, doomed.id).error
    assert status_of(db, alive.id) == "completed", "the live orphan was adopted and ran to the end"
    assert len(epoch_rows(db, alive.id)) == 400 * 3
    assert any("adopted" in line["message"] for line in store.logs(db, alive.id))


def test_eight_workers_write_at_once_without_losing_rows(db):
    runs = [api.submit(db, "smoke", {"epochs": 150, "layers": 8}) for _ in range(8)]
    result = run_scheduler_once(db.url, "--max-parallel", "8", timeout=300)
    assert result.returncode == 0, result.stderr
    for run in runs:
        final = store.get_run(db, run.id)
        assert final.status == "completed", final.error
        rows = store.metrics(db, run.id)
        assert len(rows) == 150 * 3 + 150 * 8 + 2
        assert "locked" not in worker_log(db.url, run.id).read_text()


def test_second_scheduler_is_refused(db):
    scheduler = start_scheduler(db.url)
    try:
        wait_for(lambda: api.scheduler_alive(db))
        result = run_scheduler_once(db.url)
        assert result.returncode == 1 and "already running" in result.stderr
    finally:
        scheduler.terminate()
        scheduler.wait(10)
    assert not api.scheduler_alive(db), "a scheduler stopped by SIGTERM removes its heartbeat"


def test_gpu_slots_are_never_shared_unless_packed(db):
    runs = [api.submit(db, "smoke", {"epochs": 8, "sleep": 0.1}) for _ in range(4)]
    result = run_scheduler_once(db.url, "--gpus", "0,1", "--max-parallel", "4")
    assert result.returncode == 0, result.stderr
    finals = [store.get_run(db, r.id) for r in runs]
    assert all(f.status == "completed" for f in finals)
    for final in finals:  # the worker saw exactly the GPU its slot was given
        assert api.run_record(final)["info"]["cuda_visible_devices"] == final.gpu
    by_gpu: dict[str, list] = {}
    for final in finals:
        by_gpu.setdefault(final.gpu, []).append((final.started_at, final.finished_at))
    assert set(by_gpu) == {"0", "1"}
    for spans in by_gpu.values():
        spans.sort()
        assert all(prev_end <= next_start + 0.05 for (_, prev_end), (next_start, _) in zip(spans, spans[1:])), \
            "two runs overlapped on one GPU"


def test_packing_puts_two_runs_on_one_gpu(db):
    runs = [api.submit(db, "smoke", {"epochs": 10, "sleep": 0.1}) for _ in range(2)]
    result = run_scheduler_once(db.url, "--gpus", "0", "--pack", "2")
    assert result.returncode == 0, result.stderr
    first, second = (store.get_run(db, r.id) for r in runs)
    assert first.gpu == second.gpu == "0"
    assert second.started_at < first.finished_at, "packed runs share the GPU at the same time"


def test_hrm_run_wait_and_follow_from_a_shell(db_path):
    env = subprocess_env()
    ok = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), "run", "smoke", "--epochs", "2", "--wait"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and ok.stdout == "1\n" and "run 1 completed" in ok.stderr, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), "run", "smoke", "--fail-at-epoch", "1",
                          "--wait"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1
    followed = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), "run", "smoke", "--epochs", "3",
                               "--follow"], capture_output=True, text=True, env=env, timeout=120)
    assert followed.returncode == 0, followed.stderr
    assert "epoch 3" in followed.stdout and "L4" in followed.stdout and "{" not in followed.stdout
    assert "completed" in followed.stderr
    logs = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), "logs", "2", "-f"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert "smoke failure requested at epoch 1" in logs.stdout
    db = api.open_registry(str(db_path))
    (background,) = store.live_schedulers(db, stale_after=10)  # `hrm run` started exactly one
    os.kill(background["pid"], signal.SIGTERM)
    wait_for(lambda: not api.scheduler_alive(db), timeout=10)
