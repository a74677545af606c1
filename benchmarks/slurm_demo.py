"""The Slurm flow end to end on a real Slurm, with its wall times: ``python benchmarks/slurm_demo.py``.

Queues ``smoke`` runs in a fresh registry, starts ``hrm scheduler --executor slurm --time 1``
(a one-minute limit per job), and lets each run end a different way: one completes, one is cancelled
with ``hrm cancel``, one is ``scancel``-ed from outside hrm, one runs past its time limit, one is
preempted by a job of a higher-priority partition (``--urgent``), and one loses its node (as root:
``scontrol update state=down``) and is resumed by its retry. Prints each run's status, Slurm job id
and state, error and rows kept, and how long each step took.

Needs Slurm's commands and a partition (``--partition``, default ``debug``: the one
``tests/slurm/start_slurm.sh`` starts on this machine as root). ``--db`` takes a PostgreSQL URL too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import api  # noqa: E402
from _engine_demo import print_endings, wait  # noqa: E402
from core.registry import open_database, store  # noqa: E402


def hrm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_tui", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--db", default=None, help="registry URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--urgent", default="urgent", help="a partition that preempts --partition ('' to skip)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="hrm-slurm-demo-")
    url = args.db or f"sqlite:///{folder}/runs.db"
    db = open_database(url, create=True)
    runs = {
        "completes": api.submit(db, "smoke", {"epochs": 5, "layers": 2}),
        "hrm cancel": api.submit(db, "smoke", {"epochs": 500, "layers": 2, "sleep": 0.3}),
        "scancel outside hrm": api.submit(db, "smoke", {"epochs": 500, "layers": 2, "sleep": 0.3}),
        "past its --time": api.submit(db, "smoke", {"epochs": 5000, "layers": 2, "sleep": 0.5}),
    }

    def run(label):
        return store.get_run(db, runs[label].id)

    t0 = time.monotonic()
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "hrm_tui", "--db", url, "scheduler", "--executor", "slurm", "--partition", args.partition,
         "--time", "1", "--name", "slurm-demo"], cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=open(Path(folder) / "scheduler.log", "w"), start_new_session=True)
    timings = []
    try:
        took = wait("the first run completes", lambda: run("completes").status == "completed", 120)
        timings.append(("queue -> completed (5 epochs)", took))
        took = wait("the long runs start", lambda: all(run(k).epoch >= 2 for k in list(runs)[1:]), 120)
        timings.append(("the long runs reach epoch 2", time.monotonic() - t0))
        t1 = time.monotonic()
        cancelled = hrm("--db", url, "cancel", str(runs["hrm cancel"].id))
        if cancelled.returncode:
            raise SystemExit(cancelled.stderr.strip())
        subprocess.run(["scancel", run("scancel outside hrm").external_id], check=True)
        took = wait("both cancels settle", lambda: run("hrm cancel").status.is_terminal
                    and run("scancel outside hrm").external_state == "CANCELLED"
                    and run("scancel outside hrm").status.is_terminal, 60)
        timings.append(("hrm cancel and scancel -> both settled", time.monotonic() - t1))
        took = wait("the time limit", lambda: run("past its --time").status == "lost", 180)
        timings.append(("start -> lost to TIMEOUT (1-minute limit)", time.monotonic() - t0))
        if args.urgent:  # a job of a higher-priority partition takes the node: ours is preempted
            runs["preempted"] = api.submit(db, "smoke", {"epochs": 500, "layers": 2, "sleep": 0.3})
            wait("the run to preempt starts", lambda: run("preempted").epoch >= 2, 120)
            t1 = time.monotonic()
            subprocess.run(["sbatch", "--partition", args.urgent, "--exclusive", "--time", "1", "--output", "/dev/null",
                            "--wrap", "sleep 1"],
                           check=True, capture_output=True)
            wait("the preemption", lambda: run("preempted").status == "lost", 60)
            timings.append(("urgent job submitted -> lost to PREEMPTED", time.monotonic() - t1))
        if os.geteuid() == 0:  # the node goes down under a run that may be retried once
            runs["node failure, retried"] = api.submit(db, "smoke", {"epochs": 30, "layers": 2, "sleep": 0.2})
            api.set_run_policy(db, runs["node failure, retried"].id, max_retries=1)
            wait("the run on the failing node starts", lambda: run("node failure, retried").epoch >= 2, 120)
            node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
            t1 = time.monotonic()
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=slurm-demo"], check=True)
            try:
                wait("the retry", lambda: run("node failure, retried").attempt == 2, 60)
            finally:
                subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
            wait("the retried run completes", lambda: run("node failure, retried").external_state == "COMPLETED", 120)
            timings.append(("node down -> lost, retried, completed", time.monotonic() - t1))
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(30)
    print(f"registry {db.safe_url if hasattr(db, 'safe_url') else url}, partition {args.partition}\n")
    print_endings(db, {label: run(label) for label in runs}, "job", "Slurm state", timings)
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
