"""Workers as Slurm jobs: :class:`SlurmExecutor` submits each run with submitit and reads its fate from Slurm.

- **Submit**: submitit pickles :func:`become_worker` and ``sbatch``-es it; on the node that function
  redirects its output to the run's ``worker.log`` and ``exec``-s the real worker
  (``python -P -m core.worker RUN_ID``), which writes its status, events, heartbeat and output into
  the registry itself, exactly as a local worker does. The registry URL travels in the job's
  environment (``HRM_DB_URL``, exported by ``sbatch``), never on a command line or in a file.
- **Watch**: one ``scontrol show job -o`` a second for all jobs (``sacct`` needs accounting storage,
  which small clusters often lack, and submitit's own ``job.state`` calls it). The run's
  ``external_state`` follows the job (PENDING, RUNNING, ...).
- **Stop**: ``hrm cancel`` becomes ``scancel`` (``--signal=KILL`` after the grace period).
- **Settle**: when the job ends, Slurm's verdict is reconciled with what the worker wrote. The
  worker knows best when it completed or failed by itself; otherwise Slurm's reason wins (see
  :func:`verdict`): a job cancelled outside hrm is ``cancelled`` with that said (not a user's cancel,
  not retried), a time limit, a node failure or a preemption is ``lost`` (an infrastructure ending
  that ``--retries`` resumes from the newest checkpoint). Rows the worker logged are always kept.

Requires ``pip install hrm-tui[slurm]`` (submitit) and Slurm's client commands on ``PATH``. The run
folders (``worker.log``, submitit's folder) must be on a filesystem the nodes share, and the registry
reachable from the nodes: PostgreSQL on a cluster, SQLite only when the "cluster" is this machine.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from core.paths import run_dir, runs_root, tail, worker_log
from core.registry import RunStatus, store
from core.registry.db import sqlite_path
from core.registry.run_updates import set_run_fields, settle_from_executor
from core.scheduler.executor import Executor, LaunchDeferred
from core.scheduler.process import WorkerHandle
from core.scheduler.spawn import DB_URL_ENV, child_env, module_argv

log = logging.getLogger("hrm.scheduler.slurm")

ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                           "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
                           "RESV_DEL_HOLD"})
"""Slurm job states in which the job may still run (or is still tearing down): not settled yet."""
LOST_STATES = {"TIMEOUT": "hit its time limit", "NODE_FAIL": "ended by a node failure (NODE_FAIL)",
               "BOOT_FAIL": "ended by a node boot failure (BOOT_FAIL)", "PREEMPTED": "was preempted by Slurm",
               "DEADLINE": "missed its deadline (DEADLINE)"}
"""Endings that say nothing about the experiment: the run is ``lost`` (``--retries`` resumes it)."""
_SLURM_TIMEOUT_S = 30.0
_UNREACHABLE = re.compile(r"Unable to contact slurm controller|Socket timed out|Connection refused|"
                          r"Slurm backup controller in standby|Zero Bytes were transmitted", re.IGNORECASE)
"""sbatch/scontrol errors that mean slurmctld is away for now (not that the job is wrong)."""
DOWN_BACKOFF_S = 15.0
"""After slurmctld did not answer, no job is submitted for this long (runs stay queued)."""


class SlurmError(OSError):
    """A Slurm command failed (sbatch refused the job, slurmctld unreachable): one line, no traceback."""


@dataclass(frozen=True)
class SlurmJob:
    """What ``scontrol show job`` says about one job."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: int = 0
    exit_signal: int = 0
    time_limit: str = ""
    node: str = ""

    @property
    def ended(self) -> bool:
        return self.state not in ACTIVE_STATES

    @property
    def code(self) -> int:
        """The exit code as the scheduler reads one: negative for a signal."""
        return -self.exit_signal if self.exit_signal else self.exit_code


@dataclass(frozen=True)
class SlurmOptions:
    """What each job asks Slurm for (``hrm scheduler --executor slurm --partition P --gres gpu:1 --time 2:00:00``)."""

    partition: str | None = None
    gres: str | None = None
    time_minutes: int = 60
    cpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    """Any other ``sbatch`` option, by its long name without dashes (``{"constraint": "h100"}``)."""


# --- the Slurm commands -----------------------------------------------------------------------

def slurm_available() -> str | None:
    """None when Slurm's client commands are here; else why not (a sentence)."""
    missing = [c for c in ("sbatch", "scontrol", "scancel") if shutil.which(c) is None]
    if missing:
        return f"Slurm's commands are not installed ({', '.join(missing)} not on PATH)"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed: pip install 'hrm-tui[slurm]'"
    return None


def _slurm(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=_SLURM_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"{args[0]} failed: {exc}") from None


def parse_time(text: str | int) -> int:
    """Slurm's ``--time`` (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in whole minutes (at least 1)."""
    if isinstance(text, int):
        minutes = text
    else:
        match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
        if not match:
            raise ValueError(f"--time {text!r}: expected MINUTES, HH:MM:SS or D-HH:MM:SS")
        days, a, b, c = (int(x) if x is not None else None for x in match.groups())
        if days is not None:  # D-HH[:MM[:SS]]
            seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
        elif c is not None:  # HH:MM:SS
            seconds = a * 3600 + b * 60 + c
        elif b is not None:  # MM:SS
            seconds = a * 60 + b
        else:
            seconds = a * 60
        minutes = -(-seconds // 60)
    if minutes < 1:
        raise ValueError(f"--time {text!r}: a job needs at least one minute")
    return minutes


def _parse_job_line(line: str) -> SlurmJob | None:
    fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
    job_id = fields.get("JobId")
    if not job_id:
        return None
    code, _, sig = fields.get("ExitCode", "0:0").partition(":")
    state = fields.get("JobState", "UNKNOWN")
    return SlurmJob(job_id=job_id, state=state, reason=fields.get("Reason", ""),
                    exit_code=int(code) if code.isdigit() else 0, exit_signal=int(sig) if sig.isdigit() else 0,
                    time_limit=fields.get("TimeLimit", ""), node=fields.get("NodeList", ""))


def query_jobs() -> dict[str, SlurmJob]:
    """Every job slurmctld still knows (ended ones for ``MinJobAge`` seconds), by job id; one call."""
    result = _slurm("scontrol", "show", "job", "-o")
    if result.returncode != 0:
        raise SlurmError(f"scontrol show job: {result.stderr.strip() or result.stdout.strip()}")
    jobs = {}
    for line in result.stdout.splitlines():
        job = _parse_job_line(line)
        if job is not None:
            jobs[job.job_id] = job
    return jobs


def scancel(job_id: str, *, sig: str | None = None) -> None:
    """``scancel`` a job, or deliver ``sig`` to all its processes (``--full``: the batch script too)."""
    args = ["scancel", *(["--full", f"--signal={sig}"] if sig else []), job_id]
    result = _slurm(*args)
    if result.returncode != 0 and "already completing or completed" not in result.stderr \
            and "Invalid job id" not in result.stderr:
        raise SlurmError(f"{' '.join(args)}: {result.stderr.strip()}")


# --- on the node --------------------------------------------------------------------------------

def become_worker(run_id: int, log_path: str) -> None:
    """Runs on the Slurm node (submitit unpickles and calls it): ``exec`` the hrm worker for ``run_id``.

    The worker's stdout/stderr go to the run's ``worker.log`` (which the worker ships into the
    registry); submitit's pre-timeout ``SIGUSR2`` is ignored, so only Slurm's SIGTERM at the limit
    (a clean ``lost`` after the worker's last write) ends the run.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if not os.environ.get(DB_URL_ENV):  # said in the run's log, which the scheduler reads when the job ends
        raise RuntimeError(f"hrm slurm job: {DB_URL_ENV} is not in the job's environment (sbatch --export=NONE "
                           "or SBATCH_EXPORT set?): the worker cannot reach the registry")
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    argv = module_argv("core.worker", str(run_id))
    os.execve(argv[0], argv, child_env(os.environ[DB_URL_ENV]))


# --- the reconciliation -------------------------------------------------------------------------

def verdict(job: SlurmJob, *, cancel_requested: bool) -> tuple[RunStatus, str]:
    """The run's status and error for a job that ended before its worker wrote a final status of its own
    (or whose worker only saw an unexplained SIGTERM)."""
    where = f"Slurm job {job.job_id}" + (f" on {job.node}" if job.node and job.node != "(null)" else "")
    if job.state == "CANCELLED":
        if cancel_requested:
            return RunStatus.CANCELLED, f"cancelled by request (scancel of {where})"
        return RunStatus.CANCELLED, (f"cancelled by Slurm, not through hrm ({where} was cancelled by scancel or an "
                                     "administrator)")
    if job.state in LOST_STATES:
        limit = f" of {job.time_limit}" if job.state == "TIMEOUT" and job.time_limit else ""
        return RunStatus.LOST, f"{where} {LOST_STATES[job.state]}{limit}"
    if job.state == "OUT_OF_MEMORY":
        return RunStatus.FAILED, f"{where} ran out of memory (OUT_OF_MEMORY): ask for more with --mem"
    if job.state == "COMPLETED":
        return RunStatus.FAILED, f"{where} completed but its worker wrote no final status"
    how = f"signal {job.exit_signal}" if job.exit_signal else f"exit code {job.exit_code}"
    return RunStatus.FAILED, f"{where} ended {job.state} ({how}) before its worker wrote a final status"


class SlurmExecutor(Executor):
    """Each run a Slurm job (through submitit); states reconciled from ``scontrol``."""

    name = "slurm"

    def __init__(self, db, options: SlurmOptions | None = None, *, env: Mapping[str, str] | None = None,
                 refresh: float = 1.0, settle_grace: float = 10.0) -> None:
        problem = slurm_available()
        if problem:
            raise SlurmError(problem)
        self.db = db
        self.options = options or SlurmOptions()
        self.env = dict(env or {})
        self.refresh = refresh
        self.settle_grace = settle_grace
        self._jobs: dict[str, SlurmJob] | None = {}
        self._read_at = 0.0
        self._ended_seen: dict[str, float] = {}
        self._states: dict[str, str] = {}
        self._done: dict[str, int] = {}
        self._down_until = 0.0
        self._complained = 0.0
        self._undelivered: dict[str, tuple[str | None, float]] = {}
        """Signals (None: a plain scancel) that Slurm did not take, and when to try again."""

    # --- submit -------------------------------------------------------------------------------
    def _submitit(self, folder):
        import submitit

        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
        opts = self.options
        params: dict[str, Any] = {"time": opts.time_minutes, "stderr_to_stdout": True, "signal_delay_s": 30}
        for key in ("partition", "gres", "cpus_per_task", "mem", "account", "qos"):
            if getattr(opts, key) is not None:
                params[key] = getattr(opts, key)
        # hrm resumes a run itself (a new attempt from its checkpoint, --retries): a job Slurm requeued on a
        # node failure would run the same attempt twice.
        params["additional_parameters"] = {"no_requeue": True, "export": "ALL", **dict(opts.extra)}
        executor.update_parameters(**params)
        return executor

    def launch(self, run, slot: str) -> WorkerHandle:
        """``sbatch`` the run's worker; raises :class:`SlurmError` (an OSError) when Slurm refuses it."""
        self._cancel_leftover(run)
        folder = run_dir(self.db, run.id) / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        log_path = worker_log(self.db, run.id)
        executor = self._submitit(folder)
        executor.update_parameters(job_name=f"hrm-{run.id}-{run.experiment}")
        job_env = child_env(self.db.url, self.env)
        job_env.pop("CUDA_VISIBLE_DEVICES", None)  # Slurm sets it from --gres
        if sqlite_path(self.db.url) is None:  # the run folders' base, whatever the job's working folder
            job_env.setdefault("HRM_HOME", str(runs_root(self.db).parent))
        try:
            with _exported(job_env):  # sbatch exports the submitting environment: the URL goes in there only
                job = executor.submit(become_worker, run.id, str(log_path))
        except Exception as exc:  # noqa: BLE001 - submitit raises plain exceptions for sbatch errors
            if _UNREACHABLE.search(str(exc)):
                self._down_until = time.monotonic() + DOWN_BACKOFF_S
                raise LaunchDeferred(f"Slurm's controller did not answer ({_first_line(exc)}); "
                                     f"submitting again in {DOWN_BACKOFF_S:.0f} s") from None
            raise SlurmError(f"sbatch refused the job: {_first_line(exc)}") from None
        job_id = str(job.job_id)
        self._record(run.id, executor=self.name, external_id=job_id, external_state="PENDING")
        store.add_log(self.db, run.id, f"submitted to Slurm as job {job_id}"
                      + (f" (partition {self.options.partition})" if self.options.partition else ""),
                      source="scheduler")
        self._read_at = 0.0  # see the new job at the next poll
        return WorkerHandle(run_id=run.id, pid=0, slot=slot, log_path=log_path, external_id=job_id)

    def _cancel_leftover(self, run) -> None:
        """A run requeued while its earlier job still waited in Slurm (its scheduler died): that job must not
        start a second worker for the run, so it is cancelled before the new one is submitted."""
        old = getattr(run, "external_id", None)
        if getattr(run, "executor", None) != self.name or not old:
            return
        self._read_at = 0.0
        try:
            job = self._job(old)
        except SlurmError:
            return
        if job is not None and not job.ended:
            scancel(old)
            store.add_log(self.db, run.id, f"cancelled Slurm job {old}, left waiting by an earlier claim of this run",
                          source="scheduler")

    def accepting(self) -> bool:
        return time.monotonic() >= self._down_until

    # --- watch --------------------------------------------------------------------------------
    def _job(self, job_id: str) -> SlurmJob | None:
        """The job as last read (one ``scontrol`` a ``refresh``); raises SlurmError while Slurm does not answer."""
        now = time.monotonic()
        if now - self._read_at >= self.refresh:
            self._read_at = now
            try:
                self._jobs = query_jobs()
            except SlurmError as exc:
                self._jobs = None
                if now - self._complained > 60:
                    self._complained = now
                    log.warning("Slurm does not answer (%s): jobs are taken as still running", exc)
        if self._jobs is None:
            raise SlurmError("scontrol did not answer")
        return self._jobs.get(job_id)

    def poll(self, handle: WorkerHandle) -> int | None:
        """None while the job may run; once it ended, the run is settled (see :func:`verdict`) and its code returned."""
        job_id = handle.external_id
        if job_id in self._done:
            return self._done[job_id]
        try:
            job = self._job(job_id)
        except SlurmError:
            return None  # slurmctld away: nothing can be concluded, the job keeps its last state
        if job is not None and not job.ended:
            if job_id in self._undelivered and time.monotonic() >= self._undelivered[job_id][1]:
                self._deliver(job_id, self._undelivered[job_id][0])
            if self._states.get(job_id) != job.state:  # a write only when the state changes
                self._record(handle.run_id, external_state=job.state)
                self._states[job_id] = job.state
            return None
        run = store.get_run(self.db, handle.run_id)
        if run is None:
            code = -1
        elif job is None:  # purged from slurmctld's memory (MinJobAge), or never known
            if not RunStatus(run.status).is_terminal:
                self._finish(run, RunStatus.LOST, f"Slurm job {job_id} is gone from Slurm without its worker "
                                                  "writing a final status", state="UNKNOWN")
            code = run.exit_code if run.exit_code is not None else -1
        else:
            code = self._settle(run, job)
            if code is None:
                return None
        self._done[job_id] = code
        self._states.pop(job_id, None)
        return code

    def _settle(self, run, job: SlurmJob) -> int | None:
        status = RunStatus(run.status)
        unexplained = status == RunStatus.CANCELLED and not run.cancel_requested  # the worker saw a bare SIGTERM
        if status.is_terminal and not (unexplained and (job.state == "CANCELLED" or job.state in LOST_STATES)):
            self._record(run.id, external_state=job.state,
                         **({"exit_code": job.code} if run.exit_code is None else {}))
            return job.code  # the worker's own ending stands
        first = self._ended_seen.setdefault(job.job_id, time.monotonic())
        if not status.is_terminal and job.state == "COMPLETED" and time.monotonic() - first < self.settle_grace:
            return None  # the worker's final write may still be on its way (spooled through an outage)
        self._ended_seen.pop(job.job_id, None)
        new_status, error = verdict(job, cancel_requested=bool(run.cancel_requested))
        printed = None
        if not status.is_terminal:  # no word from the worker: what it printed, or submitit before it started
            printed = tail(worker_log(self.db, run.id)) or tail(
                run_dir(self.db, run.id) / "slurm" / f"{job.job_id}_0_log.out")
        self._finish(run, new_status, error, state=job.state, exit_code=job.code, stderr_tail=printed or None)
        return job.code

    def _finish(self, run, status: RunStatus, error: str, *, state: str, exit_code: int | None = None,
                stderr_tail: str | None = None) -> None:
        """Settle the run from Slurm's verdict: over a non-terminal status, or over the worker's own
        ``cancelled`` for a SIGTERM it could not explain (Slurm can). Metrics and logs are untouched."""
        now = time.time()
        values: dict[str, Any] = {"status": status.value, "error": error, "external_state": state,
                                  "finished_at": now, "updated_at": now}
        if exit_code is not None:
            values["exit_code"] = exit_code
        if stderr_tail is not None:
            values["stderr_tail"] = stderr_tail
        if settle_from_executor(self.db, run.id, values):
            store.add_log(self.db, run.id, f"{status.value}: {error}", source="scheduler")

    def _record(self, run_id: int, **values: Any) -> None:
        set_run_fields(self.db, run_id, values)

    # --- stop ---------------------------------------------------------------------------------
    def signal(self, handle: WorkerHandle, sig: int) -> None:
        """``scancel --signal``; SIGKILL also ends the job. Retried at the next polls while Slurm does not answer."""
        self._deliver(handle.external_id, "KILL" if sig == signal.SIGKILL else signal.Signals(sig).name[3:])

    def cancel(self, handle: WorkerHandle, *, force: bool = False) -> None:
        """``scancel`` (Slurm sends SIGTERM, the worker records ``cancelled``), or SIGKILL with ``force``."""
        self._deliver(handle.external_id, "KILL" if force else None)

    def _deliver(self, job_id: str, sig: str | None) -> None:
        self._read_at = 0.0
        try:
            if sig is not None:
                scancel(job_id, sig=sig)
            if sig in (None, "KILL"):
                scancel(job_id)
        except SlurmError as exc:  # slurmctld away: a scheduler must not die of it; poll() tries again
            log.warning("Slurm job %s: %s (trying again)", job_id, exc)
            self._undelivered[job_id] = (sig, time.monotonic() + 2.0)
            return
        self._undelivered.pop(job_id, None)

    def adopt(self, run) -> WorkerHandle | None:
        """The job of a run this scheduler's name submitted before a restart, while Slurm still knows it."""
        job_id = getattr(run, "external_id", None)
        if getattr(run, "executor", None) != self.name or not job_id:
            return None
        self._read_at = 0.0
        try:
            known = self._job(job_id) is not None
        except SlurmError:
            known = True  # slurmctld away: keep watching the job rather than call it gone
        if not known:
            return None
        return WorkerHandle(run_id=run.id, pid=run.pid or 0, slot=run.gpu or "cpu",
                            log_path=worker_log(self.db, run.id), external_id=job_id)


_ENVIRON_LOCK = threading.Lock()


@contextmanager
def _exported(env: Mapping[str, str]):
    """This process's environment made ``env`` for the duration (only the names that differ change)."""
    with _ENVIRON_LOCK:
        saved = {name: os.environ.get(name) for name in set(os.environ) ^ set(env) | {
            n for n in env if os.environ.get(n) != env[n]}}
        for name in saved:
            if name in env:
                os.environ[name] = env[name]
            else:
                del os.environ[name]
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__



def slurm_options(*, partition: str | None = None, gres: str | None = None, time_limit: str | None = None,
                  cpus_per_task: int | None = None, mem: str | None = None) -> SlurmOptions:
    """:class:`SlurmOptions` from the command line's; ValueError for a bad one (a usage error, nothing written)."""
    if partition is not None and not re.fullmatch(r"[\w.-]+", partition):
        raise ValueError(f"--partition {partition!r}: expected a partition name")
    if gres is not None and not re.fullmatch(r"[\w.:,/-]+", gres):
        raise ValueError(f"--gres {gres!r}: expected Slurm's form, e.g. gpu:1 or gpu:h100:2")
    if mem is not None and not re.fullmatch(r"\d+[KMGT]?", mem):
        raise ValueError(f"--mem {mem!r}: expected Slurm's form, e.g. 16G or 4000M")
    return SlurmOptions(partition=partition, gres=gres, cpus_per_task=cpus_per_task, mem=mem,
                        time_minutes=parse_time(time_limit) if time_limit is not None else 60)
