"""The worker: ``python -P -m core.worker RUN_ID`` runs one experiment in its own process.

The registry URL comes from ``$HRM_DB_URL`` (``--db`` also works, but puts it where ``ps`` shows it).
The worker marks the run ``running`` first, through the standard library's driver and before any
heavy import (the first event lands within milliseconds of the launch), then records parameter
counts, device, versions, git commit and seed, streams the experiment's events into the registry
as they happen (spooled to the run folder through registry outages, see
:mod:`core.registry.emitter`), and writes the final status itself: ``completed``, ``failed`` (with
the error and traceback) or ``cancelled`` on SIGTERM.

A background thread beats (``run.heartbeat_at``, every ``$HRM_HEARTBEAT_INTERVAL`` seconds) and
ships the worker's output (its stdout/stderr file, ``worker.log``) into the registry, so that logs
and liveness are visible from any host. When its heartbeat finds the run no longer its own (marked
``lost`` or force-cancelled meanwhile), the worker exits at once.

Keep this module's top-level imports to the standard library: they are on the critical path of
``hrm run`` → first event (:mod:`core.registry.worker_start` is standard library only).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from core.registry.worker_start import early_beat, quick_start, sqlite_file

EXIT_COMPLETED, EXIT_FAILED, EXIT_CANCELLED, EXIT_NOT_STARTED, EXIT_FENCED, EXIT_UNREACHABLE = 0, 1, 3, 4, 5, 6
DB_URL_ENV = "HRM_DB_URL"
HEARTBEAT_ENV = "HRM_HEARTBEAT_INTERVAL"
DEFAULT_HEARTBEAT_S = 5.0
OUTAGE_DEADLINE_ENV = "HRM_OUTAGE_DEADLINE"
DEFAULT_OUTAGE_DEADLINE_S = 600.0
"""How long a finished worker keeps retrying to deliver its spooled events and final status."""
SHIP_EVERY_S = 1.0



class Cancelled(BaseException):
    """Raised in the main thread by SIGTERM: unwinds the experiment without being caught by it."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Cancelled()


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


# --- the first event, before heavy imports ---------------------------------------------------

class EarlyBeat(threading.Thread):
    """Heartbeats with the stdlib driver while the heavy imports run (a loaded machine takes seconds)."""

    def __init__(self, path: str, run_id: int, pid: int, interval: float) -> None:
        super().__init__(name="hrm-early-heartbeat", daemon=True)
        self.path, self.run_id, self.pid, self.interval = path, run_id, pid, interval
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            early_beat(self.path, self.run_id, self.pid, timeout=self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# --- what a result needs to be trusted later --------------------------------------------------

def git_commit() -> str | None:
    """The project's git commit read from ``.git`` (no subprocess on the critical path), ``+dirty``
    when tracked files differ (one ``git diff-index``, after the run has started)."""
    root = Path(__file__).resolve().parent.parent
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = git / ref
            if ref_file.exists():
                sha = ref_file.read_text().strip()
            else:
                packed = (git / "packed-refs").read_text().splitlines()
                sha = next((line.split()[0] for line in packed if line.endswith(" " + ref)), "")
        else:
            sha = head
    except OSError:
        return None
    if not sha:
        return None
    import subprocess

    try:
        dirty = subprocess.run(["git", "-C", str(root), "diff-index", "--quiet", "HEAD", "--"],
                               capture_output=True, timeout=5).returncode == 1
    except (OSError, subprocess.SubprocessError):
        dirty = False
    return sha + ("+dirty" if dirty else "")


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_info(config: Any) -> dict[str, Any]:
    """Where, with what, from which code."""
    import platform

    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "hrm_tui": _version("hrm-tui"),
        "git_commit": git_commit(),
        "seed": getattr(config, "seed", None),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "requested_device": getattr(config, "device", None),
    }


# --- heartbeat and output, from a thread ------------------------------------------------------

def _output_file() -> Path | None:
    """The regular file this process's stdout goes to (the run's ``worker.log``), if any."""
    try:
        import stat

        if not stat.S_ISREG(os.fstat(1).st_mode):
            return None
        return Path(os.readlink("/proc/self/fd/1"))
    except OSError:
        return None


class Background(threading.Thread):
    """Beats every ``interval`` seconds and ships new output every second; never raises."""

    def __init__(self, db, run_id: int, *, pid: int, host: str, interval: float, output: Path | None) -> None:
        super().__init__(name="hrm-heartbeat", daemon=True)
        self.db, self.run_id, self.pid, self.host = db, run_id, pid, host
        self.interval = interval
        self.output = output
        self.finishing = False
        self._halt = threading.Event()
        self._shipped_to = -1
        self._complained = 0.0

    def run(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._halt.wait(min(SHIP_EVERY_S, self.interval)):
            try:
                self.ship()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.interval
                    self.beat()
            except Exception as exc:  # noqa: BLE001 - a thread that dies would stop the heartbeat silently
                self._complain(exc)

    def beat(self) -> None:
        from core.registry import leases

        if leases.beat_worker(self.db, self.run_id, pid=self.pid, host=self.host) or self.finishing:
            return
        from core.registry import store

        run = store.get_run(self.db, self.run_id)
        status = getattr(run, "status", "gone")
        why = f": {run.error}" if run is not None and run.error else ""
        print(f"hrm worker: run {self.run_id} is {status} in the registry{why}; this worker was given up, exiting",
              file=sys.stderr, flush=True)
        os._exit(EXIT_FENCED)

    def ship(self, *, final: bool = False) -> None:
        if self.output is None:
            return
        try:
            size = self.output.stat().st_size
        except OSError:
            return
        if size == self._shipped_to and not final:
            return
        from core.registry import output

        output.ship_file(self.db, self.run_id, self.output, final=final)
        self._shipped_to = size

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def _complain(self, exc: BaseException) -> None:
        if time.monotonic() - self._complained > 30:
            self._complained = time.monotonic()
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"hrm worker: heartbeat/output write failed, retrying: {line}", file=sys.stderr, flush=True)


# --- the run ----------------------------------------------------------------------------------

def _cpu_threads_for(config: Any) -> contextlib.AbstractContextManager:
    """The run's ``cpu_threads`` applied once around the whole experiment, when it runs on the CPU.

    Runs without the field (``smoke``, ``exec``) or on a GPU never import torch here, so their first
    event is not delayed by it.
    """
    threads = getattr(config, "cpu_threads", 0) or 0
    device = getattr(config, "device", "auto")
    on_cpu = device == "cpu" or (device == "auto" and not os.environ.get("CUDA_VISIBLE_DEVICES"))
    if threads <= 0 or not on_cpu:
        return contextlib.nullcontext()
    from core.runtime import torch_threads

    return torch_threads(threads)


def execute(db_url: str, run_id: int) -> int:
    """Run ``run_id`` to its end; returns the process exit code.

    The SIGTERM handling it installs is undone on return, so a process that calls it in-line (a test,
    a notebook) does not go on ignoring SIGTERM, nor pass that on to every child it starts later.
    """
    previous = signal.getsignal(signal.SIGTERM)
    try:
        return _execute(db_url, run_id)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _execute(db_url: str, run_id: int) -> int:
    pid, host = os.getpid(), socket.gethostname()
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = quick_start(db_url, run_id, pid, host)
    interval = _env_float(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)
    early = EarlyBeat(sqlite_file(db_url), run_id, pid, interval) if started == "running" else None
    if early is not None:
        early.start()

    from core.experiments import get_experiment
    from core.paths import run_dir
    from core.registry import RunStatus, open_database, store
    from core.registry.emitter import SPOOL_NAME, RegistryEmitter, replay_spool

    db = open_database(db_url, create=False)
    run = store.get_run(db, run_id)
    if run is None or started == "missing":
        print(f"worker: run {run_id} not found in {db.safe_url if hasattr(db, 'safe_url') else 'the registry'}",
              file=sys.stderr)
        return EXIT_NOT_STARTED
    if started is None:
        started = "running" if store.mark_running(db, run_id, pid=pid, host=host, info={}) else "refused"
    if started == "refused":
        store.finish_run(db, run_id, RunStatus.CANCELLED, error="cancelled before it started")
        return EXIT_CANCELLED

    spool = run_dir(db, run_id) / SPOOL_NAME
    if spool.exists():  # a previous attempt's undelivered events come first
        replay_spool(db, run_id, spool)
    emit = RegistryEmitter(db, run_id, spool_path=spool)
    background = Background(db, run_id, pid=pid, host=host, interval=interval, output=_output_file())
    if early is not None:
        early.stop()
    background.start()
    status, error, stderr_tail, code = RunStatus.COMPLETED, None, None, EXIT_COMPLETED
    try:
        experiment = get_experiment(run.experiment)
        config = experiment.make_config(**dict(run.config))
        emit.info(**run_info(config))
        from core.resume import attach_checkpoints  # checkpoints; a resumed attempt continues from the newest

        attach_checkpoints(db, run, emit)
        with _cpu_threads_for(config):
            experiment.run(config, emit)
    except Cancelled:
        current = store.get_run(db, run_id)
        requested = current is None or current.cancel_requested
        emit.log("cancelled (SIGTERM)" if requested else "SIGTERM not requested through hrm: preempted")
        status, error, code = (RunStatus.CANCELLED, "cancelled by request" if requested
                               else "preempted (SIGTERM from outside hrm)", EXIT_CANCELLED)
    except Exception as exc:  # noqa: BLE001 - any experiment error ends the run as failed
        trace = traceback.format_exc()
        print(trace, file=sys.stderr, flush=True)
        from core.extras import missing_extra

        error = missing_extra(exc) or f"{type(exc).__name__}: {exc}"  # a missing extra: which one to install
        status, error, stderr_tail, code = RunStatus.FAILED, error, trace[-4000:], EXIT_FAILED
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    background.finishing = True
    try:
        background.ship()  # the output (a traceback) lands before the status a follower stops at
    except Exception as exc:  # noqa: BLE001 - shipped again below, or by the scheduler
        background._complain(exc)
    emit.finish(status, error=error, stderr_tail=stderr_tail)
    deadline = time.monotonic() + _env_float(OUTAGE_DEADLINE_ENV, DEFAULT_OUTAGE_DEADLINE_S)
    while emit.pending and time.monotonic() < deadline:
        time.sleep(min(emit.backoff.delay or 0.25, max(0.0, deadline - time.monotonic())))
        emit.flush(force=True)
    if emit.pending:
        print(f"hrm worker: the registry stayed unreachable ({emit.outage_error}); the final status "
              f"({status.value}) and {emit.spooled} events are in {spool}, replayed when the scheduler can",
              file=sys.stderr, flush=True)
        code = EXIT_UNREACHABLE
    background.stop()
    try:
        background.ship(final=True)
    except Exception as exc:  # noqa: BLE001 - the scheduler ships what is left after the exit
        background._complain(exc)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.worker", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", type=int)
    parser.add_argument("--db", default=None, help=f"registry URL or path (default: ${DB_URL_ENV})")
    args = parser.parse_args(argv)
    url = args.db or os.environ.get(DB_URL_ENV)
    if not url:
        parser.error(f"no registry: set {DB_URL_ENV} or pass --db")
    if "://" not in url:
        url = "sqlite:///" + os.path.abspath(url)
    try:
        return execute(url, args.run_id)
    except Cancelled:
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
