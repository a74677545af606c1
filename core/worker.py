"""The worker: ``python -m core.worker --db URL RUN_ID`` runs one experiment in its own process.

It marks the run ``running`` (with parameter counts, device, versions, git commit and seed),
streams the experiment's events into the registry as they happen, and writes the final status
itself: ``completed``, ``failed`` (with the error and traceback) or ``cancelled`` on SIGTERM.
Anything the experiment prints goes to the run's ``worker.log`` (the scheduler redirects
stdout and stderr there), so stray output can never corrupt the recorded events.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from core.experiments import get_experiment
from core.registry import RunStatus, open_database, store
from core.registry.emitter import RegistryEmitter

EXIT_COMPLETED, EXIT_FAILED, EXIT_CANCELLED, EXIT_NOT_STARTED = 0, 1, 3, 4


class Cancelled(BaseException):
    """Raised in the main thread by SIGTERM: unwinds the experiment without being caught by it."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Cancelled()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The project's git commit (with ``+dirty`` for local changes), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        sha = head.stdout.strip()
        if head.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_info(config: Any) -> dict[str, Any]:
    """What a result needs to be trusted later: where, with what, from which code."""
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


def execute(db_url: str, run_id: int) -> int:
    """Run ``run_id`` to its end; returns the process exit code."""
    db = open_database(db_url, create=False)
    run = store.get_run(db, run_id)
    if run is None:
        print(f"worker: run {run_id} not found in {db_url}", file=sys.stderr)
        return EXIT_NOT_STARTED
    experiment = get_experiment(run.experiment)
    config = experiment.make_config(**json.loads(run.config_json))
    signal.signal(signal.SIGTERM, _on_sigterm)
    if not store.mark_running(db, run_id, pid=os.getpid(), host=socket.gethostname(), info=run_info(config)):
        store.finish_run(db, run_id, RunStatus.CANCELLED, error="cancelled before it started")
        return EXIT_CANCELLED
    emit = RegistryEmitter(db, run_id)
    try:
        from core.resume import attach_checkpoints  # checkpoints; a resumed attempt continues from the newest

        attach_checkpoints(db, run, emit, previous_info=run.info_json)
        experiment.run(config, emit)
    except Cancelled:
        current = store.get_run(db, run_id)
        requested = current is None or current.cancel_requested
        store.add_log(db, run_id, "cancelled (SIGTERM)" if requested else "SIGTERM not requested through hrm: preempted")
        store.finish_run(db, run_id, RunStatus.CANCELLED,
                         error="cancelled by request" if requested else "preempted (SIGTERM from outside hrm)")
        return EXIT_CANCELLED
    except Exception as exc:  # noqa: BLE001 - any experiment error ends the run as failed
        trace = traceback.format_exc()
        print(trace, file=sys.stderr)
        store.finish_run(db, run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", stderr_tail=trace[-4000:])
        return EXIT_FAILED
    store.finish_run(db, run_id, RunStatus.COMPLETED)
    return EXIT_COMPLETED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.worker", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", type=int)
    parser.add_argument("--db", required=True, help="registry URL or path")
    args = parser.parse_args(argv)
    return execute(args.db, args.run_id)


if __name__ == "__main__":
    sys.exit(main())
