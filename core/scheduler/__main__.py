"""``python -m core.scheduler``: the scheduler without the CLI (what ``hrm run`` spawns).

The registry URL comes from ``$HRM_DB_URL`` (``--db`` also works, visible in ``ps``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from core.errors import UserError
from core.registry import RegistryError, open_database
from core.scheduler import Scheduler, SchedulerAlreadyRunning, Slots
from core.scheduler.loop import HEARTBEAT_STALE_AFTER, WORKER_STALE_AFTER
from core.scheduler.spawn import DB_URL_ENV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.scheduler")
    parser.add_argument("--db", default=None, help=f"registry URL or path (default: ${DB_URL_ENV})")
    parser.add_argument("--name", default=None, help="scheduler (host) name; default: this host's name")
    parser.add_argument("--gpus", default=None, help="comma-separated GPU indices (default: all visible)")
    parser.add_argument("--max-parallel", type=int, default=None)
    parser.add_argument("--pack", type=int, default=1)
    parser.add_argument("--stale-after", type=float, default=WORKER_STALE_AFTER,
                        help="seconds without a worker heartbeat before its run is lost")
    parser.add_argument("--lease-after", type=float, default=HEARTBEAT_STALE_AFTER,
                        help="seconds without renewing its lease after which this scheduler counts as gone")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--idle-exit", type=float, default=None)
    parser.add_argument("--retries", type=int, default=0, help="default automatic resumes after an infrastructure failure")
    parser.add_argument("--on-finish", default=None, help="default command run when a run ends ('cmd {run_id} {status}')")
    parser.add_argument("--webhook", default=None, help="default URL that receives a JSON body when a run ends")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    url = args.db or os.environ.get(DB_URL_ENV)
    if not url:
        parser.error(f"no registry: set {DB_URL_ENV} or pass --db")
    try:
        slots = Slots.from_options(args.gpus, pack=args.pack, max_parallel=args.max_parallel)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from core.resume import EndPolicy, check_policy

    try:  # bad hooks are refused before the registry is touched
        check_policy(max_retries=args.retries, on_finish=args.on_finish, webhook=args.webhook)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    policy = EndPolicy(retries=args.retries, on_finish=args.on_finish, webhook=args.webhook)
    try:
        db = open_database(url, create=True)
        Scheduler(db, slots, name=args.name, stale_after=args.stale_after, lease_after=args.lease_after, once=args.once,
                  idle_exit=args.idle_exit, end_policy=policy).run()
    except (RegistryError, SchedulerAlreadyRunning) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
