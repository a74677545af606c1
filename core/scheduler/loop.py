"""The scheduler: claim queued runs, launch workers on free GPU slots, reap them, act on cancels.

Poll → reap → cancel → claim/launch, every ``poll`` seconds, with a heartbeat row so that
``hrm run`` and the dashboard know a scheduler is alive. At start-up it reconciles runs left
``starting``/``running`` by a previous scheduler: live workers are adopted and watched, dead
ones are marked ``lost``. The worker writes its own final status; the scheduler only fills
in what a worker could not say (killed by a signal, vanished).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from core.paths import tail
from core.registry import RunStatus, store
from core.registry.db import Database
from core.scheduler.process import WorkerHandle, is_worker_of, launch_worker, signal_name

log = logging.getLogger("hrm.scheduler")

HEARTBEAT_STALE_AFTER = 10.0
"""Seconds without a beat after which a scheduler counts as gone."""


class SchedulerAlreadyRunning(RuntimeError):
    """Another live scheduler holds this registry."""


@dataclass(frozen=True)
class Slots:
    """GPU slots: each of ``gpus`` takes up to ``pack`` runs; no GPU means ``cpu`` slots."""

    gpus: tuple[str, ...] = ()
    pack: int = 1
    max_parallel: int = 1

    def capacity(self) -> dict[str, int]:
        if not self.gpus:
            return {"cpu": self.max_parallel}
        return {gpu: self.pack for gpu in self.gpus}

    def describe(self) -> str:
        if not self.gpus:
            return f"cpu×{self.max_parallel}"
        return ",".join(self.gpus) + (f" (pack {self.pack})" if self.pack > 1 else "") + f", max {self.max_parallel}"


def detect_gpus() -> tuple[str, ...]:
    """GPU indices from CUDA_VISIBLE_DEVICES or ``nvidia-smi``, without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return tuple(g for g in visible.split(",") if g.strip())
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.splitlines() if line.strip())


class Scheduler:
    """One scheduler process over one registry."""

    def __init__(
        self,
        db: Database,
        slots: Slots,
        *,
        poll: float = 0.5,
        grace: float = 10.0,
        once: bool = False,
        idle_exit: float | None = None,
    ) -> None:
        self.db = db
        self.slots = slots
        self.poll = poll
        self.grace = grace
        self.once = once
        self.idle_exit = idle_exit
        self.host = socket.gethostname()
        self.workers: dict[int, WorkerHandle] = {}
        self.scheduler_id: int | None = None
        self._stop = False

    # --- lifecycle ----------------------------------------------------------------------------
    def run(self) -> None:
        """Run until stopped (SIGTERM/SIGINT), or until the queue drains with ``once``/``idle_exit``."""
        self.scheduler_id = store.register_scheduler(
            self.db, host=self.host, pid=os.getpid(), slots=self.slots.describe(), stale_after=HEARTBEAT_STALE_AFTER)
        if self.scheduler_id is None:
            live = store.live_schedulers(self.db, stale_after=HEARTBEAT_STALE_AFTER)
            who = f"pid {live[0]['pid']} on {live[0]['host']}" if live else "another process"
            raise SchedulerAlreadyRunning(f"a scheduler is already running for this registry ({who})")
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.reconcile()
            idle_since = time.monotonic()
            last_beat = 0.0
            while not self._stop:
                if time.monotonic() - last_beat > 1.0:
                    store.beat(self.db, self.scheduler_id)
                    last_beat = time.monotonic()
                self.step()
                if self.workers:
                    idle_since = time.monotonic()
                elif not self._has_queued():
                    if self.once:
                        break
                    if self.idle_exit is not None and time.monotonic() - idle_since > self.idle_exit:
                        log.info("idle for %.0f s: exiting", self.idle_exit)
                        break
                else:
                    idle_since = time.monotonic()
                time.sleep(self.poll)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            store.unregister_scheduler(self.db, self.scheduler_id)

    def _request_stop(self, signum, frame) -> None:
        """Stop scheduling; running workers keep going and are adopted by the next scheduler."""
        self._stop = True

    def step(self) -> None:
        """One pass: reap finished workers, act on cancel requests, fill free slots."""
        self.reap()
        self.handle_cancels()
        self.launch_ready()

    # --- reconcile ----------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Adopt live workers left by a dead scheduler; mark the dead ones lost."""
        for run in store.active_runs(self.db):
            if run.host not in (None, self.host):
                continue  # another machine's run: its own scheduler reconciles it
            if run.pid is not None and is_worker_of(run.pid, run.id):
                log.info("adopting run %s (pid %s)", run.id, run.pid)
                self.workers[run.id] = WorkerHandle(run_id=run.id, pid=run.pid, slot=run.gpu or "cpu")
                store.add_log(self.db, run.id, f"adopted by scheduler pid {os.getpid()}", source="scheduler")
            else:
                reason = (f"worker pid {run.pid} was gone when the scheduler restarted" if run.pid
                          else "the scheduler died before the worker started")
                store.finish_run(self.db, run.id, RunStatus.LOST, error=reason)
                store.add_log(self.db, run.id, f"lost: {reason}", source="scheduler")

    # --- the three duties ---------------------------------------------------------------------
    def reap(self) -> None:
        for run_id, handle in list(self.workers.items()):
            code = handle.exit_code()
            if code is None:
                continue
            del self.workers[run_id]
            self._record_exit(handle, code)

    def _record_exit(self, handle: WorkerHandle, code: int) -> None:
        stderr_tail = tail(handle.log_path) if handle.log_path else None
        run = store.get_run(self.db, handle.run_id)
        if run is None:
            return
        if RunStatus(run.status).is_terminal:
            store.attach_outcome(self.db, handle.run_id, exit_code=code if handle.proc else None, stderr_tail=stderr_tail)
            return
        if handle.proc is None:
            status, error = RunStatus.LOST, "adopted worker vanished without writing a final status"
        elif run.cancel_requested:
            status, error = RunStatus.CANCELLED, f"cancelled ({signal_name(code) if code < 0 else f'exit {code}'})"
        elif code < 0:
            status, error = RunStatus.FAILED, f"worker killed by {signal_name(code)}"
        else:
            status, error = RunStatus.FAILED, f"worker exited with code {code} without a final status"
        store.finish_run(self.db, handle.run_id, status, exit_code=code if handle.proc else None,
                         error=error, stderr_tail=stderr_tail)
        store.add_log(self.db, handle.run_id, f"{status.value}: {error}", source="scheduler")

    def handle_cancels(self) -> None:
        now = time.monotonic()
        for run in store.cancel_requested_active(self.db):
            handle = self.workers.get(run.id)
            if handle is None:
                if run.status == RunStatus.STARTING.value and run.pid is None and run.host in (None, self.host):
                    store.finish_run(self.db, run.id, RunStatus.CANCELLED, error="cancelled before it started")
                continue
            if handle.term_sent_at is None:
                handle.signal(signal.SIGTERM)
                handle.term_sent_at = now
                store.add_log(self.db, run.id, "SIGTERM sent (cancel requested)", source="scheduler")
            elif not handle.killed and now - handle.term_sent_at > self.grace:
                handle.signal(signal.SIGKILL)
                handle.killed = True
                store.add_log(self.db, run.id, f"SIGKILL sent after {self.grace:.0f} s grace", source="scheduler")

    def launch_ready(self) -> None:
        while len(self.workers) < self.slots.max_parallel:
            slot = self._free_slot()
            if slot is None:
                return
            run = store.claim_next(self.db, host=self.host, gpu=slot)
            if run is None:
                return
            handle = launch_worker(self.db.url, run.id, slot)
            store.set_pid(self.db, run.id, handle.pid)
            self.workers[run.id] = handle
            log.info("run %s (%s) launched on %s, pid %s", run.id, run.experiment, slot, handle.pid)

    def _free_slot(self) -> str | None:
        used: dict[str, int] = {}
        for handle in self.workers.values():
            used[handle.slot] = used.get(handle.slot, 0) + 1
        for slot, capacity in self.slots.capacity().items():
            if used.get(slot, 0) < capacity:
                return slot
        return None

    def _has_queued(self) -> bool:
        return store.count_by_status(self.db).get(RunStatus.QUEUED.value, 0) > 0
