"""The scheduler: claim queued runs, launch workers on free slots, watch them, act on cancels.

One scheduler per host (its *name*: the host name, or ``--name``) over a registry that several
hosts may share. It holds a lease under its name (:mod:`core.registry.leases`): registration is
atomic, the lease is renewed every few seconds, and a scheduler that finds its lease taken over
(it was paused past it) stops at once, leaving its workers to the new holder.

Each pass: reap ended workers, act on cancel requests, check liveness, fill free slots. Between
passes it wakes within ``wake`` seconds of a new run (a cheap change check: SQLite's
``data_version``, a read elsewhere) without writing anything while idle. Liveness: any scheduler
marks ``lost`` a running run whose worker heartbeat is older than ``stale_after`` seconds (the
cause in the error); its own stale workers (stopped, hung) are killed first. At start-up it adopts
the live workers its name left behind and settles the dead ones. Transient registry errors
(a lock held past its wait, a full disk, PostgreSQL restarting) are logged and retried with backoff.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from core.paths import run_dir, tail
from core.registry import RunStatus, leases, store
from core.registry.change_watch import ChangeWatch
from core.registry.db import Database
from core.registry.emitter import SPOOL_NAME, replay_spool
from core.registry.outage import Backoff, first_line, is_transient
from core.registry.output import ship_file
from core.scheduler.by_run import default_executor
from core.scheduler.executor import Executor, LaunchDeferred
from core.scheduler.process import WorkerHandle, signal_name

log = logging.getLogger("hrm.scheduler")

HEARTBEAT_STALE_AFTER = 10.0
"""Seconds without renewing its lease after which a scheduler counts as gone."""
WORKER_STALE_AFTER = 60.0
"""Default seconds without a worker heartbeat after which its run is ``lost`` (``--stale-after``)."""
STALL_LOG_AFTER = 2.0
"""A pass that took longer than this (a registry writer holding the lock) is logged."""


class SchedulerAlreadyRunning(RuntimeError):
    """Another live scheduler holds this name (or, on SQLite, this registry from another host)."""


@dataclass(frozen=True)
class Slots:
    """GPU slots: each of ``gpus`` takes up to ``pack`` runs; no GPU means ``cpu`` slots."""

    gpus: tuple[str, ...] = ()
    pack: int = 1
    max_parallel: int = 1

    @classmethod
    def from_options(cls, gpus: str | None = None, *, pack: int = 1, max_parallel: int | None = None) -> Slots:
        """From ``--gpus 0,1`` (None: every visible GPU, ``""``: CPU only), ``--pack``, ``--max-parallel``."""
        if pack < 1:
            raise ValueError("--pack must be at least 1")
        if max_parallel is not None and max_parallel < 1:
            raise ValueError("--max-parallel must be at least 1")
        found = tuple(g.strip() for g in gpus.split(",") if g.strip()) if gpus is not None else detect_gpus()
        return cls(found, pack, max_parallel or (len(found) * pack if found else 1))

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
    """One scheduler process for one host name over one registry."""

    def __init__(
        self,
        db: Database,
        slots: Slots,
        *,
        name: str | None = None,
        executor: Executor | None = None,
        poll: float = 0.5,
        idle_poll: float = 2.0,
        wake: float = 0.03,
        grace: float = 10.0,
        stale_after: float = WORKER_STALE_AFTER,
        lease_after: float = HEARTBEAT_STALE_AFTER,
        once: bool = False,
        idle_exit: float | None = None,
        end_policy=None,
        on_start=None,
    ) -> None:
        self.db = db
        self.on_start = on_start
        """Called once the lease is held (a front end's banner: never shown by a scheduler that is refused)."""
        self.end_policy = end_policy
        """A :class:`core.resume.EndPolicy`: retries and notifications when a run ends (None: defaults)."""
        self.slots = slots
        self.host = socket.gethostname()
        self.name = name or self.host
        self.poll = poll
        self.idle_poll = idle_poll
        self.wake = wake
        self.grace = grace
        self.stale_after = stale_after
        self.lease_after = lease_after
        self.once = once
        self.idle_exit = idle_exit
        beat_every = max(0.2, min(5.0, stale_after / 6))
        self.executor = executor or default_executor(db, env={"HRM_HEARTBEAT_INTERVAL": f"{beat_every:g}"})
        self.workers: dict[int, WorkerHandle] = {}
        self.lease: leases.Lease | None = None
        self.fenced = False
        self._stop = False
        self._backoff = Backoff(first=0.5, longest=10.0)
        self._registry_ok_since = time.time()
        """Since when the registry has answered without a break: nobody could beat during an outage, so
        heartbeats are judged stale only a full window after it (and after this scheduler's start)."""

    # --- lifecycle ----------------------------------------------------------------------------
    def register(self) -> leases.Lease:
        try:
            lease = store.register_scheduler(self.db, host=self.host, pid=os.getpid(), slots=self.slots.describe(),
                                             stale_after=self.lease_after, name=self.name)
        except leases.LeaseRefused as exc:
            raise SchedulerAlreadyRunning(str(exc)) from None
        if lease is None:
            live = store.live_schedulers(self.db, stale_after=self.lease_after, name=self.name)
            who = f"pid {live[0]['pid']} on {live[0]['host']}" if live else "another process"
            raise SchedulerAlreadyRunning(f"a scheduler named {self.name!r} is already running for this registry ({who})")
        self.lease = lease
        return lease

    def run(self) -> None:
        """Run until stopped (SIGTERM/SIGINT), fenced off, or the queue drains with ``once``/``idle_exit``."""
        self.register()
        if self.on_start is not None:
            self.on_start()
        log.info("scheduler %r (lease epoch %d) on %s: slots %s, workers stale after %.0f s",
                 self.name, self.lease.epoch, self.host, self.slots.describe(), self.stale_after)
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        watch = ChangeWatch(self.db)
        try:
            self._guarded(self.reconcile)
            idle_since = last_pass = last_renew = time.monotonic()
            while not self._stop and not self.fenced:
                now = time.monotonic()
                if now - last_renew >= self.lease_after / 4:
                    if self._guarded(self.renew) is not None:
                        last_renew = now
                    if self.fenced:
                        break
                every = self.poll if self.workers or not watch.exact else self.idle_poll
                due = now - last_pass >= every or any(self.executor.poll(h) is not None for h in self.workers.values())
                if not due and self._free_slot() is not None and watch.changed():
                    self._guarded(self.launch_ready)  # a new run: launch it now, the rest waits for the pass
                    if self.workers:
                        idle_since = time.monotonic()
                if due:
                    started = time.monotonic()
                    self._guarded(self.step)
                    took = time.monotonic() - started
                    if took > STALL_LOG_AFTER:
                        log.warning("registry stalled: one scheduler pass took %.1f s (a writer holding the lock?)", took)
                    last_pass = time.monotonic()
                    if self.workers:
                        idle_since = last_pass
                    elif not self._guarded(lambda: store.has_claimable(self.db, name=self.name)):
                        if self.once:
                            break
                        if self.idle_exit is not None and last_pass - idle_since > self.idle_exit:
                            log.info("idle for %.0f s: exiting", self.idle_exit)
                            break
                    else:
                        idle_since = last_pass
                time.sleep(self.wake if self._backoff.since is None else self._backoff.delay)
        finally:
            watch.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if not self.fenced and self.lease is not None:
                try:
                    store.unregister_scheduler(self.db, self.lease)
                except Exception as exc:  # noqa: BLE001 - the lease then simply goes stale
                    log.warning("could not release the lease: %s", first_line(exc))

    def _request_stop(self, signum, frame) -> None:
        """Stop scheduling; running workers keep going and are adopted by the next scheduler."""
        self._stop = True

    def _guarded(self, action):
        """Run ``action``; a transient registry error is logged and retried later with backoff."""
        started = time.monotonic()
        try:
            result = action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = self._backoff.failed()
            log.warning("registry unavailable (%s); retrying in %.1f s", first_line(exc), delay)
            return None
        lasted = self._backoff.succeeded()
        if lasted is not None:
            log.info("registry back after %.1f s", lasted)
            self._registry_ok_since = time.time()
        elif time.monotonic() - started > STALL_LOG_AFTER:  # waited on the lock: the workers did too
            self._registry_ok_since = time.time()
        return result

    def renew(self) -> bool:
        if store.beat(self.db, self.lease):
            return True
        log.error("lease %r (epoch %d) was taken over by another scheduler: this one stops launching and exits; "
                  "its workers are left to the new holder", self.name, self.lease.epoch)
        self.fenced = True
        return False

    def step(self) -> None:
        """One pass: reap ended workers, act on cancel requests, check liveness, fill free slots."""
        self.reap()
        self.handle_cancels()
        self.check_liveness()
        if not self.fenced:
            self.launch_ready()

    # --- reconcile ----------------------------------------------------------------------------
    def _is_mine(self, run) -> bool:
        name = getattr(run, "scheduler_name", None)
        return name == self.name or (name is None and run.host in (None, self.host))

    def reconcile(self) -> None:
        """Adopt the live workers this name left behind; settle the dead ones (never erasing their record)."""
        for run in store.active_runs(self.db):
            if not self._is_mine(run) or run.id in self.workers:
                continue
            handle = self.executor.adopt(run)
            if handle is not None:
                log.info("adopting run %s (pid %s)", run.id, run.pid)
                self.workers[run.id] = handle
                store.add_log(self.db, run.id, f"adopted by scheduler {self.name!r} (pid {os.getpid()})",
                              source="scheduler")
                continue
            self._settle(run.id)
            if RunStatus(run.status) == RunStatus.STARTING and run.pid is None:
                if leases.requeue(self.db, run.id):
                    store.add_log(self.db, run.id, "requeued: the scheduler died before launching it",
                                  source="scheduler")
                continue
            reason = f"worker pid {run.pid} was gone when the scheduler restarted"
            if store.finish_run(self.db, run.id, RunStatus.LOST, error=reason, stderr_tail=tail(self._log_path(run.id))):
                store.add_log(self.db, run.id, f"lost: {reason}", source="scheduler")
            self._ended(run.id)

    def _log_path(self, run_id: int):
        return run_dir(self.db, run_id) / "worker.log"

    def _settle(self, run_id: int) -> None:
        """Deliver what a dead worker left on this host: its spooled events and the rest of its output."""
        spool = run_dir(self.db, run_id) / SPOOL_NAME
        if spool.exists():
            replayed = replay_spool(self.db, run_id, spool)
            store.add_log(self.db, run_id, f"{replayed} spooled events replayed by the scheduler", source="scheduler")
        ship_file(self.db, run_id, self._log_path(run_id), final=True)

    # --- the duties ---------------------------------------------------------------------------
    def reap(self) -> None:
        for run_id, handle in list(self.workers.items()):
            code = self.executor.poll(handle)
            if code is None:
                continue
            self._settle(run_id)
            del self.workers[run_id]
            self._record_exit(handle, code)
            self._ended(run_id)

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
            last = (stderr_tail or "").strip().splitlines()[-1:] or [""]
            status, error = RunStatus.FAILED, f"worker exited with code {code} without a final status: {last[0]}".rstrip(": ")
        if store.finish_run(self.db, handle.run_id, status, exit_code=code if handle.proc else None,
                            error=error, stderr_tail=stderr_tail):
            store.add_log(self.db, handle.run_id, f"{status.value}: {error}", source="scheduler")

    def _ended(self, run_id: int) -> None:
        """A run ended: retry it if its ending allows (infrastructure failure), else notify. Never fatal."""
        try:
            from core.resume import EndPolicy, handle_run_end

            handle_run_end(self.db, run_id, self.end_policy or EndPolicy(), shared_gpu=self.slots.pack > 1)
        except Exception as exc:  # noqa: BLE001 - a hook must never stop the scheduler
            if is_transient(exc):
                raise
            log.warning("run %s: end-of-run handling failed: %s", run_id, first_line(exc))

    def handle_cancels(self) -> None:
        now = time.monotonic()
        for run in store.cancel_requested_active(self.db):
            handle = self.workers.get(run.id)
            if handle is None:
                if run.status == RunStatus.STARTING.value and run.pid is None and self._is_mine(run):
                    store.finish_run(self.db, run.id, RunStatus.CANCELLED, error="cancelled before it started")
                continue
            if handle.term_sent_at is None:
                self.executor.cancel(handle)
                handle.term_sent_at = now
                store.add_log(self.db, run.id, "SIGTERM sent (cancel requested)", source="scheduler")
            elif not handle.killed and now - handle.term_sent_at > self.grace:
                self.executor.cancel(handle, force=True)
                handle.killed = True
                store.add_log(self.db, run.id, f"SIGKILL sent after {self.grace:.0f} s grace", source="scheduler")

    def check_liveness(self) -> None:
        """Runs whose worker stopped beating: kill ours first (a stopped worker must not resume), mark lost.

        Within a window after a registry outage (or this scheduler's start) only workers seen stopped
        (SIGSTOP) are settled: the others could not beat while the registry was away. A stopped worker is
        settled at once, since it may be the very writer holding the registry's lock.
        """
        settled_all = time.time() - self._registry_ok_since >= self.stale_after
        for row in leases.stale_running(self.db, stale_after=self.stale_after):
            run_id = row["id"]
            seen = time.time() - row["last_seen"]
            handle = self.workers.get(run_id)
            stopped = handle is not None and self.executor.is_stopped(handle)
            if not stopped and not settled_all:
                continue
            if handle is not None:
                self.executor.signal(handle, signal.SIGKILL)
                if hasattr(self.executor, "reap_quietly"):  # a killed local worker leaves no zombie
                    self.executor.reap_quietly(handle)
                del self.workers[run_id]
                self._settle(run_id)
                state = "stopped (SIGSTOP)" if stopped else "hung"
                reason = f"no worker heartbeat for {seen:.0f} s: worker pid {handle.pid} was {state} and has been killed"
            else:
                reason = (f"no worker heartbeat for {seen:.0f} s (last from pid {row['pid']} on host {row['host']}, "
                          f"scheduler {row['scheduler_name'] or '?'}): its worker or host is gone")
            if leases.mark_lost_if_stale(self.db, run_id, stale_after=self.stale_after, reason=reason):
                log.warning("run %s lost: %s", run_id, reason)
                self._ended(run_id)
        leases.requeue_orphaned_starting(self.db, stale_after=max(self.stale_after, self.lease_after))

    def launch_ready(self) -> None:
        while len(self.workers) < self.slots.max_parallel:
            slot = self._free_slot()
            if slot is None or not self.executor.accepting() or not store.has_claimable(self.db, name=self.name):
                return
            run = store.claim_next(self.db, host=self.host, gpu=slot, lease=self.lease, stale_after=self.lease_after)
            if run is None:
                return
            try:
                handle = self.executor.launch(run, slot)
            except LaunchDeferred as exc:
                leases.requeue(self.db, run.id)
                log.warning("run %s back in the queue: %s", run.id, exc)
                return
            except OSError as exc:
                error = f"could not start the worker: {exc}"
                store.finish_run(self.db, run.id, RunStatus.FAILED, error=error)
                store.add_log(self.db, run.id, f"failed: {error}", source="scheduler")
                log.error("run %s: %s", run.id, error)
                continue
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
