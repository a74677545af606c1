"""Fault injection on the registry itself (issue #14): real processes, a real registry file, and for
each fault an assertion of exactly what survived.

- the registry's filesystem filling up (a size-limited tmpfs as root, else ``RLIMIT_FSIZE``);
- a registry on a read-only filesystem;
- truncated, random-bytes and foreign SQLite files given to ``hrm``;
- an older-schema registry opened by 8 processes at once, and 4 ``hrm run`` at once in a fresh folder;
- a PostgreSQL registry created by 6 processes at once.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from core.registry import open_database, store
from core.registry.models import SCHEMA_VERSION
from tests.conftest import registry_bytes, subprocess_env
from tests.pg_fixture import pg_server, pg_url  # noqa: F401  (fixtures)


def hrm(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_tui", *args], capture_output=True, text=True, cwd=cwd,
                          env=subprocess_env(), timeout=timeout)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def mount_point(tmp_path):
    """A private tmpfs (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "mnt"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


# --- the filesystem fills up ------------------------------------------------------------------

_FILL = textwrap.dedent("""
    import json, resource, sys
    from core.registry import RegistryError, open_database, store
    from core.registry.emitter import RegistryEmitter
    if sys.argv[2] != "0":
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    db = open_database(sys.argv[1])
    run_id = store.create_run(db, "smoke", {}).id
    done = 0
    try:
        for epoch in range(1, 1_000_000):
            store.append_metrics(db, run_id, "layer", {layer: {"loss": epoch + layer / 100, "pad": 1.5}
                                                       for layer in range(40)}, epoch=epoch)
            done = epoch
    except Exception as exc:
        print(json.dumps({"run_id": run_id, "done": done, "error": type(exc).__name__,
                          "message": str(getattr(exc, "orig", None) or exc).splitlines()[0]}))
""")


def test_a_full_filesystem_is_one_clear_error_and_loses_nothing_committed(tmp_path):
    limit = 0
    folder = tmp_path / "fs"
    mounted = False
    if os.geteuid() == 0:
        folder.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0
    if not mounted:
        folder.mkdir(exist_ok=True)
        limit = 3 * 2**20
    try:
        db_file = folder / "runs.db"
        done = subprocess.run([sys.executable, "-c", _FILL, str(db_file), str(limit)], capture_output=True, text=True,
                              env=subprocess_env(), cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        assert outcome["done"] > 10, outcome
        assert "full" in outcome["message"].lower() or "too large" in outcome["message"].lower(), outcome
        # What survived: every event committed before the error, whole; the file passes integrity_check.
        copy = tmp_path / "copy.db"
        for suffix in ("", "-wal"):
            if Path(f"{db_file}{suffix}").exists():
                shutil.copyfile(f"{db_file}{suffix}", f"{copy}{suffix}")
        with sqlite3.connect(copy) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            epochs = conn.execute("SELECT count(DISTINCT epoch), count(*) FROM metric WHERE run_id = ?",
                                  (outcome["run_id"],)).fetchone()
        conn.close()
        assert epochs == (outcome["done"], outcome["done"] * 80), "no event lost, none half-written"
        # hrm still lists the registry on the full filesystem.
        listed = hrm("--db", str(db_file), "ls", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == [outcome["run_id"]]
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# --- a read-only filesystem -------------------------------------------------------------------

@pytest.mark.slow
def test_a_registry_on_a_read_only_filesystem_is_listed_and_never_written(mount_point, tmp_path):
    db_file = mount_point / "runs.db"
    db = open_database(db_file)
    for seed in (1, 2):
        store.create_run(db, "smoke", {"seed": seed})
    db.dispose()
    before = {p.name: p.read_bytes() for p in mount_point.iterdir()}
    assert subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], capture_output=True).returncode == 0
    listed = hrm("--db", str(db_file), "ls", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == [2, 1]
    table = hrm("--db", str(db_file), "ls", cwd=tmp_path)
    assert table.returncode == 0 and "smoke" in table.stdout, table.stderr
    shown = hrm("--db", str(db_file), "show", "1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    refused = hrm("--db", str(db_file), "run", "smoke", "--no-start-scheduler", cwd=tmp_path)
    assert refused.returncode == 1
    assert "read-only" in one_error_line(refused)
    assert {p.name: p.read_bytes() for p in mount_point.iterdir()} == before


# --- files that are not registries, given to hrm ----------------------------------------------

@pytest.mark.slow
def test_hrm_refuses_truncated_random_and_foreign_files_without_changing_them(tmp_path):
    data = registry_bytes(tmp_path / "good.db", runs=100, padding=800)
    files = {"truncated.db": data[: len(data) // 2], "random.db": os.urandom(64 * 1024)}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    files["foreign.db"] = foreign.read_bytes()
    for name, content in files.items():
        for args in (("ls",), ("ls", "--json"), ("run", "smoke", "--no-start-scheduler"), ("scheduler", "--once")):
            done = hrm("--db", str(tmp_path / name), *args, cwd=tmp_path)
            assert done.returncode == 1, (name, args, done.stderr)
            one_error_line(done)
            assert (tmp_path / name).read_bytes() == content, (name, args)
        wal = tmp_path / f"{name}-wal"
        assert not wal.exists() or wal.stat().st_size == 0, "nothing was ever written to it"
    with sqlite3.connect(foreign) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


# --- many processes at once -------------------------------------------------------------------

_OPEN = textwrap.dedent("""
    import sys
    from core.registry import open_database, store
    db = open_database(sys.argv[1])
    print(len(store.list_runs(db)))
""")


def _make_v1_registry(db_path: Path, runs: int) -> None:
    db = open_database(db_path)
    for i in range(runs):
        run = store.create_run(db, "smoke", {"seed": i}, tags=["old"])
        store.append_metrics(db, run.id, "epoch", {"val_ppl": 10.0 + i}, epoch=1, total=1)
    with db.engine.begin() as conn:  # back to schema v1: no tags table, no retry_of, no later columns or stamps
        conn.execute(text("DROP TABLE runtag"))
        conn.execute(text("ALTER TABLE run DROP COLUMN retry_of"))
        conn.execute(text("ALTER TABLE run DROP COLUMN note"))
        conn.execute(text("DELETE FROM hrm_meta WHERE key NOT IN ('schema_version', 'created_by')"))
        conn.execute(text("UPDATE hrm_meta SET value = '1' WHERE key = 'schema_version'"))
    db.dispose()


@pytest.mark.slow
def test_an_older_registry_opened_by_8_processes_at_once_is_migrated_once(tmp_path):
    db_path = tmp_path / "old.db"
    _make_v1_registry(db_path, 25)
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN, str(db_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=tmp_path) for _ in range(8)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in results]
    assert [out.strip() for out, _ in results] == ["25"] * 8
    db = open_database(db_path, create=False)
    with db.read() as conn:
        meta = dict(conn.execute(text("SELECT key, value FROM hrm_meta")).all())
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert int(meta["schema_version"]) == SCHEMA_VERSION
    assert len(meta["upgrade_log"].split(";")) == 1, meta["upgrade_log"]
    runs = store.list_runs(db)
    assert sorted(r.config["seed"] for r in runs) == list(range(25))
    assert all(r.note is None and r.retry_of is None for r in runs)
    latest = store.latest_metrics(db, [r.id for r in runs])
    assert sorted(rows[0]["last"] for rows in latest.values()) == [10.0 + i for i in range(25)]
    db.dispose()


@pytest.mark.slow
def test_four_hrm_run_at_once_in_a_fresh_folder_all_succeed(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "hrm_tui", "run", "smoke", "--epochs", "1", "--seed", str(i),
                               "--no-start-scheduler"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env(), cwd=tmp_path) for i in range(4)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    ids = sorted(int(out.strip().split()[-1]) for out, _ in results)
    assert ids == [1, 2, 3, 4]
    db = open_database(tmp_path / "runs.db", create=False)
    assert sorted(r.config["seed"] for r in store.list_runs(db)) == [0, 1, 2, 3]
    db.dispose()


@pytest.mark.slow
def test_a_fresh_postgresql_registry_created_by_6_processes_at_once(pg_url):  # noqa: F811
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN, pg_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=subprocess_env()) for _ in range(6)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in results]
    db = open_database(pg_url, create=False)
    with db.read() as conn:
        meta = dict(conn.execute(text("SELECT key, value FROM hrm_meta")).all())
    assert int(meta["schema_version"]) == SCHEMA_VERSION and uuid.UUID(meta["registry_id"])
    db.dispose()
