"""Several "hosts" (schedulers with their own names) on one registry: real PostgreSQL, real processes.

Two named schedulers on one machine stand for two hosts (``--name``); what they share is only
the registry, exactly as two machines would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from core import api
from core.paths import runs_root
from core.registry import leases, open_database, store
from tests.conftest import ROOT, scheduler_cmd, status_of, stop_process, subprocess_env, wait_for
from tests.pg_fixture import pg_server, pg_url  # noqa: F401  (fixtures)


def start_named(url: str, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(scheduler_cmd(url, "--name", name, *extra), env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def hrm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_tui", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=timeout)


@pytest.fixture
def pg_db(pg_url):  # noqa: F811
    db = open_database(pg_url)
    yield db
    db.dispose()


@pytest.mark.slow
def test_two_named_schedulers_drain_one_queue_without_claiming_twice(pg_db):
    runs = [api.submit(pg_db, "smoke", {"epochs": 3, "layers": 2, "noisy": True, "seed": i}) for i in range(18)]
    pinned = [api.submit(pg_db, "smoke", {"epochs": 2, "layers": 2, "noisy": True}, host="hostB") for _ in range(2)]
    a = start_named(pg_db.url, "hostA", "--max-parallel", "2", "--once")
    b = start_named(pg_db.url, "hostB", "--max-parallel", "2", "--once")
    try:
        assert a.wait(240) == 0, a.stderr.read()
        assert b.wait(240) == 0, b.stderr.read()
    finally:
        stop_process(a)
        stop_process(b)
    finals = [store.get_run(pg_db, r.id) for r in runs + pinned]
    assert [f.status for f in finals] == ["completed"] * 20, [(f.id, f.error) for f in finals if f.status != "completed"]
    by_name = {f.id: f.scheduler_name for f in finals}
    assert set(by_name.values()) == {"hostA", "hostB"}, "both hosts took runs from the one queue"
    assert all(by_name[r.id] == "hostB" for r in pinned), "a pinned run only goes to its host"
    assert len({f.pid for f in finals}) == 20, "one worker per run"
    for final in finals:  # executed once: every event applied once, no duplicate rows
        epochs = final.total_epochs
        rows = store.metrics(pg_db, final.id)
        assert len(rows) == epochs * 3 + epochs * 2 + 2, final.id
        keys = [(r["kind"], r["epoch"], r["layer"], r["key"]) for r in rows]
        assert len(keys) == len(set(keys))
    # Every run's log is readable from "another host": without the local worker.log files.
    shutil.rmtree(runs_root(pg_db))
    for final in finals:
        shown = hrm("--db", pg_db.url, "logs", str(final.id))
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count("stray print {not json}") == final.total_epochs, (final.id, shown.stdout)
        assert shown.stdout.count("stray stderr line") == final.total_epochs


@pytest.mark.slow
def test_worker_killed_on_host_b_is_marked_lost_by_host_a(pg_db):
    run = api.submit(pg_db, "smoke", {"epochs": 2000, "sleep": 0.05}, host="hostB")
    b = start_named(pg_db.url, "hostB", "--stale-after", "3")
    try:
        wait_for(lambda: status_of(pg_db, run.id) == "running" and store.metrics(pg_db, run.id), timeout=60)
        b.send_signal(signal.SIGKILL)  # host B goes away: its scheduler first, then the worker
        b.wait(10)
        worker = store.get_run(pg_db, run.id).pid
        os.killpg(worker, signal.SIGKILL)
        a = start_named(pg_db.url, "hostA", "--stale-after", "3")
        try:
            wait_for(lambda: api.scheduler_alive(pg_db, name="hostA"), timeout=30)
            watching = time.monotonic()
            wait_for(lambda: status_of(pg_db, run.id) == "lost", timeout=30)
            took = time.monotonic() - watching
        finally:
            stop_process(a)
    finally:
        stop_process(b)
    final = store.get_run(pg_db, run.id)
    # A new scheduler first gives every worker one stale window to beat (it may come out of an outage).
    assert took < 3 + 3, f"lost {took:.1f} s after host A started watching, with a 3 s stale window"
    assert "no worker heartbeat" in final.error and "host" in final.error
    assert any("lost:" in line["message"] for line in store.logs(pg_db, run.id))


def test_simultaneous_registrations_of_one_name_one_wins(pg_url):  # noqa: F811
    """Six schedulers registering one name at the same instant: exactly one gets the lease."""
    dbs = [open_database(pg_url) for _ in range(6)]
    barrier = threading.Barrier(6)
    results: list = [None] * 6

    def register(i: int) -> None:
        barrier.wait()
        results[i] = leases.acquire(dbs[i], name="gpu-host", host="h", pid=i, slots="cpu", stale_after=10)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert sum(r is not None for r in results) == 1, results
        assert len(store.live_schedulers(dbs[0], stale_after=10)) == 1
    finally:
        for db in dbs:
            db.dispose()


def test_a_scheduler_that_lost_its_lease_is_fenced_off(pg_db):
    queued = api.submit(pg_db, "smoke", {"epochs": 1})
    old = leases.acquire(pg_db, name="h", host="h", pid=1, slots="cpu", stale_after=0.5)
    assert old is not None
    assert leases.acquire(pg_db, name="h", host="h", pid=2, slots="cpu", stale_after=0.5) is None, "a fresh holder keeps it"
    time.sleep(0.7)  # the old holder was paused past its lease
    new = leases.acquire(pg_db, name="h", host="h", pid=2, slots="cpu", stale_after=0.5)
    assert new is not None and new.epoch == old.epoch + 1
    assert not leases.renew(pg_db, old), "the paused scheduler learns it lost the lease"
    assert store.claim_next(pg_db, host="h", gpu="cpu", lease=old, stale_after=10) is None, "its claims are refused"
    claimed = store.claim_next(pg_db, host="h", gpu="cpu", lease=new, stale_after=10)
    assert claimed.id == queued.id and claimed.scheduler_name == "h"


@pytest.mark.slow
def test_sqlite_refuses_a_scheduler_of_another_machine(db):
    store.register_scheduler(db, host="some-other-machine", pid=1, slots="cpu", stale_after=10, name="other")
    result = subprocess.run(scheduler_cmd(db.url, "--once"), env=subprocess_env(), capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 1
    assert "some-other-machine" in result.stderr and "PostgreSQL" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_paused_scheduler_is_fenced_off_and_never_shares_a_gpu(db, tmp_path):
    """SIGSTOP a scheduler past its lease: a second one of that name takes over (adopting the running
    worker and its GPU); the first, resumed, finds its lease gone and exits without launching."""
    first_run = api.submit(db, "smoke", {"epochs": 60, "sleep": 0.05})
    second_run = api.submit(db, "smoke", {"epochs": 5})
    first = start_named(db.url, "gpu-box", "--gpus", "0", "--lease-after", "2")
    second = None
    try:
        wait_for(lambda: status_of(db, first_run.id) == "running")
        first.send_signal(signal.SIGSTOP)
        time.sleep(2.5)
        second = start_named(db.url, "gpu-box", "--gpus", "0", "--lease-after", "2")
        wait_for(lambda: any("adopted" in line["message"] for line in store.logs(db, first_run.id)), timeout=20)
        first.send_signal(signal.SIGCONT)
        assert first.wait(20) == 0
        said = first.stderr.read()
        assert "taken over" in said, said
        wait_for(lambda: status_of(db, second_run.id) == "completed", timeout=60)
    finally:
        first.send_signal(signal.SIGCONT)
        stop_process(first)
        if second is not None:
            stop_process(second)
    one, two = store.get_run(db, first_run.id), store.get_run(db, second_run.id)
    assert one.status == "completed" and one.gpu == two.gpu == "0"
    assert two.started_at >= one.finished_at - 0.05, "two runs shared GPU 0 without --pack"


def test_an_orphan_of_a_gone_host_is_resolved_with_cancel_force(db):
    run = api.submit(db, "smoke", {"epochs": 2})
    store.claim_next(db, host="container-1234", gpu="0")
    store.mark_running(db, run.id, pid=424242, host="container-1234", info={})
    plain = hrm("--db", db.url, "cancel", str(run.id))
    assert plain.returncode == 0 and status_of(db, run.id) == "running", "a plain cancel only asks its scheduler"
    forced = hrm("--db", db.url, "cancel", "--force", str(run.id))
    assert forced.returncode == 0, forced.stderr
    final = store.get_run(db, run.id)
    assert final.status == "cancelled" and "by force" in final.error and "container-1234" in final.error
    deleted = hrm("--db", db.url, "delete", str(run.id), "--yes")
    assert deleted.returncode == 0 and store.get_run(db, run.id) is None, deleted.stderr
