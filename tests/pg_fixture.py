"""A throwaway PostgreSQL server on loopback for tests, and a fresh database per test.

Import the fixtures into a test module (``from tests.pg_fixture import pg_server, pg_url  # noqa: F401``).
Skipped where no PostgreSQL server binaries are installed (``apt-get install postgresql``) and
``HRM_TEST_PG_URL`` is not set. ``pg_server.restart()`` restarts the server (fault tests).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running cluster: ``url(dbname)`` for SQLAlchemy, ``restart()`` / ``stop()`` for faults."""

    host_url: str
    bindir: str | None = None
    data: Path | None = None
    port: int | None = None
    as_postgres: tuple[str, ...] = ()

    def url(self, database: str = "postgres") -> str:
        return f"{self.host_url}/{database}"

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if self.bindir is None:
            pytest.skip("the server was given by HRM_TEST_PG_URL: it cannot be restarted from here")
        return subprocess.run([*self.as_postgres, f"{self.bindir}/pg_ctl", "-D", str(self.data / "db"), *args],
                              check=check, capture_output=True, text=True)

    def start(self) -> None:
        self.ctl("-w", "-l", str(self.data / "log"), "-o",
                 f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def pg_server():
    given = os.environ.get("HRM_TEST_PG_URL")
    if given:
        yield PgServer(given.rsplit("/", 1)[0])
        return
    pytest.importorskip("psycopg")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("no PostgreSQL server installed")
    bindir = os.path.dirname(bins[-1])
    data = Path(tempfile.mkdtemp(prefix="hrm-pg-"))  # pytest's tmp folders are closed to other users
    as_postgres: tuple[str, ...] = ()
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser")
        shutil.chown(data, "postgres")
        as_postgres = ("runuser", "-u", "postgres", "--")
    port = _free_port()
    subprocess.run([*as_postgres, f"{bindir}/initdb", "-D", str(data / "db"), "-A", "trust", "-U", "hrm"],
                   check=True, capture_output=True)
    server = PgServer(f"postgresql+psycopg://hrm@127.0.0.1:{port}", bindir, data, port, as_postgres)
    server.start()
    try:
        yield server
    finally:
        server.ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(data, ignore_errors=True)


_counter = itertools.count(1)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A URL to a database of its own (created empty for this test, dropped after it)."""
    import psycopg

    name = f"hrm_test_{os.getpid()}_{next(_counter)}"
    admin = pg_server.url("postgres").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass
