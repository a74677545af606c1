"""The Ray flow end to end on a real Ray, with its wall times: ``python benchmarks/ray_demo.py``.

Starts a one-node Ray head on loopback (unless ``--address`` names a running cluster), queues ``smoke``
runs in a fresh registry, starts ``hrm scheduler --executor ray`` and lets each run end a different way:
one completes, one is cancelled with ``hrm cancel``, one has its worker SIGKILL-ed from outside, and one
(queued with ``--retries 1``) loses its actor's process, as the OOM killer or a lost node would, and is
resumed by its retry. Prints each run's status, Ray actor id and state, error and rows kept, how long each step took, and
the same 5-epoch run's queue-to-completed time on a local scheduler next to Ray's (the baseline, same run).

Needs ``pip install -e '.[ray]'``. ``--db`` takes a PostgreSQL URL too. A head it started is stopped at the
end (its own processes only, found by its temporary folder: other Ray sessions are left alone).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
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

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "CUDA_VISIBLE_DEVICES": ""}
RAY = Path(sys.executable).with_name("ray")


def hrm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_tui", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=180)


def start_head(temp: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                           "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false",
                           "--object-store-memory", str(80 * 1024 * 1024), "--temp-dir", temp, "--disable-usage-stats"],
                          capture_output=True, text=True, env=ENV, timeout=180)
    if done.returncode:
        raise SystemExit(f"error: ray start failed: {done.stderr.strip().splitlines()[-1:]}")
    return f"127.0.0.1:{port}"


def session_pids(temp: str, port: str) -> list[int]:
    """The processes of the Ray session under ``temp`` whose head listens on ``port``: those with its folder in
    their command line or environment, or its GCS port as their ``--address`` (Ray's client server), and
    their descendants (Ray's agents rename themselves)."""
    found, parent = set(), {}
    gcs = f":{port}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes()
            by_address = b"ray" in argv and any(a.startswith(b"--address=") and a.endswith(gcs)
                                                 for a in argv.split(b"\0"))
            if temp.encode() in argv or by_address or temp.encode() in (proc / "environ").read_bytes():
                found.add(int(proc.name))
        except OSError:
            continue
    grown = True
    while grown:
        more = {pid for pid, ppid in parent.items() if ppid in found} - found
        found |= more
        grown = bool(more)
    return sorted(found)


def stop_head(temp: str, address: str) -> None:
    pids = session_pids(temp, address.rpartition(":")[2])  # all of them first: once the raylet is gone, its children are orphans
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)


def queue_to_completed(url: str, *scheduler_args: str) -> float:
    """Seconds from queueing a 5-epoch run to its completion under ``hrm scheduler ... --once``."""
    db = open_database(url, create=True)
    run = api.submit(db, "smoke", {"epochs": 5, "layers": 2})
    started = time.monotonic()
    done = hrm("--db", url, "scheduler", *scheduler_args, "--once")
    took = time.monotonic() - started
    final = store.get_run(db, run.id)
    db.dispose()
    if done.returncode or final.status != "completed":
        raise SystemExit(f"error: {scheduler_args}: {final.status} {final.error} {done.stderr[-500:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=None, help="a running Ray cluster (default: start a head on loopback)")
    parser.add_argument("--db", default=None, help="registry URL (default: a SQLite file in a temporary folder)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="hrm-ray-demo-")
    temp = None if args.address else tempfile.mkdtemp(prefix="hrm-ray-", dir="/tmp")
    t0 = time.monotonic()
    address = args.address or start_head(temp)
    timings = [("ray start --head (loopback)", time.monotonic() - t0)] if temp else []
    url = args.db or f"sqlite:///{folder}/runs.db"
    try:
        baseline = [("local: queue -> completed (5 epochs)", queue_to_completed(f"sqlite:///{folder}/local.db",
                                                                               "--gpus", "")),
                    ("ray: queue -> completed (5 epochs)", queue_to_completed(f"sqlite:///{folder}/ray.db", "--executor",
                                                                             "ray", "--ray-address", address))]
        db = open_database(url, create=True)
        runs = {"completes": api.submit(db, "smoke", {"epochs": 5, "layers": 2})}

        def run(label):
            return store.get_run(db, runs[label].id)

        scheduler = subprocess.Popen(
            [sys.executable, "-m", "hrm_tui", "--db", url, "scheduler", "--executor", "ray", "--ray-address", address,
             "--name", "ray-demo"], cwd=folder, env=ENV, stdout=subprocess.DEVNULL,
            stderr=open(Path(folder) / "scheduler.log", "w"), start_new_session=True)
        try:
            t1 = time.monotonic()
            wait("the first run completes", lambda: run("completes").status == "completed", 120)
            timings.append(("queue -> completed (5 epochs, scheduler starting)", time.monotonic() - t1))
            for label in ("hrm cancel", "worker SIGKILL"):  # two CPUs: two long runs at a time
                runs[label] = api.submit(db, "smoke", {"epochs": 500, "layers": 2, "sleep": 0.3})
            wait("the long runs start", lambda: all(run(k).epoch >= 2 for k in ("hrm cancel", "worker SIGKILL")), 120)
            t1 = time.monotonic()
            cancelled = hrm("--db", url, "cancel", str(runs["hrm cancel"].id))
            if cancelled.returncode:
                raise SystemExit(cancelled.stderr.strip())
            os.kill(run("worker SIGKILL").pid, signal.SIGKILL)
            wait("both settle", lambda: run("hrm cancel").status.is_terminal and run("worker SIGKILL").status.is_terminal,
                 60)
            timings.append(("hrm cancel and a worker SIGKILL -> both settled", time.monotonic() - t1))
            runs["actor died, retried"] = api.submit(db, "smoke", {"epochs": 25, "layers": 2, "sleep": 0.2})
            api.set_run_policy(db, runs["actor died, retried"].id, max_retries=1)
            wait("the run whose actor dies starts", lambda: run("actor died, retried").epoch >= 3, 120)
            with open(f"/proc/{run('actor died, retried').pid}/stat") as f:
                actor_process = int(f.read().rsplit(")", 1)[1].split()[1])
            t1 = time.monotonic()
            os.kill(actor_process, signal.SIGKILL)
            wait("the retry", lambda: run("actor died, retried").attempt == 2, 60)
            wait("the retried run completes", lambda: run("actor died, retried").external_state == "FINISHED", 120)
            timings.append(("actor process killed -> lost, retried, completed", time.monotonic() - t1))
        finally:
            scheduler.send_signal(signal.SIGTERM)
            scheduler.wait(30)
    finally:
        if temp:
            stop_head(temp, address)
    print(f"registry {getattr(db, 'safe_url', url)}, Ray at {address}\n")
    print_endings(db, {label: run(label) for label in runs}, "Ray actor", "state", timings + baseline)
    print(f"ray / local (queue -> completed): {baseline[1][1] / baseline[0][1]:.2f} x")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
