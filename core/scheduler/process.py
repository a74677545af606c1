"""Watching worker processes (and recognising orphans after a restart); starting them is :mod:`.spawn`'s."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from core.scheduler.spawn import PROJECT_ROOT  # noqa: F401  (re-exported)


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
    external_id: str | None = None
    """The engine's own id of the job (a Slurm job id); None for local subprocesses."""

    def exit_code(self) -> int | None:
        """The exit code once the process ended, else None. Adopted workers report -1 when gone."""
        if self.proc is not None:
            return self.proc.poll()
        return None if pid_alive(self.pid) else -1

    def signal(self, sig: int) -> None:
        """Signal the worker's whole process group (it runs in a session of its own)."""
        signal_group(self.pid, sig)


def signal_group(pid: int, sig: int) -> bool:
    """``sig`` to the process group led by ``pid`` (a worker and what it started), else to ``pid`` alone;
    False when neither could be signalled (gone, or not ours)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
    return True


def is_stopped(pid: int) -> bool:
    """True when ``pid`` is stopped (SIGSTOP, or traced): it exists but is not being scheduled."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:
        return False


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
