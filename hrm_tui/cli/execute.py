"""``hrm exec -- COMMAND [ARGS]...``: any command as a run (the built-in experiment ``exec``).

The command is checked before anything is written (a missing program or script: one line, exit 2),
queued like ``hrm run`` (same ``--wait``/``--follow``/``--tag``/``--db``), and run by a worker in a GPU
slot; its output is the run's log and its exit code decides completed/failed. Inside it,
``hrm_tui.init()`` attaches to the run (``$HRM_RUN_ID``, ``$HRM_DB``).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from hrm_tui.cli import CONTEXT_SETTINGS, HrmCommand
from hrm_tui.cli.common import DbOption, db_target, ensure_scheduler, err_console

exec_app = typer.Typer(add_completion=False, rich_markup_mode="rich", pretty_exceptions_enable=False)


@exec_app.command("exec", cls=HrmCommand, context_settings={
    **CONTEXT_SETTINGS, "allow_interspersed_args": False, "ignore_unknown_options": True})
def exec_command(
    ctx: typer.Context,
    command: Annotated[Optional[list[str]], typer.Argument(
        metavar="-- COMMAND [ARGS]...", help="the command line, after -- (e.g. -- python train.py --lr 1e-3)",
        show_default=False)] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="a label for the run (default: the command)")] = "",
    gpus: Annotated[int, typer.Option("--gpus", help="1: run in a GPU slot of the scheduler; 0: hide the GPUs")] = 1,
    tags: Annotated[Optional[list[str]], typer.Option("--tag", "-t", help="tag the run (repeatable)")] = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", "-e", metavar="KEY=VALUE",
                                                     help="an environment variable for the command (repeatable)")] = None,
    priority: Annotated[int, typer.Option("--priority", help="higher runs first")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream the run's metrics until it ends")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="block until the run ends; exit 0 only if it completed")] = False,
    start: Annotated[bool, typer.Option("--start-scheduler/--no-start-scheduler",
                                        help="start a background scheduler when none is alive")] = True,
    db: DbOption = None,
) -> None:
    """Queue a command as a run: hrm exec [OPTIONS] -- python train.py --lr 1e-3."""
    from core import api
    from core.registry import RunStatus

    if not command:
        raise api.UserError("no command: give it after --, e.g. hrm exec -- python train.py", 2)
    if gpus > 1:
        raise api.UserError(f"--gpus {gpus}: a run gets one GPU slot of the scheduler (0 or 1)", 2)
    values = {"argv": list(command), "cwd": os.getcwd(), "name": name, "gpus": gpus, "env": list(env or [])}
    try:
        api.validate_config("exec", values)  # before the registry is touched: bad input writes nothing
    except api.UserError as exc:
        raise api.UserError(str(exc).removeprefix("invalid config for exec: "), exc.exit_code) from None
    database = api.open_registry(db_target(ctx, db), create=True)
    run = api.submit(database, "exec", values, tags=tags or [], priority=priority)
    if wait:
        ensure_scheduler(database, start, quiet=True)
        final = api.wait(database, run.id)
        raise typer.Exit(0 if final.status == RunStatus.COMPLETED.value else 1)
    err_console().print(f"run [bold]{run.id}[/bold] queued (exec: {name or ' '.join(command)})", markup=True,
                        highlight=False)
    if not sys.stdout.isatty():
        sys.stdout.write(f"{run.id}\n")
    ensure_scheduler(database, start, quiet=False)
    if follow:
        from hrm_tui.cli.follow import follow_run

        final_status = follow_run(database, run.id)
        raise typer.Exit(0 if final_status == RunStatus.COMPLETED.value else 1)
