"""``python -m core.scheduler --db URL``: the scheduler without the CLI (what ``hrm run`` spawns)."""

from __future__ import annotations

import argparse
import logging
import sys

from core.registry import RegistryError, open_database
from core.scheduler import Scheduler, SchedulerAlreadyRunning, Slots, detect_gpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.scheduler")
    parser.add_argument("--db", required=True)
    parser.add_argument("--gpus", default=None, help="comma-separated GPU indices (default: all visible)")
    parser.add_argument("--max-parallel", type=int, default=None)
    parser.add_argument("--pack", type=int, default=1)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--idle-exit", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    gpus = tuple(g for g in args.gpus.split(",") if g) if args.gpus is not None else detect_gpus()
    max_parallel = args.max_parallel or (len(gpus) * args.pack if gpus else 1)
    try:
        db = open_database(args.db, create=True)
        Scheduler(db, Slots(gpus, args.pack, max_parallel), once=args.once, idle_exit=args.idle_exit).run()
    except (RegistryError, SchedulerAlreadyRunning) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
