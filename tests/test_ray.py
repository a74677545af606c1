"""The Ray executor against a real Ray: a head started on loopback by the fixture, ``hrm scheduler --executor
ray`` running real hrm workers under Ray actors, and each way a run can end there (completed, cancelled by
the user, its worker killed, its actor killed: Ray's "worker process died"), a run asking for Ray from a
local scheduler, and a restarted scheduler adopting a running actor. Skipped without the ``[ray]`` extra."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from core import api
from core.registry import open_database, store
from tests.conftest import ROOT, scheduler_cmd, stop_process, subprocess_env, wait_for
from tests.pg_fixture import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.test_cli_lean import BLOCK

RAY = Path(sys.executable).with_name("ray")
ray_tests = [pytest.mark.slow, pytest.mark.ray,
             pytest.mark.skipif(not RAY.exists(), reason="the [ray] extra is not installed (no `ray` command)")]


def ray_env(address: str | None = None) -> dict[str, str]:
    env = {**subprocess_env(), "RAY_USAGE_STATS_ENABLED": "0"}
    if address:
        env["RAY_ADDRESS"] = address
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A real one-node Ray cluster on loopback (2 CPUs, the smallest object store), for this module's tests."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="hrm-ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    started = subprocess.run([str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false",
                              "--object-store-memory", str(80 * 1024 * 1024), "--temp-dir", temp,
                              "--disable-usage-stats"],
                             capture_output=True, text=True, env=ray_env(), timeout=120)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=ray_env(), timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_scheduler_left_behind(request):
    """Whatever a test ends with, its schedulers are stopped; a test on Ray leaves no actor holding a CPU."""
    yield
    while _STARTED:
        stop(_STARTED.pop())
    if "ray_head" in request.fixturenames:
        address = request.getfixturevalue("ray_head")
        wait_for(lambda: cpus_in_use(address) == 0, timeout=30, interval=1)


def hrm(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_tui", *args], capture_output=True, text=True,
                          env=env or ray_env(), timeout=timeout)


def ray_scheduler(url: str, address: str, *extra: str) -> subprocess.Popen:
    """``hrm scheduler --executor ray`` in the background, as a user starts it."""
    proc = subprocess.Popen([sys.executable, "-m", "hrm_tui", "--db", url, "scheduler", "--executor", "ray",
                             "--ray-address", address, "--stale-after", "30", *extra],
                            env=ray_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _STARTED.append(proc)
    return proc


stop = stop_process


def running_with_epochs(db, run_id: int, epochs: int = 2):
    run = store.get_run(db, run_id)
    if run.status.is_terminal:
        raise AssertionError(f"run {run_id} ended early: {run.status} {run.error}")
    return run if run.status == "running" and run.epoch >= epochs and run.pid else None


def wait_running(db, run_id: int, address: str, epochs: int = 2, timeout: float = 90):
    """The run once its worker runs and logged ``epochs`` epochs; on timeout, what the registry and Ray say."""
    try:
        return wait_for(lambda: running_with_epochs(db, run_id, epochs), timeout=timeout)
    except AssertionError:
        run = store.get_run(db, run_id)
        status = subprocess.run([str(RAY), "status", "--address", address], capture_output=True, text=True,
                                env=ray_env(), timeout=60)
        raise AssertionError(f"run {run_id} not running: {run.status} {run.external_state} {run.error}; logs "
                             f"{[line['message'] for line in store.logs(db, run_id)]}; ray status: {status.stdout}") from None


def cpus_in_use(address: str) -> float:
    """Ray's CPUs held by actors now, as the cluster reports them (this process is a driver of it: cheaper
    than a ``ray status`` process each time)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace="hrm-tests", log_to_driver=False, logging_level="WARNING")
    return ray.cluster_resources().get("CPU", 0) - ray.available_resources().get("CPU", 0)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def ray_test(fn):
    """Marked ``slow`` and ``ray``; skipped without the extra."""
    for mark in ray_tests:
        fn = mark(fn)
    return fn



@pytest.fixture
def sqlite_db(tmp_path):
    """(url, db) of a fresh SQLite registry, disposed after the test."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    db = open_database(url, create=True)
    yield url, db
    db.dispose()


def epochs_logged(db, run_id: int) -> int:
    return len({r["epoch"] for r in store.metrics(db, run_id, kind="epoch")})

@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("HRM_HOME", str(tmp_path / "hrm-home"))  # run folders of a server registry
    return request.getfixturevalue("pg_url")


@ray_test
def test_a_ray_run_completes_with_its_epoch_and_layer_rows(ray_head, registry_url):  # noqa: F811
    url = registry_url
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 3, "layers": 2, "noisy": True})
    started = time.monotonic()
    done = hrm("--db", url, "scheduler", "--executor", "ray", "--ray-address", ray_head, "--once")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    final = store.get_run(db, run.id)
    assert final.status == "completed", (final.error, final.stderr_tail, done.stderr[-2000:])
    seen = (final.executor, final.external_id, final.external_state, final.exit_code, done.stderr[-2000:])
    assert final.executor == "ray" and len(final.external_id) == 32 and int(final.external_id, 16), seen
    assert final.external_state == "FINISHED" and final.exit_code == 0, seen
    assert sorted({r["epoch"] for r in store.metrics(db, run.id, kind="epoch")}) == [1, 2, 3]
    layer_rows = store.metrics(db, run.id, kind="layer")
    assert sorted({(r["epoch"], r["layer"]) for r in layer_rows}) == [(e, i) for e in (1, 2, 3) for i in (1, 2)]
    logged = [line["message"] for line in store.logs(db, run.id)]
    assert f"submitted to Ray as actor {final.external_id} ({ray_head}, 0 GPU)" in logged, logged
    assert any(m.startswith(f"Ray actor {final.external_id} started the worker (pid {final.pid} ") for m in logged)
    shown = hrm("--db", url, "logs", str(run.id))
    assert shown.returncode == 0 and "stray print" in shown.stdout, shown.stdout + shown.stderr
    listed = json.loads(hrm("--db", url, "ls", "--json").stdout)["runs"][0]
    assert listed["executor"] == {"name": "ray", "job_id": final.external_id, "state": "FINISHED"}
    assert not alive(final.pid)
    # The actor went with the scheduler's reading of its ending, though the scheduler exited at once (--once).
    wait_for(lambda: cpus_in_use(ray_head) == 0, timeout=20, interval=1)
    print(f"\nray ({url.split(':')[0]}): submit -> completed in {took:.1f} s (scheduler start to exit)")
    db.dispose()


@ray_test
def test_a_run_asking_for_ray_goes_there_from_a_local_scheduler(ray_head, tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    queued = [hrm("--db", url, "run", "smoke", "--epochs", "2", "--layers", "2", "--no-start-scheduler", *extra)
              for extra in ((), ("--executor", "ray"))]
    assert [q.returncode for q in queued] == [0, 0], [q.stderr for q in queued]
    local_id, ray_id = (int(q.stdout.strip()) for q in queued)
    # A plain local scheduler (what `hrm run` starts in the background); Ray's address from $RAY_ADDRESS.
    done = subprocess.run(scheduler_cmd(url, "--once", "--gpus", "", "--max-parallel", "2"), capture_output=True,
                          text=True, env=ray_env(ray_head), timeout=120)
    assert done.returncode == 0, done.stderr
    db = open_database(url)
    local, on_ray = store.get_run(db, local_id), store.get_run(db, ray_id)
    assert (local.status, on_ray.status) == ("completed", "completed"), (local.error, on_ray.error)
    assert local.executor is None and local.external_id is None
    assert on_ray.executor == "ray" and on_ray.external_state == "FINISHED" and len(on_ray.external_id) == 32
    db.dispose()


@ray_test
def test_a_user_cancel_reaches_the_worker_through_its_actor(ray_head, sqlite_db):
    url, db = sqlite_db
    run = api.submit(db, "smoke", {"epochs": 400, "layers": 2, "sleep": 0.3})
    scheduler = ray_scheduler(url, ray_head, "--retries", "1")
    try:
        running = wait_running(db, run.id, ray_head)
        assert store.get_run(db, run.id).external_state == "RUNNING"
        cancelled = hrm("--db", url, "cancel", str(run.id))
        assert cancelled.returncode == 0, cancelled.stderr
        wait_for(lambda: store.get_run(db, run.id).status.is_terminal, timeout=60)
        time.sleep(2)  # a retry, were one wrongly made, would be queued by now
    finally:
        errors = stop(scheduler)
    final = store.get_run(db, run.id)
    assert (final.status, final.cancel_requested) == ("cancelled", True), (final.error, errors)
    assert final.error == "cancelled by request", "the worker itself recorded it: it got the SIGTERM"
    assert final.attempt == 1 and final.external_state == "FINISHED"
    assert not alive(running.pid)
    logged = [line["message"] for line in store.logs(db, run.id)]
    assert "SIGTERM sent (cancel requested)" in logged and "cancelled (SIGTERM)" in logged, logged
    assert epochs_logged(db, run.id) >= 2, "what was logged is kept"


@ray_test
def test_a_worker_deaf_to_sigterm_is_killed_with_its_actor_after_the_grace(ray_head, sqlite_db):
    url, db = sqlite_db
    run = api.submit(db, "smoke", {"epochs": 400, "layers": 2, "sleep": 0.3})
    scheduler = ray_scheduler(url, ray_head)
    try:
        running = wait_running(db, run.id, ray_head)
        actor_process = parent_of(running.pid)
        os.kill(running.pid, signal.SIGSTOP)  # stopped: the SIGTERM of the cancel waits, unanswered
        assert hrm("--db", url, "cancel", str(run.id)).returncode == 0
        wait_for(lambda: store.get_run(db, run.id).status.is_terminal, timeout=40)
    finally:
        errors = stop(scheduler)
    final = store.get_run(db, run.id)
    assert (final.status, final.cancel_requested) == ("cancelled", True), (final.error, errors)
    assert final.error.startswith("cancelled by request (") and final.external_id in final.error, final.error
    assert "SIGKILL sent after 10 s grace" in [line["message"] for line in store.logs(db, run.id)]
    wait_for(lambda: not alive(running.pid) and not alive(actor_process), timeout=10)  # the worker, then its actor


@ray_test
def test_a_worker_killed_from_outside_fails_with_its_reason_and_the_scheduler_goes_on(ray_head, sqlite_db):
    url, db = sqlite_db
    run = api.submit(db, "smoke", {"epochs": 400, "layers": 2, "sleep": 0.3})
    scheduler = ray_scheduler(url, ray_head)
    try:
        running = wait_running(db, run.id, ray_head)
        os.kill(running.pid, signal.SIGKILL)
        wait_for(lambda: store.get_run(db, run.id).status.is_terminal, timeout=60)
        after = api.submit(db, "smoke", {"epochs": 2, "layers": 2})
        wait_for(lambda: store.get_run(db, after.id).status == "completed", timeout=90)
    finally:
        errors = stop(scheduler)
    assert scheduler.returncode == 0, errors
    final = store.get_run(db, run.id)
    assert final.status == "failed", (final.status, final.error, errors)
    assert final.error.startswith(f"worker killed by SIGKILL (Ray actor {final.external_id} on ")
    assert final.exit_code == -9 and final.external_state == "FINISHED"
    assert epochs_logged(db, run.id) >= 2


@ray_test
def test_an_actor_that_dies_leaves_its_run_lost_and_retries_resume_it(ray_head, sqlite_db):
    from core.registry import attempts

    url, db = sqlite_db
    run = api.submit(db, "smoke", {"epochs": 25, "layers": 2, "sleep": 0.2})
    scheduler = ray_scheduler(url, ray_head, "--retries", "1")
    try:
        running = wait_running(db, run.id, ray_head, epochs=3)
        first_actor = running.external_id
        actor_process = parent_of(running.pid)  # the Ray worker process that hosts the run's actor
        os.kill(actor_process, signal.SIGKILL)  # as the OOM killer or a lost node would
        wait_for(lambda: not alive(running.pid), timeout=10)  # the worker does not outlive its actor
        wait_for(lambda: store.get_run(db, run.id).attempt == 2, timeout=60)
        wait_for(lambda: store.get_run(db, run.id).status.is_terminal, timeout=120)
    finally:
        errors = stop(scheduler)
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.external_id != first_actor, (final.error, errors)
    ended = attempts.attempts(db, run.id)[0]
    assert ended["status"] == "lost", ended
    assert ended["error"].startswith(f"Ray actor {first_actor} on ") and "died: The actor is dead" in ended["error"]
    assert sorted({r["epoch"] for r in store.metrics(db, run.id, kind="epoch")}) == list(range(1, 26))


@ray_test
def test_a_restarted_scheduler_adopts_the_ray_actor_it_left_running(ray_head, sqlite_db):
    url, db = sqlite_db
    run = api.submit(db, "smoke", {"epochs": 40, "layers": 2, "sleep": 0.25})
    first = ray_scheduler(url, ray_head, "--name", "head1")
    try:
        running = wait_running(db, run.id, ray_head)
    finally:
        stop(first)  # a scheduler that stops leaves its workers running
    assert first.returncode == 0
    assert alive(running.pid) and store.get_run(db, run.id).status == "running"
    second = hrm("--db", url, "scheduler", "--executor", "ray", "--ray-address", ray_head, "--name", "head1", "--once")
    assert second.returncode == 0, second.stderr
    final = store.get_run(db, run.id)
    assert final.status == "completed" and final.external_id == running.external_id, (final.error, second.stderr)
    assert final.external_state == "FINISHED"
    assert any("adopted by scheduler 'head1'" in line["message"] for line in store.logs(db, run.id))
    assert epochs_logged(db, run.id) == 40


@pytest.mark.slow
def test_without_the_ray_extra_nothing_is_queued_and_the_line_names_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    blocked = BLOCK.replace("if name.split(\".\")[0] in", "if name.split(\".\")[0] == 'ray' or name.split(\".\")[0] in")
    code = blocked + "import runpy\nsys.argv = ['hrm', *sys.argv[1:]]\nrunpy.run_module('hrm_tui', run_name='__main__')"
    for args in (["run", "smoke", "--executor", "ray", "--no-start-scheduler"], ["scheduler", "--executor", "ray"]):
        done = subprocess.run([sys.executable, "-c", code, "--db", url, *args], capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == "error: ray is not installed: pip install 'hrm-tui[ray]'", done.stderr
    assert not (tmp_path / "runs.db").exists(), "nothing queued, no registry made"


@pytest.mark.slow
@pytest.mark.skipif(not RAY.exists(), reason="the [ray] extra is not installed (no `ray` command)")
def test_bad_ray_options_are_refused_before_anything_is_written(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for args, code, message in ((["--executor", "ray", "--gres", "gpu:1"], 2, "--gres is a Slurm option"),
                                (["--executor", "ray", "--gpus", "0"], 2, "--gpus and --pack are for local workers"),
                                (["--executor", "ray", "--ray-address", " "], 2, "--ray-address"),
                                (["--executor", "ray", "--ray-address", f"127.0.0.1:{free_port()}"], 1,
                                 "cannot reach the Ray cluster at 127.0.0.1:")):
        done = hrm("--db", url, "scheduler", *args, env=subprocess_env())
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs.db").exists()
