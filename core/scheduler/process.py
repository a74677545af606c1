"""Launching and watching worker processes (and recognising orphans after a restart)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.paths import worker_log

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class WorkerHandle:
    """A worker we launched (``proc``) or adopted after a scheduler restart (``proc`` is None)."""

    run_id: int
    pid: int
    slot: str
    proc: subprocess.Popen | None = None
    term_sent_at: float | None = None
    killed: bool = False
    log_path: Path | None = field(default=None)

    def exit_code(self) -> int | None:
        """The exit code once the process ended, else None. Adopted workers report -1 when gone."""
        if self.proc is not None:
            return self.proc.poll()
        return None if pid_alive(self.pid) else -1

    def signal(self, sig: int) -> None:
        """Signal the worker's whole process group (it runs in a session of its own)."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def launch_worker(db_url: str, run_id: int, slot: str) -> WorkerHandle:
    """Start ``python -m core.worker`` for a claimed run, pinned to ``slot`` through CUDA_VISIBLE_DEVICES."""
    log_path = worker_log(db_url, run_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = "" if slot == "cpu" else slot
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.worker", "--db", db_url, str(run_id)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=os.getcwd(), start_new_session=True,
        )
    return WorkerHandle(run_id=run_id, pid=proc.pid, slot=slot, proc=proc, log_path=log_path)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def is_worker_of(pid: int, run_id: int) -> bool:
    """Guard against pid reuse: is ``pid`` really ``core.worker`` for ``run_id``?"""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid
    return b"core.worker" in args and str(run_id).encode() in args


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"
