"""The Slurm executor against a real one-node Slurm: ``hrm scheduler --executor slurm`` submitting real
hrm workers through submitit, and each way a job can end (completed, cancelled by the user, cancelled
by Slurm from outside hrm, killed at its time limit, a node failure, a preemption by a higher-priority
partition), a scheduler restart and a controller outage. Skipped unless root with slurm-wlm and munge."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from core import api
from core.registry import open_database, store
from tests.conftest import run_scheduler_once, stop_process, subprocess_env, wait_for
from tests.pg_fixture import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.slurm_fixture import SLURM_DIR, slurm_partition  # noqa: F401  (fixture)


def hrm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_tui", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=timeout)


_STARTED: list[tuple[subprocess.Popen, str]] = []


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    """Whatever a test ends with, the schedulers it started are stopped and their runs' jobs cancelled
    (only those: other sessions may use the same Slurm)."""
    yield
    while _STARTED:
        proc, url = _STARTED.pop()
        stop(proc)
        db = open_database(url)
        jobs = [r.external_id for r in store.list_runs(db) if getattr(r, "external_id", None)]
        db.dispose()
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True)


def slurm_scheduler(url: str, partition: str, *extra: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    """``hrm scheduler --executor slurm`` in the background, as a user starts it."""
    proc = subprocess.Popen([sys.executable, "-m", "hrm_tui", "--db", url, "scheduler", "--executor", "slurm",
                             "--partition", partition, "--stale-after", "30", *extra],
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                            start_new_session=True)
    _STARTED.append((proc, url))
    return proc


stop = stop_process


def job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return next((f.split("=", 1)[1] for f in out.split() if f.startswith("JobState=")), "GONE")


def running_with_epochs(db, run_id: int, epochs: int = 2):
    run = store.get_run(db, run_id)
    if run.status.is_terminal:
        raise AssertionError(f"run {run_id} ended early: {run.status} {run.error}")
    return run if run.status == "running" and run.epoch >= epochs else None


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return request.getfixturevalue("pg_url")


@pytest.mark.slow
@pytest.mark.slurm
def test_a_slurm_job_completes_with_its_epoch_and_layer_rows(slurm_partition, registry_url):  # noqa: F811
    db = open_database(registry_url, create=True)
    run = api.submit(db, "smoke", {"epochs": 3, "layers": 2, "noisy": True})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", registry_url, "scheduler", "--executor", "slurm",
                           "--partition", slurm_partition, "--time", "0:05:00", "--once"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=180)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    final = store.get_run(db, run.id)
    assert final.status == "completed", (final.error, final.stderr_tail)
    seen = (final.executor, final.external_id, final.external_state, final.exit_code, done.stderr[-2000:])
    assert final.executor == "slurm" and final.external_id and final.external_id.isdigit(), seen
    assert final.external_state == "COMPLETED" and final.exit_code == 0, seen
    assert job_state(final.external_id) in ("COMPLETED", "GONE"), seen
    epoch_rows = store.metrics(db, run.id, kind="epoch")
    layer_rows = store.metrics(db, run.id, kind="layer")
    assert sorted({r["epoch"] for r in epoch_rows}) == [1, 2, 3], epoch_rows
    assert sorted({(r["epoch"], r["layer"]) for r in layer_rows}) == [(e, i) for e in (1, 2, 3) for i in (1, 2)], layer_rows
    logged = [line["message"] for line in store.logs(db, run.id)]
    assert f"submitted to Slurm as job {final.external_id} (partition {slurm_partition})" in logged, logged
    # The worker's output (its stray prints) reached the registry: readable from any host.
    shown = hrm("--db", registry_url, "logs", str(run.id))
    assert shown.returncode == 0 and "stray print" in shown.stdout, shown.stdout + shown.stderr
    shown = hrm("--db", registry_url, "show", str(run.id))
    assert f"slurm job {final.external_id}  state COMPLETED" in shown.stdout, shown.stdout
    listed = json.loads(hrm("--db", registry_url, "ls", "--json").stdout)["runs"][0]
    assert listed["executor"] == {"name": "slurm", "job_id": final.external_id, "state": "COMPLETED"}
    # The registry URL went to the job through its environment, not its command line or script.
    script = next((db_dir for db_dir in _slurm_folder(db, run.id).glob("*_submission.sh")), None)
    assert script is not None, list(_slurm_folder(db, run.id).iterdir())
    assert "HRM_DB_URL" not in script.read_text() and registry_url not in script.read_text()
    print(f"\nslurm ({registry_url.split(':')[0]}): submit -> completed in {took:.1f} s (scheduler start to exit)")
    db.dispose()


def _slurm_folder(db, run_id: int):
    from core.paths import run_dir

    return run_dir(db, run_id) / "slurm"


@pytest.mark.slow
@pytest.mark.slurm
def test_user_cancel_and_a_cancel_from_outside_hrm_end_differently(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    by_user = api.submit(db, "smoke", {"epochs": 400, "layers": 2, "sleep": 0.3})
    by_slurm = api.submit(db, "smoke", {"epochs": 400, "layers": 2, "sleep": 0.3})
    scheduler = slurm_scheduler(url, slurm_partition, "--retries", "1")
    try:
        wait_for(lambda: running_with_epochs(db, by_user.id) and running_with_epochs(db, by_slurm.id), timeout=90)
        user_job = store.get_run(db, by_user.id).external_id
        slurm_job = store.get_run(db, by_slurm.id).external_id
        assert job_state(user_job) == job_state(slurm_job) == "RUNNING"

        cancelled = hrm("--db", url, "cancel", str(by_user.id))
        assert cancelled.returncode == 0, cancelled.stderr
        subprocess.run(["scancel", slurm_job], check=True)  # an administrator, or the user with Slurm's tools

        wait_for(lambda: store.get_run(db, by_user.id).status.is_terminal
                 and store.get_run(db, by_slurm.id).status.is_terminal, timeout=60)
        time.sleep(3)  # a retry, were one wrongly made, would be queued by now
    finally:
        errors = stop(scheduler)
    user, slurm = store.get_run(db, by_user.id), store.get_run(db, by_slurm.id)
    assert (user.status, user.cancel_requested) == ("cancelled", True), (user.error, errors)
    assert "cancelled by request" in user.error
    assert user.external_state == "CANCELLED" and job_state(user_job) in ("CANCELLED", "GONE")
    assert (slurm.status, slurm.cancel_requested) == ("cancelled", False), (slurm.error, errors)
    assert slurm.error.startswith("cancelled by Slurm, not through hrm") and slurm_job in slurm.error
    assert slurm.external_state == "CANCELLED"
    assert slurm.attempt == 1, "a cancel from outside hrm is a decision, not an infrastructure failure: not retried"
    for run in (user, slurm):  # what was logged is kept
        assert len(store.metrics(db, run.id, kind="epoch")) >= 2 * 2
        assert len(store.metrics(db, run.id, kind="layer")) >= 2 * 2
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_a_job_past_its_time_limit_is_lost_with_its_rows_kept(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 2000, "layers": 2, "sleep": 0.5})
    scheduler = slurm_scheduler(url, slurm_partition, "--time", "1")
    try:
        wait_for(lambda: running_with_epochs(db, run.id), timeout=90)
        started = time.monotonic()
        # Settled: the worker's own record of the SIGTERM, then the scheduler's reading of Slurm's TIMEOUT.
        wait_for(lambda: store.get_run(db, run.id).status == "lost", timeout=150, interval=0.5)
        took = time.monotonic() - started
    finally:
        errors = stop(scheduler)
    final = store.get_run(db, run.id)
    assert final.status == "lost", (final.status, final.error, errors)
    assert "hit its time limit" in final.error and final.external_id in final.error
    assert final.external_state == "TIMEOUT" and final.cancel_requested is False
    epochs = store.metrics(db, run.id, kind="epoch")
    assert len({r["epoch"] for r in epochs}) >= 20, "the rows logged before the limit are kept"
    assert final.epoch == max(r["epoch"] for r in epochs)
    print(f"\nslurm: a 1-minute job ran {final.epoch} epochs and was lost to TIMEOUT {took:.0f} s after its first epochs")
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_a_run_asking_for_slurm_goes_there_from_a_local_scheduler(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    queued = [hrm("--db", url, "run", "smoke", "--epochs", "2", "--layers", "2", "--no-start-scheduler", *extra)
              for extra in ((), ("--executor", "slurm"))]
    assert [q.returncode for q in queued] == [0, 0], [q.stderr for q in queued]
    local_id, slurm_id = (int(q.stdout.strip()) for q in queued)
    done = run_scheduler_once(url, "--gpus", "", "--max-parallel", "2", timeout=120)  # a plain local scheduler
    assert done.returncode == 0, done.stderr
    db = open_database(url)
    local, slurm = store.get_run(db, local_id), store.get_run(db, slurm_id)
    assert (local.status, slurm.status) == ("completed", "completed"), (local.error, slurm.error)
    assert local.executor is None and local.external_id is None
    assert slurm.executor == "slurm" and slurm.external_state == "COMPLETED" and slurm.external_id.isdigit()
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_a_restarted_scheduler_adopts_the_slurm_job_it_left_running(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 40, "layers": 2, "sleep": 0.25})
    first = slurm_scheduler(url, slurm_partition, "--name", "login1")
    try:
        wait_for(lambda: running_with_epochs(db, run.id), timeout=90)
    finally:
        stop(first)  # a scheduler that stops leaves its workers running
    job = store.get_run(db, run.id).external_id
    assert job_state(job) == "RUNNING" and store.get_run(db, run.id).status == "running"
    second = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", url, "scheduler", "--executor", "slurm",
                             "--partition", slurm_partition, "--name", "login1", "--once"],
                            capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert second.returncode == 0, second.stderr
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.external_id == job, (final.error, second.stderr)
    assert any("adopted by scheduler 'login1'" in line["message"] for line in store.logs(db, run.id))
    assert len({r["epoch"] for r in store.metrics(db, run.id, kind="epoch")}) == 40
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_a_node_failure_is_lost_and_resumed_by_retries(slurm_partition, tmp_path):  # noqa: F811
    from core.registry import attempts

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 30, "layers": 2, "sleep": 0.2})
    scheduler = slurm_scheduler(url, slurm_partition, "--retries", "1")
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    try:
        wait_for(lambda: running_with_epochs(db, run.id), timeout=90)
        first_job = store.get_run(db, run.id).external_id
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=hrm-test"], check=True)
        wait_for(lambda: store.get_run(db, run.id).attempt == 2, timeout=60)
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
    try:
        wait_for(lambda: store.get_run(db, run.id).external_state == "COMPLETED", timeout=120)
    finally:
        errors = stop(scheduler)
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.external_id != first_job, (final.error, errors)
    ended = attempts.attempts(db, run.id)[0]
    assert ended["status"] == "lost" and "node failure (NODE_FAIL)" in ended["error"] and first_job in ended["error"]
    assert sorted({r["epoch"] for r in store.metrics(db, run.id, kind="epoch")}) == list(range(1, 31))
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_a_preempted_job_is_lost_with_its_rows_kept(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 400, "layers": 2, "sleep": 0.3})
    scheduler = slurm_scheduler(url, slurm_partition)
    try:
        wait_for(lambda: running_with_epochs(db, run.id), timeout=90)
        # A job of a higher-priority partition needs the whole node: Slurm preempts (cancels) ours.
        urgent = subprocess.run(["sbatch", "--parsable", "--partition", "urgent", "--exclusive", "--time", "1",
                                 "--output", "/dev/null", "--wrap", "sleep 1"],
                                capture_output=True, text=True, check=True).stdout.strip()
        wait_for(lambda: store.get_run(db, run.id).status == "lost", timeout=60)
    finally:
        errors = stop(scheduler)
    final = store.get_run(db, run.id)
    assert final.external_state == "PREEMPTED" and "was preempted by Slurm" in final.error, (final.error, errors)
    assert final.cancel_requested is False and urgent
    assert len({r["epoch"] for r in store.metrics(db, run.id, kind="epoch")}) >= 2
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_a_requeued_run_never_runs_twice_when_its_old_job_still_waits(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 3, "layers": 2})
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", "reason=hrm-test"], check=True)
    try:  # the job waits (the node is drained); its scheduler dies; another takes the run over
        first = slurm_scheduler(url, slurm_partition, "--name", "a")
        wait_for(lambda: store.get_run(db, run.id).external_state == "PENDING", timeout=60)
        old_job = store.get_run(db, run.id).external_id
        first.kill()
        first.wait(10)
        second = slurm_scheduler(url, slurm_partition, "--name", "b", "--stale-after", "5")
        wait_for(lambda: store.get_run(db, run.id).external_id not in (None, old_job), timeout=60)
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
    try:
        wait_for(lambda: store.get_run(db, run.id).external_state == "COMPLETED", timeout=90)
    finally:
        stop(second)
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.scheduler_name == "b", final.error
    assert job_state(old_job) in ("CANCELLED", "GONE")
    assert f"cancelled Slurm job {old_job}, left waiting by an earlier claim of this run" in [
        line["message"] for line in store.logs(db, run.id)]
    rows = [(r["epoch"], r["key"]) for r in store.metrics(db, run.id, kind="epoch")]
    assert len(rows) == len(set(rows)), "one worker: no epoch twice"
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_cancelling_a_run_whose_job_still_waits_in_slurm(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 3, "layers": 2})
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", "reason=hrm-test"], check=True)
    scheduler = slurm_scheduler(url, slurm_partition)
    try:
        wait_for(lambda: store.get_run(db, run.id).external_state == "PENDING", timeout=60)
        assert store.get_run(db, run.id).status == "starting"
        assert hrm("--db", url, "cancel", str(run.id)).returncode == 0
        wait_for(lambda: store.get_run(db, run.id).status.is_terminal, timeout=30)
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
        errors = stop(scheduler)
    final = store.get_run(db, run.id)
    assert final.status == "cancelled" and final.error.startswith("cancelled by request"), (final.error, errors)
    assert final.external_state == "CANCELLED" and job_state(final.external_id) in ("CANCELLED", "GONE")
    assert store.metrics(db, run.id) == [] and final.started_at is None, "its worker never ran"
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_a_job_that_dies_before_its_worker_starts_says_why(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 2, "layers": 2})
    env = {**subprocess_env(), "SBATCH_EXPORT": "NONE"}  # a site default that strips the job's environment
    done = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", url, "scheduler", "--executor", "slurm",
                           "--partition", slurm_partition, "--once"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    final = store.get_run(db, run.id)
    assert final.status == "failed" and final.external_state == "FAILED", final.error
    assert f"Slurm job {final.external_id}" in final.error and "before its worker wrote a final status" in final.error
    assert "Error" in final.stderr_tail, "the job's own output says what went wrong"
    db.dispose()


@pytest.mark.slow
@pytest.mark.slurm
def test_runs_wait_in_the_queue_while_slurms_controller_is_down(slurm_partition, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 2, "layers": 2})
    subprocess.run(["bash", str(SLURM_DIR / "stop_slurm.sh"), "slurmctld"], check=True, capture_output=True, timeout=60)
    scheduler = None
    try:
        log = tmp_path / "scheduler.log"
        scheduler = slurm_scheduler(url, slurm_partition, stderr=log.open("w"))
        wait_for(lambda: "back in the queue" in log.read_text(), timeout=60)
        assert store.get_run(db, run.id).status == "queued", "a controller outage fails no run"
    finally:
        up = subprocess.run(["bash", str(SLURM_DIR / "start_slurm.sh")], capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stderr
    try:
        wait_for(lambda: store.get_run(db, run.id).external_state == "COMPLETED", timeout=90)
    finally:
        stop(scheduler)
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.external_state == "COMPLETED", (final.error, log.read_text())
    db.dispose()


def test_bad_slurm_options_are_refused_before_anything_is_written(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for args, message in ((["--executor", "slurm", "--time", "soon"], "--time 'soon'"),
                          (["--executor", "slurm", "--gres", "gpu 1"], "--gres"),
                          (["--partition", "debug"], "add --executor slurm"),
                          (["--executor", "pbs"], "expected local or slurm")):
        done = hrm("--db", url, "scheduler", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and message in done.stderr and "Traceback" not in done.stderr
    done = hrm("--db", url, "run", "smoke", "--executor", "pbs", "--no-start-scheduler")
    assert done.returncode == 2 and done.stderr.startswith("error: --executor 'pbs'"), done.stderr
    assert not (tmp_path / "runs.db").exists()


def test_slurm_times_and_endings_read_as_slurm_means_them():
    from core.scheduler.slurm import SlurmJob, parse_time, verdict

    assert [parse_time(t) for t in ("1", "90", "2:00:00", "0:30", "1-12", "1-00:00:01", 45)] == [1, 90, 120, 1, 2160,
                                                                                                1441, 45]
    for bad in ("", "soon", "1:2:3:4", "0", "0:00"):
        with pytest.raises(ValueError):
            parse_time(bad)
    job = SlurmJob("7", "CANCELLED", node="n1", exit_signal=15)
    assert verdict(job, cancel_requested=True)[0] == "cancelled" and job.code == -15
    status, error = verdict(job, cancel_requested=False)
    assert status == "cancelled" and error.startswith("cancelled by Slurm, not through hrm (Slurm job 7 on n1")
    for state, word in (("TIMEOUT", "time limit"), ("NODE_FAIL", "node failure"), ("PREEMPTED", "preempted"),
                        ("BOOT_FAIL", "boot failure"), ("DEADLINE", "deadline")):
        assert verdict(SlurmJob("7", state, time_limit="00:01:00"), cancel_requested=False)[0] == "lost"
        assert word in verdict(SlurmJob("7", state), cancel_requested=True)[1]
    assert verdict(SlurmJob("7", "OUT_OF_MEMORY"), cancel_requested=False)[0] == "failed"
    assert "exit code 2" in verdict(SlurmJob("7", "FAILED", exit_code=2), cancel_requested=False)[1]
    assert all(SlurmJob("7", s).ended is False for s in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"))
