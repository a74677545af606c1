"""``hrm scheduler``: the scheduler in the foreground."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hrm_tui.cli.common import DbOption, err_console, registry


def scheduler(
    ctx: typer.Context,
    gpus: Annotated[Optional[str], typer.Option(
        "--gpus", show_default="all visible; none: CPU", help="GPU indices, e.g. 0,1")] = None,
    max_parallel: Annotated[Optional[int], typer.Option(
        "--max-parallel", min=1, show_default="one per GPU slot, 1 on CPU", help="runs at once")] = None,
    pack: Annotated[int, typer.Option("--pack", min=1, help="runs sharing one GPU")] = 1,
    once: Annotated[bool, typer.Option("--once", help="drain the queue, then exit")] = False,
    idle_exit: Annotated[Optional[float], typer.Option("--idle-exit", min=0, help="exit after this many idle seconds")] = None,
    db: DbOption = None,
) -> None:
    """Run the scheduler in the foreground: launch queued runs as worker subprocesses."""
    import logging

    from core import api
    from core.scheduler import Scheduler, SchedulerAlreadyRunning, Slots, detect_gpus

    gpu_list = tuple(g.strip() for g in gpus.split(",") if g.strip()) if gpus is not None else detect_gpus()
    slots = Slots(gpu_list, pack, max_parallel or (len(gpu_list) * pack if gpu_list else 1))
    database = registry(ctx, db, create=True)
    err_console().print(f"scheduler on {slots.describe()} for {database.url} (Ctrl-C stops; running workers continue)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        Scheduler(database, slots, once=once, idle_exit=idle_exit).run()
    except SchedulerAlreadyRunning as exc:
        raise api.UserError(str(exc), 1) from None
