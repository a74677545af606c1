"""Registry integrity (issue #14): ids never reused, run folders per registry, files never hijacked,
foreign files never changed, bad URLs and damaged entries as one line, credentials never shown,
durability and lock waits as documented. Real SQLite files throughout."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from core import paths
from core.registry import RegistryError, open_database, store
from core.registry.db import make_engine
from core.registry.decode import DAMAGED_KEY, decode_json_list, decode_json_object, json_object_or_damaged
from core.registry.url import redact_url
from tests.conftest import registry_bytes, subprocess_env


# --- run ids and run folders ------------------------------------------------------------------

def test_deleting_the_newest_run_never_hands_its_id_out_again(db):
    first = store.create_run(db, "smoke", {})
    newest = store.create_run(db, "smoke", {})
    log = paths.open_worker_log(db, newest.id)
    log.write(b"traceback of the deleted run\n")
    log.close()
    assert store.delete_run(db, newest.id)
    assert not paths.run_dir(db, newest.id).exists(), "delete removes the run's folder"
    again = store.create_run(db, "smoke", {})
    assert again.id == newest.id + 1 and again.id != first.id
    assert not paths.worker_log(db, again.id).exists()
    # Still true for a process that opens the registry afresh, and after deleting every run.
    store.delete_run(db, again.id)
    store.delete_run(db, first.id)
    reopened = open_database(db.path)
    assert store.create_run(reopened, "smoke", {}).id == again.id + 1
    reopened.dispose()


def test_a_script_tracked_run_never_takes_a_deleted_id_either(db):
    from core.registry.tracked import create_tracked_run

    deleted = store.create_run(db, "smoke", {})
    assert store.delete_run(db, deleted.id)
    tracked = create_tracked_run(db, "script", {"lr": 0.1}, pid=os.getpid(), info={}, tags=["a", "a", "b"])
    assert tracked == deleted.id + 1
    assert store.tags_of(db, [tracked]) == {tracked: ["a", "b"]}
    assert store.delete_run(db, tracked)
    assert store.create_run(db, "smoke", {}).id == tracked + 1  # the tracked insert raised the mark too


def test_two_registries_in_one_folder_never_share_run_folders(tmp_path):
    a, b = open_database(tmp_path / "a.db"), open_database(tmp_path / "b.db")
    run_a, run_b = store.create_run(a, "smoke", {}), store.create_run(b, "smoke", {})
    assert run_a.id == run_b.id == 1
    assert paths.worker_log(a, 1) != paths.worker_log(b, 1)
    assert paths.worker_log(a, 1).parent.parent.parent == tmp_path / "hrm-runs"
    assert paths.scheduler_log(a) != paths.scheduler_log(b)
    # The URL string resolves to the same folder as the opened registry (what child processes get).
    assert paths.worker_log(a.url, 1) == paths.worker_log(a, 1)
    for db in (a, b):
        db.dispose()


def test_a_registry_created_again_under_the_same_name_gets_new_folders(tmp_path):
    first = open_database(tmp_path / "runs.db")
    store.create_run(first, "smoke", {})
    old_log = paths.worker_log(first, 1)
    first.dispose()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"runs.db{suffix}").unlink(missing_ok=True)
    second = open_database(tmp_path / "runs.db")
    assert paths.worker_log(second, 1) != old_log
    second.dispose()


def test_a_symlink_planted_at_worker_log_is_never_followed(db, tmp_path):
    run = store.create_run(db, "smoke", {})
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    log_path = paths.worker_log(db, run.id)
    log_path.parent.mkdir(parents=True)
    log_path.symlink_to(victim)
    with pytest.raises(OSError):
        paths.open_worker_log(db, run.id)
    assert victim.read_text() == "precious\n"
    assert paths.tail(log_path) == "", "reading a log never follows a planted link either"
    # A link in place of the run folder itself is refused too.
    other = store.create_run(db, "smoke", {})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    paths.run_dir(db, other.id).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OSError):
        paths.open_worker_log(db, other.id)
    assert list(elsewhere.iterdir()) == []


def test_an_older_registry_keeps_reading_its_flat_run_folders(db_path):
    db = open_database(db_path)
    old = store.create_run(db, "smoke", {})
    with db.engine.begin() as conn:  # a registry from before registry ids: no stamp in hrm_meta
        conn.execute(text("DELETE FROM hrm_meta WHERE key NOT IN ('schema_version', 'created_by')"))
        conn.execute(text("UPDATE hrm_meta SET value = '2' WHERE key = 'schema_version'"))
    db.dispose()
    flat = db_path.parent / "hrm-runs" / str(old.id)
    flat.mkdir(parents=True)
    (flat / "worker.log").write_text("old log\n")
    upgraded = open_database(db_path)
    assert paths.worker_log(upgraded, old.id) == flat / "worker.log"
    new = store.create_run(upgraded, "smoke", {})
    assert paths.worker_log(upgraded, new.id).parent.parent.name.startswith("runs-")
    upgraded.dispose()


# --- files that are not (usable) registries ---------------------------------------------------

def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_foreign_sqlite_file_is_refused_and_left_exactly_as_it_was(tmp_path):
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()
    before = _snapshot(tmp_path)
    for create in (True, False):
        with pytest.raises(RegistryError, match="not an hrm registry"):
            open_database(other, create=create)
    assert _snapshot(tmp_path) == before, "no WAL switch, no lock file, no change"
    with sqlite3.connect(other) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_truncated_and_random_files_are_refused_and_never_overwritten(tmp_path, db_path):
    whole = registry_bytes(db_path, runs=200, padding=500)
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(whole[: len(whole) // 3])
    random_file = tmp_path / "random.db"
    random_file.write_bytes(os.urandom(50_000))
    tiny = tmp_path / "tiny.db"
    tiny.write_bytes(whole[:50])
    for bad, reason in ((truncated, "truncated"), (random_file, "not a database"), (tiny, "truncated")):
        before = bad.read_bytes()
        with pytest.raises(RegistryError, match=reason) as info:
            open_database(bad)
        assert "\n" not in str(info.value)
        assert bad.read_bytes() == before
        assert not (tmp_path / f"{bad.name}-wal").exists()


def test_a_damaged_schema_version_is_one_line(db_path):
    db = open_database(db_path)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE hrm_meta SET value = 'three-ish' WHERE key = 'schema_version'"))
    db.dispose()
    with pytest.raises(RegistryError, match="damaged schema version 'three-ish'") as info:
        open_database(db_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", ["://", "postgresql://[::1", "nosuchdriver://x/y", "   "])
def test_malformed_urls_are_one_line(bad):
    with pytest.raises(RegistryError) as info:
        open_database(bad)
    assert "\n" not in str(info.value)


def test_a_file_name_too_long_is_one_line(tmp_path):
    with pytest.raises(RegistryError, match="too long") as info:
        open_database(tmp_path / ("r" * 300 + ".db"))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_cli_bad_db_values_print_one_error_line_and_exit_1(tmp_path):
    for bad in ("://", "postgresql://[::1", str(tmp_path / ("r" * 300 + ".db"))):
        done = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", bad, "ls"], capture_output=True, text=True,
                              env=subprocess_env(), cwd=tmp_path, timeout=120)
        assert done.returncode == 1, (bad, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (bad, done.stderr)
        assert "Traceback" not in done.stderr


def test_an_in_memory_registry_is_refused_where_another_process_must_see_it():
    db = open_database("sqlite:///:memory:")
    run = store.create_run(db, "smoke", {})
    assert store.get_run(db, run.id).experiment == "smoke", "in-process use still works"
    with pytest.raises(RegistryError, match="in-memory registry"):
        paths.scheduler_log(db)
    with pytest.raises(RegistryError, match="in-memory registry"):
        paths.open_worker_log(db, run.id)
    db.dispose()


def test_a_read_only_registry_file_can_still_be_listed(db_path):
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root (the read-only-mount case is in test_faults_registry)")
    db = open_database(db_path)
    store.create_run(db, "smoke", {"epochs": 3}, tags=["keep"])
    db.dispose()
    before = db_path.read_bytes()
    if subprocess.run(["chattr", "+i", str(db_path)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable flag")
    try:
        ro = open_database(db_path, create=False)
        assert ro.read_only
        assert [r.id for r in store.list_runs(ro)] == [1]
        with pytest.raises(RegistryError, match="read-only"):
            store.create_run(ro, "smoke", {})
        ro.dispose()
    finally:
        subprocess.run(["chattr", "-i", str(db_path)], check=True)
    assert db_path.read_bytes() == before


# --- tolerant reads of damaged JSON -----------------------------------------------------------

def test_damaged_json_columns_decode_to_a_marked_empty_value():
    assert decode_json_object('{"epochs": 3}') == ({"epochs": 3}, None)
    assert decode_json_object(None) == ({}, None)
    for damaged in ('{"epochs": 3', "[1, 2]", "\x00\xff", "null"):
        value, problem = decode_json_object(damaged)
        assert value == {} and problem.startswith("damaged JSON")
    assert decode_json_list("[1]") == ([1], None)
    assert decode_json_list("{}")[1] is not None
    assert DAMAGED_KEY in json_object_or_damaged("{oops")


def test_one_corrupt_config_row_does_not_hide_the_others(db):
    for seed in (1, 2, 3):
        store.create_run(db, "smoke", {"seed": seed})
    with db.write() as conn:
        conn.execute(text("UPDATE run SET config_json = '{\"seed\": 2, broken' WHERE id = 2"))
    runs = store.list_runs(db)
    assert [r.id for r in runs] == [3, 2, 1]
    assert runs[0].config == {"seed": 3}
    assert DAMAGED_KEY in runs[1].config
    assert store.get_run(db, 2) is not None


# --- credentials ------------------------------------------------------------------------------

def test_passwords_are_redacted_wherever_a_url_is_shown():
    assert redact_url("postgresql+psycopg://alice:s3cret@db.example:5432/runs") == \
        "postgresql+psycopg://alice:***@db.example:5432/runs"
    assert redact_url("postgresql://bob:p@ss:w0rd@host/db") == "postgresql://bob:***@host/db"
    assert redact_url("postgresql://host/db?user=x&password=hunter2&sslmode=require") == \
        "postgresql://host/db?user=x&password=***&sslmode=require"
    assert redact_url("postgresql://[::1") == "postgresql://[::1"
    assert redact_url("sqlite:////tmp/runs.db") == "sqlite:////tmp/runs.db"
    with pytest.raises(RegistryError) as info:
        open_database("postgresql+psycopg://alice:s3cret@[::1")
    assert "s3cret" not in str(info.value)


def test_password_from_the_environment_and_pgpass_untouched(monkeypatch):
    pytest.importorskip("psycopg")
    monkeypatch.delenv("HRM_DB_PASSWORD", raising=False)
    assert make_engine("postgresql+psycopg://alice@db.example/runs").url.password is None, \
        "no password in the URL or the environment: libpq reads PGPASSFILE / ~/.pgpass"
    monkeypatch.setenv("HRM_DB_PASSWORD", "from-env")
    assert make_engine("postgresql+psycopg://alice@db.example/runs").url.password == "from-env"
    assert make_engine("postgresql+psycopg://alice:own@db.example/runs").url.password == "own"


# --- durability, WAL size and lock waits ------------------------------------------------------

@pytest.mark.parametrize(("mode", "level"), [("normal", 1), ("full", 2), (None, 1)])
def test_durability_setting(db_path, monkeypatch, mode, level):
    if mode is None:
        monkeypatch.delenv("HRM_DURABILITY", raising=False)
    else:
        monkeypatch.setenv("HRM_DURABILITY", mode)
    db = open_database(db_path)
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
    db.dispose()


def test_a_bad_durability_setting_is_one_line(db_path, monkeypatch):
    monkeypatch.setenv("HRM_DURABILITY", "paranoid")
    with pytest.raises(RegistryError, match="HRM_DURABILITY"):
        open_database(db_path)
    assert not db_path.exists()


_POLLING_READER = """
import sqlite3, sys, time
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
while True:  # a dashboard that polls all the time: some read transaction is nearly always open
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM metric WHERE run_id = 1 AND id > 0").fetchall()
    time.sleep(0.01)
    conn.execute("COMMIT")
"""


@pytest.mark.slow
def test_the_wal_stays_small_under_a_burst_with_polling_readers(db_path, monkeypatch):
    """With three readers always overlapping, SQLite's own (passive) checkpoints never reset the WAL:
    1,500 events grew it to ~49 MB (hundreds of MB in longer bursts); hrm truncates it past 4 MB."""
    from core.registry import db as db_module

    monkeypatch.setattr(db_module, "WAL_TRUNCATE_ABOVE", 4 * 2**20)
    writer = open_database(db_path)
    run = store.create_run(writer, "smoke", {})
    readers = [subprocess.Popen([sys.executable, "-c", _POLLING_READER, str(db_path)]) for _ in range(3)]
    wal, peak = db_path.with_name(db_path.name + "-wal"), 0
    try:
        time.sleep(0.5)
        for epoch in range(1, 1501):
            store.append_metrics(writer, run.id, "layer", {layer: {"loss": 1.0, "norm": 2.0} for layer in range(64)},
                                 epoch=epoch)
            if epoch % 25 == 0:
                peak = max(peak, wal.stat().st_size)
    finally:
        for reader in readers:
            reader.kill()
            reader.wait()
    assert len(store.metrics(writer, run.id)) == 1500 * 128
    assert peak < 16 * 2**20, f"WAL peaked at {peak / 2**20:.1f} MB"
    writer.dispose()


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO hrm_meta (key, value) VALUES ('held', 'yes')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def _hold_write_lock(db_path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(db_path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_writer_stuck_in_its_transaction_gives_one_line_not_a_hang(db_path, monkeypatch, caplog):
    monkeypatch.setenv("HRM_LOCK_TIMEOUT", "3")
    db = open_database(db_path)
    holder = _hold_write_lock(db_path, 60)
    try:
        started = time.monotonic()
        with pytest.raises(RegistryError, match="stayed locked by another writer") as info:
            store.create_run(db, "smoke", {})
        assert 2.5 < time.monotonic() - started < 15
        assert "\n" not in str(info.value)
        assert "still waiting" in caplog.text, "the wait is logged while it lasts"
    finally:
        holder.kill()
        holder.wait()
    assert store.create_run(db, "smoke", {}).id == 1, "nothing half-written; the lock is free again"
    db.dispose()


def test_write_retrying_rides_out_a_lock_held_past_the_bounded_wait(db_path, monkeypatch):
    monkeypatch.setenv("HRM_LOCK_TIMEOUT", "1")
    db = open_database(db_path)
    run = store.create_run(db, "smoke", {})
    holder = _hold_write_lock(db_path, 4)
    try:
        started = time.monotonic()
        db.write_retrying(lambda conn: conn.execute(
            text("UPDATE run SET note = 'after the stall' WHERE id = :id"), {"id": run.id}), what="note")
        assert time.monotonic() - started > 2
    finally:
        holder.wait(30)
    assert store.get_run(db, run.id).note == "after the stall"
    db.dispose()


def test_the_hot_path_survives_a_retry_and_applies_an_event_once(db):
    run = store.create_run(db, "smoke", {})
    for _ in range(2):  # the same numbered event twice (a spool replay after an unseen commit)
        store.append_metrics(db, run.id, "epoch", {"val_ppl": 9.0}, epoch=1, total=2, seq=1)
        store.append_metrics(db, run.id, "layer", {1: {"loss": 2.0}}, epoch=1, seq=2)
    assert [(r["kind"], r["value"]) for r in store.metrics(db, run.id)] == [("epoch", 9.0), ("layer", 2.0)]
    (latest,) = store.latest_metrics(db, [run.id])[run.id]
    assert latest["count"] == 1
    view = store.get_run(db, run.id)
    assert (view.epoch, view.total_epochs) == (1, 2)


def test_damaged_info_and_table_rows_do_not_break_show(db):
    run = store.create_run(db, "smoke", {})
    store.add_table(db, run.id, "thresholds", [{"t": 0.5, "acc": 91.0}])
    store.add_table(db, run.id, "broken", [{"t": 0.9}])
    with db.write() as conn:
        conn.execute(text("UPDATE run SET info_json = '{not json' WHERE id = :id"), {"id": run.id})
        conn.execute(text("UPDATE resulttable SET rows_json = '[{oops' WHERE name = 'broken'"))
    tables = store.result_tables(db, run.id)
    assert tables[0]["rows"] == [{"t": 0.5, "acc": 91.0}] and "damaged" not in tables[0]
    assert tables[1]["rows"] == [] and tables[1]["damaged"].startswith("damaged JSON")
    assert DAMAGED_KEY in store.get_run(db, run.id).info
    store.merge_info(db, run.id, {"params": 12})  # a worker's next info event still lands
    assert store.get_run(db, run.id).info["params"] == 12


@pytest.mark.slow
def test_cli_refuses_an_in_memory_registry_and_says_why(tmp_path):
    for args in (("run", "smoke", "--wait"), ("run", "smoke", "--no-start-scheduler"), ("scheduler", "--once")):
        done = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", "sqlite:///:memory:", *args], capture_output=True,
                              text=True, env=subprocess_env(), cwd=tmp_path, timeout=120)
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "in-memory registry" in lines[0] and "one process" in lines[0], (args, done.stderr)
    assert not list(tmp_path.iterdir()), "no detached scheduler, no files"
