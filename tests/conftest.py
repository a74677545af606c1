"""Shared fixtures: a real SQLite registry file per test, and helpers to drive real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

# Before torch loads OpenMP: waiting threads sleep instead of spinning. On shared cores a spinning
# 2-thread reproduction ran 10x slower (86 s vs > 14 min for 004 Exp 5 under load); results are unchanged.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from core.registry import open_database  # noqa: E402
from core.registry import store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# A background job of a non-interactive shell starts with SIGINT ignored, and an ignored signal is inherited:
# every `hrm follow` the tests start would then ignore their Ctrl-C. The tests' children get the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_report_header(config) -> list[str]:
    """Say what this invocation covers, so a user knows what a green run means."""
    markexpr = config.getoption("markexpr") or ""
    if markexpr.strip() == "not slow":
        return ["hrm-tui fast suite (a few CPU-minutes): registry, CLI, dashboard, compare/report and every "
                "experiment on tiny configs. Not here: the reproductions of the published numbers, the real-model "
                "and the long scheduler/worker integration tests: python -m pytest -m slow"]
    return [f"hrm-tui tests, marker expression: {markexpr or '(none: every test, slow reproductions included)'}"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test: on shared cores OpenMP spinning made small tests 10-20x slower.

    Experiments that need a thread count set their own (``cpu_threads``) and restore it after.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def isolate_environment(monkeypatch, tmp_path):
    """Keep a developer's HRM_DB or GPU out of the tests, and run them in a scratch folder."""
    monkeypatch.delenv("HRM_DB", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def db(db_path):
    database = open_database(db_path, create=True)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def module_registry(tmp_path_factory):
    """(path, database) of one registry file shared by a module's tests: for modules whose runs are real
    and slow to make, so they are made once."""
    path = tmp_path_factory.mktemp("registry") / "runs.db"
    database = open_database(path, create=True)
    yield path, database
    database.dispose()


def scheduler_cmd(db_url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "core.scheduler", "--db", db_url, *extra]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_scheduler_once(db_url: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(scheduler_cmd(db_url, "--once", *extra), env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)


def start_scheduler(db_url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(scheduler_cmd(db_url, *extra), env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop_process(proc: subprocess.Popen) -> str:
    """SIGTERM, 20 s to exit cleanly, then SIGKILL: a scheduler under test never outlives its test.
    Returns what it wrote to a piped stderr ("" when not piped)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.stderr.read() if proc.stderr else ""


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@contextmanager
def locked_out(db_path: Path, emitter):
    """Inside: another writer holds the registry's write lock, and ``emitter`` writes through a fresh engine
    (yielded; the caller disposes it) that waits 0.3 s for the lock, so its events go to its spool."""
    os.environ["HRM_LOCK_TIMEOUT"] = "0.3"
    try:
        blocker = open_database(db_path)
        with blocker.write():
            emitter.db = open_database(db_path)  # a fresh engine reads the short lock timeout
            yield emitter.db
        blocker.dispose()
    finally:
        del os.environ["HRM_LOCK_TIMEOUT"]


def registry_bytes(path: Path, runs: int, padding: int) -> bytes:
    """The bytes of a real registry file of ``runs`` smoke runs (configs ``padding`` characters long),
    its WAL checkpointed into it: the raw material for truncated or damaged copies."""
    db = open_database(path)
    for _ in range(runs):
        store.create_run(db, "smoke", {"padding": "x" * padding})
    with db.engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path.read_bytes()


def status_of(db, run_id: int) -> str:
    return store.get_run(db, run_id).status
