"""Submit → first event latency with a live scheduler (issue #13: ≤ 0.4 s on an idle machine).

One command: ``python benchmarks/bench_latency.py [--runs 10]``. It starts a scheduler on a fresh
SQLite registry in a temporary folder, then, interleaved with bare ``python -c pass`` start-ups of
the same interpreter (the baseline), queues ``smoke`` runs two ways and times each run's first
event (the worker marking it ``running``, measured on one clock as ``started_at - t_submit``):

- ``api.submit`` in this process: the scheduler's wake-up, claim, worker start and first write;
- ``hrm run smoke --no-start-scheduler`` as a whole process: the same plus the CLI's start-up (on a
  SQLite registry this is the light path: one experiment module, the row written with ``sqlite3``,
  see ``core/fastsubmit.py`` and ``core/registry/fastwrite.py``); also how long the process itself took;
- the same command with ``--retries 0``, which takes the full path (catalog, SQLAlchemy): the
  before/after of the light path, measured in the same run.

Prints medians and their ratio to the bare start-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import bare_python_wall  # noqa: E402
from core import api  # noqa: E402
from core.registry import open_database, store  # noqa: E402

TARGET_S = 0.4


def first_event(db, run_id: int, submitted: float, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get_run(db, run_id)
        if run.started_at is not None:
            return run.started_at - submitted
        time.sleep(0.005)
    raise RuntimeError(f"run {run_id} did not start within {timeout} s")


def wait_idle(db, run_id: int) -> None:
    """Until the run ended and its worker process is gone (reaped): the next submit finds an idle scheduler."""
    while not store.get_run(db, run_id).status.is_terminal:
        time.sleep(0.02)
    pid = store.get_run(db, run_id).pid
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.02)
    time.sleep(0.2)


def measure(runs: int = 10, *, full_path: bool = True) -> dict[str, list[float]]:
    """Seconds per sample, keyed ``bare`` (bare python start-up), ``api`` (submit through the API →
    first event), ``cli`` (a whole ``hrm run smoke`` process → first event), ``cli process`` (how
    long that process took) and, unless ``full_path`` is false, ``full`` (``--retries 0``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    hrm = str(Path(sys.executable).with_name("hrm"))
    out: dict[str, list[float]] = {"bare": [], "api": [], "cli": [], "cli process": [],
                                   **({"full": []} if full_path else {})}
    with tempfile.TemporaryDirectory(prefix="hrm-latency-") as folder:
        path = Path(folder) / "runs.db"
        db = open_database(path, create=True)
        scheduler = subprocess.Popen([sys.executable, "-P", "-m", "core.scheduler", "--db", str(path)], env=env,
                                     cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not api.scheduler_alive(db):
                time.sleep(0.05)
            warm = api.submit(db, "smoke", {"epochs": 1})  # page in the worker's modules once
            first_event(db, warm.id, time.time())
            wait_idle(db, warm.id)

            def cli_run(extra: list[str], into: list[float], took: list[float] | None = None) -> None:
                submitted = time.time()
                out = subprocess.run([hrm, "--db", str(path), "run", "smoke", "--epochs", "1", "--no-start-scheduler",
                                      *extra], env=env, cwd=folder, capture_output=True, text=True, check=True)
                if took is not None:
                    took.append(time.time() - submitted)
                run_id = int(out.stdout.split()[-1])
                into.append(first_event(db, run_id, submitted))
                wait_idle(db, run_id)

            for _ in range(runs):
                out["bare"].append(bare_python_wall())
                submitted = time.time()
                run = api.submit(db, "smoke", {"epochs": 1, "layers": 1})
                out["api"].append(first_event(db, run.id, submitted))
                wait_idle(db, run.id)
                cli_run([], out["cli"], out["cli process"])
                if full_path:
                    cli_run(["--retries", "0"], out["full"])
        finally:
            scheduler.terminate()
            scheduler.wait(20)
            db.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    samples = measure(args.runs)
    bare, full, whole = samples["bare"], samples["full"], samples["cli"]
    base = statistics.median(bare)
    print(f"bare `python -c pass`: median {base * 1000:.0f} ms over {len(bare)} (load average {os.getloadavg()[0]:.2f})")
    rows = (("submit (api) -> first event", samples["api"], True),
            ("`hrm run smoke` process -> first event", whole, True),
            ("  of which the `hrm run smoke` process", samples["cli process"], False),
            ("full path (--retries 0) -> first event", full, False))
    for label, values, target in rows:
        median = statistics.median(values)
        verdict = f"  (target {TARGET_S:.1f} s: {'ok' if median <= TARGET_S else 'over'})" if target else ""
        print(f"{label:42s} median {median * 1000:6.0f} ms  min {min(values) * 1000:6.0f} ms  "
              f"= {median / base:4.1f}x bare python{verdict}")
    print(f"light path vs full path, process -> first event: {statistics.median(full) / statistics.median(whole):.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
