"""Run management: ``hrm ls``, ``show``, ``logs``, ``cancel``, ``retry``, ``delete``."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from hrm_tui.cli.common import DbOption, JsonOption, RunIdArgument, console, ensure_scheduler, err_console, print_json, registry

STATUSES = ("queued", "starting", "running", "completed", "failed", "cancelled", "lost")


def list_runs(
    ctx: typer.Context,
    status: Annotated[Optional[list[str]], typer.Option(
        "--status", "-s", metavar="STATUS", help=f"filter by status (repeatable): {', '.join(STATUSES)}")] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", "-e", help="filter by experiment")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", help="filter by tag")] = None,
    last: Annotated[Optional[int], typer.Option("--last", "-n", min=1, help="only the newest N runs")] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List runs, newest first."""
    from core import api
    from core.registry import RunStatus

    statuses = []
    for value in status or ():
        try:
            statuses.append(RunStatus(value).value)
        except ValueError:
            raise api.UserError(f"--status {value!r}: expected one of {', '.join(STATUSES)}", 2) from None
    records = api.list_records(registry(ctx, db), statuses=statuses, experiment=experiment, tag=tag, last=last)
    if json_out:
        print_json({"schema": api.RUNS_JSON_SCHEMA, "runs": records})
        return
    if not records:
        err_console().print("no runs")
        return
    from hrm_tui import render

    console().print(render.runs_table(records))


def show(ctx: typer.Context, run_id: RunIdArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """A run in full: config, status, timings, per-epoch and per-layer tables, analysis tables."""
    from core import api
    from core.registry import RunStatus, store

    database = registry(ctx, db)
    run = api.require_run(database, run_id)
    record = api.list_records(database, ids=[run_id])[0]
    rows = store.metrics(database, run_id)
    tables = store.result_tables(database, run_id)
    if json_out:
        record["metrics"] = rows
        record["tables"] = tables
        print_json({"schema": "hrm.run/v1", "run": record})
        return
    from hrm_tui import render

    screen = console()
    screen.print(render.run_header(record))
    for table in (render.epoch_table(rows), *render.layer_tables(rows), render.summary_table(record["latest"])):
        if table is not None:
            screen.print(table)
    for t in tables:
        screen.print(render.result_table(t["name"], t["rows"], t["stage"]))
    if run.stderr_tail and run.status != RunStatus.COMPLETED.value:
        screen.print("[dim]stderr tail:[/dim]")
        screen.print(run.stderr_tail[-1500:], markup=False, highlight=False)


def logs(
    ctx: typer.Context,
    run_id: RunIdArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the run ends")] = False,
    db: DbOption = None,
) -> None:
    """The run's log: worker output (stdout/stderr) followed live with -f."""
    from core import api
    from core.paths import worker_log
    from core.registry import RunStatus, store

    database = registry(ctx, db)
    api.require_run(database, run_id)
    path = worker_log(database.url, run_id)
    offset = 0
    while True:
        if path.exists():
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
                offset += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        run = store.get_run(database, run_id)
        if not follow or RunStatus(run.status).is_terminal:
            break
        time.sleep(0.3)
    if not follow:
        for line in store.logs(database, run_id):
            console().print(f"[dim]{time.strftime('%H:%M:%S', time.localtime(line['ts']))} {line['source']}:[/dim] "
                            f"{line['message']}", highlight=False)


def cancel(ctx: typer.Context, run_id: RunIdArgument, db: DbOption = None) -> None:
    """Cancel a run (graceful SIGTERM, then SIGKILL after a grace period)."""
    from core import api
    from core.registry import RunStatus

    run = api.cancel(registry(ctx, db), run_id)
    word = "cancelled" if run.status == RunStatus.CANCELLED.value else "cancel requested"
    console().print(f"run {run_id}: {word}")


def retry(
    ctx: typer.Context,
    run_id: RunIdArgument,
    db: DbOption = None,
    start: Annotated[bool, typer.Option("--start-scheduler/--no-start-scheduler",
                                        help="start a background scheduler when none is alive")] = True,
) -> None:
    """Queue a new run with the same experiment and config."""
    from core import api

    database = registry(ctx, db)
    run = api.retry(database, run_id)
    console().print(f"run {run.id} queued (retry of {run_id})")
    ensure_scheduler(database, start, quiet=False)


def delete(
    ctx: typer.Context,
    run_id: RunIdArgument,
    db: DbOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Delete a finished run and all its metrics."""
    from core import api

    database = registry(ctx, db)
    api.require_run(database, run_id)
    if not yes:
        typer.confirm(f"delete run {run_id} and all its metrics?", abort=True)
    api.delete(database, run_id)
    console().print(f"run {run_id} deleted")
