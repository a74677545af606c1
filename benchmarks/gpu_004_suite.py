"""Report 004's whole suite (Exp 1–11, both variants) through the real scheduler, several runs per GPU.

    python benchmarks/gpu_004_suite.py [--gpus 0,1] [--pack 8] [--variants published,corrected] [--db /tmp/suite.db]

Queues what ``hrm reproduce 004`` queues, runs ``Scheduler`` with ``--gpus G --pack N`` (N runs
share each GPU, each a worker subprocess), samples every GPU's utilisation with ``nvidia-smi``
while it runs, and prints the wall time of the whole suite, each run's time and headline, and how
many published numbers land within tolerance.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import api  # noqa: E402
from core.registry import open_database, store  # noqa: E402
from core.reproduce import compare_report, plan_reproduce, queue_reproduce  # noqa: E402
from core.scheduler import Scheduler, Slots, detect_gpus  # noqa: E402


class UtilisationSampler(threading.Thread):
    """Every GPU's utilisation (%) and memory, sampled once a second by ``nvidia-smi`` while the suite runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._done = threading.Event()

    def run(self) -> None:
        if not shutil.which("nvidia-smi"):
            return
        while not self._done.wait(1.0):
            out = subprocess.run(["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                index, util, mem = (part.strip() for part in line.split(","))
                self.samples.setdefault(index, []).append((float(util), float(mem)))

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def summary(self) -> str:
        if not self.samples:
            return "GPU utilisation: no nvidia-smi"
        parts = []
        for index, rows in sorted(self.samples.items()):
            utils = [u for u, _ in rows]
            parts.append(f"GPU {index}: mean {sum(utils) / len(utils):.0f} % busy over {len(rows)} s, "
                         f"peak memory {max(m for _, m in rows):.0f} MiB")
        return "GPU utilisation: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/suite004.db")
    parser.add_argument("--pack", type=int, default=8, help="runs sharing one GPU")
    parser.add_argument("--variants", default="published,corrected")
    parser.add_argument("--only", default=None, help="experiment ids, e.g. 5-11")
    parser.add_argument("--gpus", default=None, help="GPU indices, e.g. 0,1 (default: the first visible GPU)")
    args = parser.parse_args()
    Path(args.db).unlink(missing_ok=True)
    db = open_database(args.db)
    for variant in args.variants.split(","):
        items = plan_reproduce("004", variant, [args.only] if args.only else None)
        queue_reproduce(db, "004", items, variant)
    queued = store.list_runs(db)
    gpus = tuple(g for g in args.gpus.split(",") if g) if args.gpus is not None else detect_gpus()[:1]
    slots = Slots(gpus, args.pack, args.pack * len(gpus) if gpus else 2)
    print(f"{len(queued)} runs queued; scheduler on {slots.describe()}", flush=True)
    sampler = UtilisationSampler()
    sampler.start()
    start = time.perf_counter()
    Scheduler(db, slots, poll=0.2, once=True).run()
    wall = time.perf_counter() - start
    sampler.stop()
    print(sampler.summary())
    runs = sorted(store.list_runs(db), key=lambda r: r.id)
    print(f"\nwhole suite: {wall:.1f} s wall for {len(runs)} runs "
          f"(sum of run times {sum((r.finished_at or 0) - (r.started_at or 0) for r in runs):.1f} s)\n")
    print("| id | experiment | variant | config | status | seconds | headline |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        record = api.run_record(run)
        choice = {k: v for k, v in record["config"].items() if k in ("method", "model", "loss", "update", "phase")}
        seconds = (run.finished_at or 0) - (run.started_at or 0)
        print(f"| {run.id} | {run.experiment} | {run.variant} | {choice} | {run.status} | {seconds:.1f} | "
              f"{run.headline_value if run.headline_value is None else round(run.headline_value, 3)} |")
        if run.status != "completed":
            print(f"|  | error: {run.error} |")
    for variant in args.variants.split(","):
        result = compare_report(db, "004", variant=variant)
        print(f"\n004 {variant}: {result.summary}")


if __name__ == "__main__":
    main()
