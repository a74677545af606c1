"""Report 004's whole suite (Exp 1–11, both variants) through the real scheduler, several runs per GPU.

    python benchmarks/gpu_004_suite.py [--pack 8] [--variants published,corrected] [--db /tmp/suite.db]

Queues what ``hrm reproduce 004`` queues, runs ``Scheduler`` with ``--gpus 0 --pack N`` (N runs
share the one GPU, each a worker subprocess), and prints the wall time of the whole suite, each
run's time and headline, and how many published numbers land within tolerance.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import api  # noqa: E402
from core.registry import open_database, store  # noqa: E402
from core.reproduce import compare_report, plan_reproduce, queue_reproduce  # noqa: E402
from core.scheduler import Scheduler, Slots, detect_gpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/suite004.db")
    parser.add_argument("--pack", type=int, default=8, help="runs sharing one GPU")
    parser.add_argument("--variants", default="published,corrected")
    parser.add_argument("--only", default=None, help="experiment ids, e.g. 5-11")
    args = parser.parse_args()
    Path(args.db).unlink(missing_ok=True)
    db = open_database(args.db)
    for variant in args.variants.split(","):
        items = plan_reproduce("004", variant, [args.only] if args.only else None)
        queue_reproduce(db, "004", items, variant)
    queued = store.list_runs(db)
    gpus = detect_gpus()[:1]
    slots = Slots(gpus, args.pack, args.pack if gpus else 2)
    print(f"{len(queued)} runs queued; scheduler on {slots.describe()}", flush=True)
    start = time.perf_counter()
    Scheduler(db, slots, poll=0.2, once=True).run()
    wall = time.perf_counter() - start
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
