"""The same registry, scheduler and worker on a PostgreSQL URL (a throwaway local cluster).

Skipped where no PostgreSQL server binaries are installed (`apt-get install postgresql`), or
where ``HRM_TEST_PG_URL`` is not set and a cluster cannot be started here.
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from core import api
from core.registry import open_database, store
from tests.conftest import run_scheduler_once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    if os.environ.get("HRM_TEST_PG_URL"):
        yield os.environ["HRM_TEST_PG_URL"]
        return
    pytest.importorskip("psycopg")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("no PostgreSQL server installed")
    bindir = os.path.dirname(bins[-1])
    data = Path(tempfile.mkdtemp(prefix="hrm-pg-"))  # pytest's tmp folders are closed to other users
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser")
        shutil.chown(data, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_postgres, f"{bindir}/initdb", "-D", str(data / "db"), "-A", "trust", "-U", "hrm"],
                   check=True, capture_output=True)
    subprocess.run([*as_postgres, f"{bindir}/pg_ctl", "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://hrm@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, f"{bindir}/pg_ctl", "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def pg_db(pg_url):
    db = open_database(pg_url)
    yield db
    with db.write() as conn:  # leave an empty registry for the next test
        for table in ("metric", "latestmetric", "resulttable", "logline", "runtag", "run", "schedulerheartbeat"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    db.dispose()


def test_registry_lifecycle_on_postgres(pg_db):
    run = api.submit(pg_db, "smoke", {"epochs": 2}, tags=["pg"])
    assert store.claim_next(pg_db, host="h", gpu="0").id == run.id
    for epoch, ppl in ((1, 12.0), (2, math.nan)):
        store.append_metrics(pg_db, run.id, "epoch", {"val_ppl": ppl}, epoch=epoch)
    (latest,) = store.latest_metrics(pg_db, [run.id])[run.id]
    assert latest["min"] == 12.0 and latest["last"] is None and latest["count"] == 2
    assert math.isnan(store.metrics(pg_db, run.id)[-1]["value"])
    assert store.list_runs(pg_db, tag="pg")[0].id == run.id


@pytest.mark.slow
def test_scheduler_and_worker_on_postgres(pg_db):
    run = api.submit(pg_db, "smoke", {"epochs": 3, "layers": 2})
    result = run_scheduler_once(pg_db.url)
    assert result.returncode == 0, result.stderr
    final = store.get_run(pg_db, run.id)
    assert final.status == "completed", final.error
    assert len(store.metrics(pg_db, run.id)) == 3 * 3 + 3 * 2 + 2
