"""Faults around the scheduler and its workers: real processes, real signals, a real registry file
(and a real PostgreSQL server), each test asserting exactly what survived."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import api
from core.paths import run_dir, worker_log
from core.registry import RunStatus, open_database, store
from core.registry.emitter import SPOOL_NAME, RegistryEmitter, apply_event, replay_spool
from core.registry.output import append_output, output_since, ship_file
from core.scheduler import Executor, Scheduler, Slots
from tests.conftest import ROOT, locked_out, scheduler_cmd, status_of, stop_process, subprocess_env, wait_for
from tests.pg_fixture import pg_server, pg_url  # noqa: F401  (fixtures)

HRM = str(Path(sys.executable).with_name("hrm"))


def start(url: str, log: Path, *extra: str, env: dict | None = None, cwd=None) -> subprocess.Popen:
    """A scheduler whose stderr goes to ``log`` (what it said about stalls and outages)."""
    with log.open("ab") as out:
        return subprocess.Popen(scheduler_cmd(url, *extra), env={**subprocess_env(), **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)


def epoch_rows(db, run_id):
    return [r for r in store.metrics(db, run_id) if r["kind"] == "epoch"]


def assert_exact_rows(db, run_id, epochs: int, layers: int) -> None:
    """Every event present exactly once: no duplicates from a replay, nothing missing."""
    rows = store.metrics(db, run_id)
    keys = [(r["kind"], r["stage"], r["epoch"], r["layer"], r["key"]) for r in rows]
    assert len(keys) == len(set(keys)), "a replayed event was applied twice"
    assert len(rows) == epochs * 3 + epochs * layers + 2


def process_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# --- workers killed or stopped ------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_of_the_worker_mid_epoch_keeps_every_whole_event(db, tmp_path):
    run = api.submit(db, "smoke", {"epochs": 1000, "sleep": 0.02, "layers": 2, "noisy": True})
    scheduler = start(db.url, tmp_path / "scheduler.log")
    try:
        wait_for(lambda: len(epoch_rows(db, run.id)) >= 30)
        os.kill(store.get_run(db, run.id).pid, signal.SIGKILL)
        wait_for(lambda: status_of(db, run.id) == "failed")
    finally:
        stop_process(scheduler)
    final = store.get_run(db, run.id)
    assert "SIGKILL" in final.error and final.exit_code == -signal.SIGKILL
    epochs = {r["epoch"] for r in epoch_rows(db, run.id)}
    assert len(epoch_rows(db, run.id)) == 3 * len(epochs), "an epoch event is whole or absent"
    layers = [r for r in store.metrics(db, run.id) if r["kind"] == "layer"]
    assert len(layers) in (2 * len(epochs), 2 * len(epochs) - 2), "layers follow their epoch event"
    shipped = "".join(c["text"] for c in output_since(db, run.id))
    assert shipped == worker_log(db, run.id).read_text(), "the scheduler shipped the rest of the killed worker's output"


@pytest.mark.slow
def test_a_sigstopped_worker_goes_stale_and_is_lost(db, tmp_path):
    run = api.submit(db, "smoke", {"epochs": 2000, "sleep": 0.05})
    scheduler = start(db.url, tmp_path / "scheduler.log", "--stale-after", "2")
    try:
        wait_for(lambda: status_of(db, run.id) == "running" and epoch_rows(db, run.id))
        pid = store.get_run(db, run.id).pid
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_for(lambda: status_of(db, run.id) == "lost", timeout=20)
        took = time.monotonic() - stopped_at
        wait_for(lambda: process_state(pid) == "gone", timeout=10)
        assert scheduler.poll() is None, "the scheduler goes on"
    finally:
        stop_process(scheduler)
    final = store.get_run(db, run.id)
    assert took < 2 + 4, f"lost after {took:.1f} s with a 2 s stale window"
    assert "no worker heartbeat" in final.error and "stopped (SIGSTOP)" in final.error and "killed" in final.error


@pytest.mark.slow
def test_sigkill_of_the_scheduler_with_runs_in_flight_then_restart(db, tmp_path):
    """The restarted scheduler adopts the live worker (whose own failure record survives adoption)
    and settles the dead one; nothing emitted is lost."""
    adopted = api.submit(db, "smoke", {"epochs": 100, "sleep": 0.05, "fail_at_epoch": 60})
    doomed = api.submit(db, "smoke", {"epochs": 1000, "sleep": 0.05})
    log = tmp_path / "scheduler.log"
    first = start(db.url, log, "--max-parallel", "2", "--lease-after", "2")
    wait_for(lambda: status_of(db, adopted.id) == "running" and status_of(db, doomed.id) == "running")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    doomed_pid = store.get_run(db, doomed.id).pid
    os.kill(doomed_pid, signal.SIGKILL)  # this orphan dies with nobody watching
    before = len(epoch_rows(db, doomed.id))
    time.sleep(2.5)  # the killed scheduler's lease goes stale
    second = start(db.url, log, "--max-parallel", "2", "--lease-after", "2")
    try:
        wait_for(lambda: status_of(db, doomed.id) == "lost", timeout=20)
        wait_for(lambda: status_of(db, adopted.id) == "failed", timeout=60)
        time.sleep(1)  # the scheduler reaps the adopted worker's exit
    finally:
        stop_process(second)
    lost = store.get_run(db, doomed.id)
    assert "gone when the scheduler restarted" in lost.error
    assert len(epoch_rows(db, doomed.id)) == before, "its rows stay as they were"
    failed = store.get_run(db, adopted.id)
    assert "smoke failure requested at epoch 60" in failed.error
    assert failed.stderr_tail and "Traceback" in failed.stderr_tail, "adoption kept the worker's traceback"
    assert len(epoch_rows(db, adopted.id)) == 59 * 3
    assert any("adopted by scheduler" in line["message"] for line in store.logs(db, adopted.id))


# --- the registry misbehaving -------------------------------------------------------------------

STALLED_WRITER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO hrm_meta (key, value) VALUES ('stalled-writer', 'x')")
os.kill(os.getpid(), signal.SIGSTOP)   # stopped inside its write transaction
"""


@pytest.mark.slow
def test_a_sqlite_writer_stopped_inside_its_transaction_stalls_nobody_for_good(db, db_path, tmp_path):
    runs = [api.submit(db, "smoke", {"epochs": 40, "sleep": 0.1, "layers": 2}) for _ in range(2)]
    log = tmp_path / "scheduler.log"
    scheduler = start(db.url, log, "--max-parallel", "3", env={"HRM_LOCK_TIMEOUT": "2"})
    rogue = None
    try:
        wait_for(lambda: all(len(epoch_rows(db, r.id)) >= 3 for r in runs), timeout=60)
        rogue = subprocess.Popen([sys.executable, "-c", STALLED_WRITER, str(db_path)])
        wait_for(lambda: process_state(rogue.pid) == "T", timeout=10)
        submitter = subprocess.Popen([HRM, "--db", str(db_path), "run", "smoke", "--epochs", "3",
                                      "--no-start-scheduler"], env=subprocess_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        time.sleep(6)  # the lock stays held: writers wait, time out, log, retry or spool
        assert scheduler.poll() is None and submitter.poll() is None, "nobody crashed; the submitter still waits"
        rogue.kill()  # the stalled process dies; SQLite rolls its transaction back
        rogue.wait(10)
        out, err = submitter.communicate(timeout=90)
        assert submitter.returncode == 0 and "Traceback" not in err, err
        late = int(out.strip())
        wait_for(lambda: all(status_of(db, r) == "completed" for r in [r.id for r in runs] + [late]), timeout=120)
        assert scheduler.poll() is None
    finally:
        if rogue is not None and rogue.poll() is None:
            rogue.kill()
        stop_process(scheduler)
    for run in runs:
        assert_exact_rows(db, run.id, 40, 2)
    said = log.read_text()
    assert "locked" in said or "stalled" in said, "the stall is logged"
    assert "Traceback" not in said
    workers = "".join(worker_log(db, r.id).read_text() for r in runs)
    assert "Traceback" not in workers


@pytest.mark.slow
def test_postgresql_restarted_mid_run_the_run_goes_on_and_nothing_is_lost(pg_server, pg_url, tmp_path):  # noqa: F811
    db = open_database(pg_url)
    try:
        run = api.submit(db, "smoke", {"epochs": 60, "sleep": 0.1, "layers": 2})
        scheduler = start(db.url, tmp_path / "scheduler.log", "--stale-after", "30")
        try:
            wait_for(lambda: len(epoch_rows(db, run.id)) >= 5 * 3, timeout=60)
            pg_server.restart()
            wait_for(lambda: status_of(db, run.id) in ("completed", "failed", "lost"), timeout=120)
            assert scheduler.poll() is None, "the scheduler rode out the restart"
        finally:
            stop_process(scheduler)
        final = store.get_run(db, run.id)
        assert final.status == "completed", final.error
        assert_exact_rows(db, run.id, 60, 2)
        said = worker_log(db, run.id).read_text()
        assert "Traceback" not in said
        assert "spooled events replayed" in said, "the outage was ridden out by spooling, not by luck"
    finally:
        db.dispose()


# --- events, spool and output --------------------------------------------------------------------

def test_a_replayed_event_is_applied_once(db):
    run = api.submit(db, "smoke", {})
    store.claim_next(db, host="h", gpu="cpu")
    event = {"seq": 1, "op": "epoch", "args": {"metrics": {"val_ppl": 9.0}, "epoch": 1, "stage": 0}}
    apply_event(db, run.id, event)
    apply_event(db, run.id, event)  # its first commit succeeded unseen: the retry must not duplicate it
    assert len(store.metrics(db, run.id)) == 1
    (latest,) = store.latest_metrics(db, [run.id])[run.id]
    assert latest["count"] == 1


def test_malformed_spool_lines_are_logged_not_fatal(db, tmp_path, caplog):
    run = api.submit(db, "smoke", {})
    spool = tmp_path / SPOOL_NAME
    good = [{"seq": 1, "op": "epoch", "args": {"metrics": {"val_ppl": 9.0}, "epoch": 1}},
            {"seq": 2, "op": "layers", "args": {"per_layer": {"1": {"loss": 2.0}}, "epoch": 1}},
            {"seq": 3, "op": "log", "args": {"message": "after the damage"}}]
    spool.write_text(json.dumps(good[0]) + "\n{not json\n" + json.dumps(good[1]) + "\n[1, 2]\n"
                     + json.dumps(good[2]) + '\n{"seq": 4, "op": "epo')
    assert replay_spool(db, run.id, spool) == 3
    assert len(store.metrics(db, run.id)) == 2
    assert store.logs(db, run.id)[-1]["message"] == "after the damage"
    assert not spool.exists()
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 3


def test_events_spool_while_the_registry_is_away_and_replay_in_order(db, db_path, tmp_path):
    run = api.submit(db, "smoke", {})
    store.claim_next(db, host="h", gpu="cpu")
    spool = tmp_path / SPOOL_NAME
    emit = RegistryEmitter(db, run.id, spool_path=spool)
    emit.epoch(1, {"val_ppl": 10.0})
    with locked_out(db_path, emit) as other:  # another writer holds the lock: this one cannot write
        emit.epoch(2, {"val_ppl": 9.0})
        emit.layers(2, {1: {"loss": 1.0}})
        assert spool.exists() and len(spool.read_text().splitlines()) == 2
    emit.backoff.next_at = 0
    emit.epoch(3, {"val_ppl": 8.0})  # the registry answers again: spool first, then this event
    assert not spool.exists()
    epochs = [r["epoch"] for r in store.metrics(db, run.id, kind="epoch")]
    assert epochs == [1, 2, 3]
    other.dispose()


def test_worker_output_is_bounded_with_its_tail_kept_and_never_shipped_twice(db, tmp_path):
    run = api.submit(db, "smoke", {})
    path = tmp_path / "worker.log"
    path.write_bytes(b"".join(f"line {i:05d} é\n".encode() for i in range(20000)))  # ~270 kB
    limit = 100_000
    while ship_file(db, run.id, path, limit=limit):  # one chunk a call, until the file is shipped
        continue
    assert not append_output(db, run.id, 0, b"again"), "a second shipper of the same range is refused"
    chunks = output_since(db, run.id)
    kept = "".join(c["text"] for c in chunks)
    assert kept.endswith("line 19999 é\n")
    assert sum(c["size"] for c in chunks) <= limit + 64 * 1024
    total = store.get_run(db, run.id).output_bytes
    assert total == path.stat().st_size
    assert chunks[0]["offset"] > 0, "the oldest chunks were dropped"


# --- launching ------------------------------------------------------------------------------------

class _BrokenExecutor(Executor):
    name = "broken"

    def launch(self, run, slot):
        raise OSError(f"cannot execute the interpreter for run {run.id}")

    def poll(self, handle):
        return None

    def signal(self, handle, sig):
        """Nothing to signal: no launch ever succeeds."""

    def adopt(self, run):
        return None


def test_a_launch_failure_ends_failed_with_the_reason_never_lost(db):
    run = api.submit(db, "smoke", {})
    scheduler = Scheduler(db, Slots(), executor=_BrokenExecutor(), name="here")
    scheduler.register()
    scheduler.step()
    final = store.get_run(db, run.id)
    assert final.status == "failed"
    assert final.error == f"could not start the worker: cannot execute the interpreter for run {run.id}"


@pytest.mark.slow
def test_children_get_the_url_from_the_environment_and_the_installed_core(db, db_path, tmp_path):
    """``ps`` never shows the registry URL; a user's own ``core/`` package cannot hijack the worker."""
    hijack = tmp_path / "core"
    hijack.mkdir()
    (hijack / "__init__.py").write_text(f"open({str(tmp_path / 'hijacked')!r}, 'w').write('yes')\n")
    (hijack / "worker.py").write_text("raise SystemExit(99)\n")
    run = api.submit(db, "smoke", {"epochs": 30, "sleep": 0.05})
    pid = api.start_background_scheduler(db, idle_exit=1)
    try:
        wait_for(lambda: status_of(db, run.id) == "running")
        worker = store.get_run(db, run.id).pid
        for child in (pid, worker):
            with open(f"/proc/{child}/cmdline", "rb") as f:
                argv = f.read().decode()
            assert str(db_path) not in argv and db.url not in argv, argv
        wait_for(lambda: status_of(db, run.id) == "completed", timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited on its own (idle_exit)
            os.kill(pid, signal.SIGTERM)
    assert not (tmp_path / "hijacked").exists()


# --- waiting on a dead scheduler ------------------------------------------------------------------

@pytest.mark.slow
def test_hrm_run_wait_notices_a_dead_scheduler(db, db_path, tmp_path):
    busy = api.submit(db, "smoke", {"epochs": 2000, "sleep": 0.05})
    scheduler = start(db.url, tmp_path / "scheduler.log", "--max-parallel", "1")
    waiting = None
    try:
        wait_for(lambda: status_of(db, busy.id) == "running")
        waiting = subprocess.Popen([HRM, "--db", str(db_path), "run", "smoke", "--epochs", "2", "--wait"],
                                   env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: len(store.list_runs(db)) == 2)
        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait(10)
        os.kill(store.get_run(db, busy.id).pid, signal.SIGKILL)
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting is not None and waiting.poll() is None:
            waiting.kill()
        stop_process(scheduler)
    assert waiting.returncode == 1
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "no scheduler is alive" in error and err.endswith(error + "\n"), err
    assert "Traceback" not in err


# --- many at once ---------------------------------------------------------------------------------

SUBMITTER = """
import sys
from core import api
db = api.open_registry(sys.argv[1], create=True)
for i in range(10):
    run = api.submit(db, "smoke", {"epochs": 1, "layers": 1, "seed": int(sys.argv[2]) * 100 + i})
    print(run.id, flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_twenty_submitters_eight_workers_and_a_polling_reader(db, db_path, tmp_path):
    """Every submission present once, no run executed twice, no lost row, no "database is locked"."""
    log = tmp_path / "scheduler.log"
    scheduler = start(db.url, log, "--max-parallel", "8")
    stop_reading = threading.Event()
    reads: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        watcher = open_database(db_path, create=False)
        while not stop_reading.is_set():
            try:
                records = api.list_records(watcher)
                reads.append(len(records))
            except Exception as exc:  # noqa: BLE001 - any error is the failure this test looks for
                problems.append(repr(exc))
            time.sleep(0.2)
        watcher.dispose()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        submitters = [subprocess.Popen([sys.executable, "-c", SUBMITTER, str(db_path), str(i)], env=subprocess_env(),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                      for i in range(20)]
        ids: list[int] = []
        for proc in submitters:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            assert "database is locked" not in err and "Traceback" not in err
            ids += [int(line) for line in out.split()]
        assert len(ids) == 200 and len(set(ids)) == 200, "every submission present once"
        wait_for(lambda: all(s == "completed" for s in (r.status for r in store.list_runs(db, ids=ids))), timeout=600,
                 interval=1)
    finally:
        stop_reading.set()
        thread.join(30)
        stop_process(scheduler)
    assert not problems, problems[:3]
    assert reads and max(reads) == 200
    finals = store.list_runs(db, ids=ids)
    assert len({r.pid for r in finals}) == 200, "one worker per run: none executed twice"
    for run in finals:
        assert_exact_rows(db, run.id, 1, 1)
    everything = log.read_text() + "".join(worker_log(db, i).read_text() for i in ids)
    assert "database is locked" not in everything and "Traceback" not in everything
    assert len(store.list_runs(db, ids=ids)) == 200
    assert all(r.status == RunStatus.COMPLETED for r in finals)
    assert run_dir(db, ids[0]).exists()


def test_any_scheduler_settles_stale_runs_of_other_hosts_and_leaves_live_ones(db):
    """Heartbeats decide, not host names: a stale run of a gone host is lost, a beating one is left alone."""
    from sqlalchemy import update

    from core.registry.store import RUN

    gone, legacy, alive = (api.submit(db, "smoke", {}) for _ in range(3))
    for run in (gone, legacy, alive):
        store.claim_next(db, host="elsewhere", gpu="0")
        store.mark_running(db, run.id, pid=4242 + run.id, host="elsewhere", info={})
    now = time.time()
    with db.write() as conn:
        conn.execute(update(RUN).where(RUN.c.id == gone.id).values(heartbeat_at=now - 30))
        # from an hrm without heartbeats: only its events tell it is alive
        conn.execute(update(RUN).where(RUN.c.id == legacy.id).values(heartbeat_at=None, updated_at=now - 30))
    scheduler = Scheduler(db, Slots(), name="here", stale_after=10)
    scheduler.register()
    scheduler.check_liveness()
    assert status_of(db, gone.id) == "running", "a scheduler that just started gives workers a window to beat"
    scheduler._registry_ok_since -= 10  # as if it had been watching the registry for a whole window
    scheduler.check_liveness()
    assert status_of(db, gone.id) == "lost"
    assert "no worker heartbeat for 30 s" in store.get_run(db, gone.id).error
    assert status_of(db, legacy.id) == "running", "a run without heartbeats gets ten windows"
    assert status_of(db, alive.id) == "running"
    with db.write() as conn:
        conn.execute(update(RUN).where(RUN.c.id == legacy.id).values(updated_at=now - 101))
    scheduler.check_liveness()
    assert status_of(db, legacy.id) == "lost"


def test_wait_and_follow_give_up_only_when_no_scheduler_can_move_the_run(db):
    from core.errors import UserError

    run = api.submit(db, "smoke", {})
    with pytest.raises(UserError, match="no scheduler is alive"):
        api.wait(db, run.id, poll=0.05, dead_after=1)
    with pytest.raises(UserError, match="no scheduler is alive"):
        list(api.follow(db, run.id, poll=0.05, dead_after=1))
    pinned = api.submit(db, "smoke", {}, host="gpu-2")
    store.register_scheduler(db, host="gpu-1", pid=1, slots="cpu", stale_after=10, name="gpu-1")
    assert api.wait(db, run.id, poll=0.05, timeout=2.5, dead_after=1).status == "queued", "a live scheduler: keep waiting"
    with pytest.raises(UserError, match="no scheduler 'gpu-2' is alive"):
        api.wait(db, pinned.id, poll=0.05, dead_after=1)
