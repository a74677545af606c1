"""``hrm resume`` (continue a dead run from its checkpoint) and ``hrm gc`` (disk space back)."""

from __future__ import annotations

from typing import Annotated

import typer

from hrm_tui.cli.common import DbOption, JsonOption, RunIdArgument, ensure_scheduler, err_console, print_json, registry


def resume(
    ctx: typer.Context,
    run_id: RunIdArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream the run's metrics until it ends")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="block until the run ends; exit 0 only if it completed")] = False,
    db: DbOption = None,
    start: Annotated[bool, typer.Option("--start-scheduler/--no-start-scheduler",
                                        help="start a background scheduler when none is alive")] = True,
) -> None:
    """Continue a failed, lost or cancelled run under the same id, from its newest checkpoint.

    The run is queued again as its next attempt; what the dead attempt recorded after the checkpoint is replaced, so its metrics continue as one series. `hrm show RUN_ID` lists every attempt.
    """
    from core import api
    from core.registry.status import RunStatus

    if follow and wait:
        raise api.UserError("--follow and --wait cannot be combined", 2)
    database = registry(ctx, db)
    run = api.resume(database, run_id)
    latest = api.checkpoint(run)
    where = (f"from its checkpoint at {'stage ' + str(latest['stage']) + ' ' if latest.get('stage') else ''}"
             f"epoch {latest['epoch']}" if latest else "from the start (no checkpoint recorded)")
    err_console().print(f"run [bold]{run_id}[/bold] queued as attempt {run.attempt}, continuing {where}")
    ensure_scheduler(database, start, quiet=wait)
    if wait:  # as `hrm run --wait`: the result line, and Ctrl-C says the run goes on
        from hrm_tui.cli.follow import result_line, wait_run

        final = wait_run(database, run_id)
        err_console().print(result_line(api.list_records(database, ids=[run_id])[0], final.error), highlight=False,
                            soft_wrap=True)
        raise typer.Exit(0 if final.status == RunStatus.COMPLETED.value else 1)
    if follow:
        from hrm_tui.cli.follow import follow_run

        raise typer.Exit(0 if follow_run(database, run_id) == RunStatus.COMPLETED.value else 1)


def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="say what would be removed, remove nothing")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Remove checkpoints completed runs no longer need (all but the best and the last) and folders of deleted runs."""
    from core import api
    from core.facade import human_bytes

    report = api.gc(registry(ctx, db), dry_run=dry_run)
    if as_json:
        print_json({"schema": "hrm.gc/v1", "dry_run": dry_run, "freed_bytes": report.freed_bytes,
                    "items": [{"path": str(i.path), "bytes": i.bytes, "reason": i.reason} for i in report.items]})
        return
    for item in report.items:  # plain lines (paths are long: never wrapped)
        typer.echo(f"{'would remove' if dry_run else 'removed'} {item.path} ({human_bytes(item.bytes)}): {item.reason}")
    typer.echo(report.summary())
