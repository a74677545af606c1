"""Where workers run: the :class:`Executor` interface and the local one (subprocesses on this host).

The scheduler claims runs and decides slots; an executor only starts, watches and stops the
worker of one claimed run. Another engine (Slurm, Ray) implements the same five methods; the
worker it starts is always ``core.worker`` with the registry URL in ``HRM_DB_URL``, and writes
its own status, events, heartbeat and output into the registry, so the scheduler's liveness rules
(a stale heartbeat is ``lost``) hold for every engine.
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from collections.abc import Mapping

from core.paths import open_worker_log, worker_log
from core.scheduler.process import WorkerHandle, is_stopped, is_worker_of, pid_alive, signal_group
from core.scheduler.spawn import spawn


class LaunchDeferred(OSError):
    """Raised by :meth:`Executor.launch` when the engine cannot take the run now (a Slurm controller
    that does not answer): the scheduler puts the run back in the queue instead of failing it."""


class Executor(ABC):
    """Starts, watches and stops workers for one scheduler."""

    name = "abstract"

    def accepting(self) -> bool:
        """False while the engine cannot take runs (after a :class:`LaunchDeferred`): nothing is claimed."""
        return True

    @abstractmethod
    def launch(self, run, slot: str) -> WorkerHandle:
        """Start the worker of a claimed run on ``slot`` (a GPU index or ``cpu``). Raises OSError if it cannot."""

    @abstractmethod
    def poll(self, handle: WorkerHandle) -> int | None:
        """The worker's exit code once it ended (negative: killed by that signal; -1 unknown), else None."""

    @abstractmethod
    def signal(self, handle: WorkerHandle, sig: int) -> None:
        """Deliver ``sig`` to the worker (and whatever it started)."""

    @abstractmethod
    def adopt(self, run) -> WorkerHandle | None:
        """A handle on the live worker of ``run`` left by a previous scheduler, or None if it is gone."""

    def cancel(self, handle: WorkerHandle, *, force: bool = False) -> None:
        """Ask the worker to stop (SIGTERM: it records ``cancelled``), or kill it (``force``)."""
        self.signal(handle, signal.SIGKILL if force else signal.SIGTERM)

    def is_stopped(self, handle: WorkerHandle) -> bool:
        """True when the worker exists but is not being scheduled (SIGSTOP): said in the lost reason."""
        return False


class LocalExecutor(Executor):
    """Workers as subprocesses of this host, pinned to their slot through ``CUDA_VISIBLE_DEVICES``."""

    name = "local"

    def __init__(self, db, *, env: Mapping[str, str] | None = None) -> None:
        self.db = db
        self.env = dict(env or {})

    def launch(self, run, slot: str) -> WorkerHandle:
        env = {**self.env, "CUDA_VISIBLE_DEVICES": "" if slot == "cpu" else slot}
        with open_worker_log(self.db, run.id) as log:
            proc = spawn("core.worker", [str(run.id)], db_url=self.db.url, log=log, env=env)
        return WorkerHandle(run_id=run.id, pid=proc.pid, slot=slot, proc=proc, log_path=worker_log(self.db, run.id))

    def poll(self, handle: WorkerHandle) -> int | None:
        return handle.exit_code()

    def signal(self, handle: WorkerHandle, sig: int) -> None:
        handle.signal(sig)

    def adopt(self, run) -> WorkerHandle | None:
        if run.pid is None or not is_worker_of(run.pid, run.id):
            return None
        return WorkerHandle(run_id=run.id, pid=run.pid, slot=run.gpu or "cpu", log_path=worker_log(self.db, run.id))

    def is_stopped(self, handle: WorkerHandle) -> bool:
        return pid_alive(handle.pid) and is_stopped(handle.pid)

    def reap_quietly(self, handle: WorkerHandle, timeout: float = 5.0) -> int | None:
        """Wait (bounded) for a killed worker to exit, so that it leaves no zombie."""
        if handle.proc is not None:
            try:
                return handle.proc.wait(timeout)
            except Exception:  # noqa: BLE001 - TimeoutExpired: leave it to the next reap
                return None
        return None if pid_alive(handle.pid) else -1


def kill_group(pid: int) -> None:
    """SIGKILL a worker's process group (works on stopped processes too)."""
    signal_group(pid, signal.SIGKILL)
