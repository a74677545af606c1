"""Run management: ``hrm ls``, ``show``, ``logs``, ``cancel``, ``retry``, ``delete``."""

import sys
import time
from typing import Annotated, Optional

import typer

from hrm_tui.cli.common import (
    MAX_COUNT,
    DbOption,
    JsonOption,
    RunIdArgument,
    WideOption,
    console,
    db_target,
    ensure_scheduler,
    err_console,
    print_json,
    print_tables,
    registry,
)

STATUSES = ("queued", "starting", "running", "completed", "failed", "cancelled", "lost")


DEFAULT_SHOWN = 50
"""``hrm ls`` shows the newest 50 runs unless asked for more: a registry of 20k runs stays instant."""


def list_runs(
    ctx: typer.Context,
    status: Annotated[Optional[list[str]], typer.Option(
        "--status", "-s", metavar="STATUS", help=f"filter by status (repeatable): {', '.join(STATUSES)}")] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", "-e", help="filter by experiment")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", help="filter by tag")] = None,
    where: Annotated[Optional[str], typer.Option(
        "--where", "-w", help="filter expression, e.g. \"best_val_ppl < 12 and config.lr == 1e-3 and tag == 'sweep-1'\" "
        "(fields: status, experiment, tag, note, headline, config.KEY, any metric[.min|.max]; see docs/filter.md)")] = None,
    last: Annotated[Optional[int], typer.Option(
        "--last", "-n", min=1, max=MAX_COUNT, show_default=str(DEFAULT_SHOWN), help="show the newest N runs")] = None,
    offset: Annotated[int, typer.Option("--offset", min=0, max=MAX_COUNT, help="skip the newest N runs first")] = 0,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="every run (no limit)")] = False,
    wide: WideOption = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List runs, newest first (the newest 50 unless --last, --offset or --all say otherwise)."""
    from core.registry.status import RunStatus

    statuses = []
    for value in status or ():
        try:
            statuses.append(RunStatus(value).value)
        except ValueError:
            raise _usage(f"--status {value!r}: expected one of {', '.join(STATUSES)}") from None
    if show_all and last is not None:
        raise _usage("--all and --last contradict each other: give one")
    limit = None if show_all else (last or DEFAULT_SHOWN)
    filters = {"statuses": statuses, "experiment": experiment, "tag": tag}
    if where:  # the filter language compiles through SQLAlchemy (bound parameters): not the stdlib fast path
        from core import api

        api.check_filter(where)
        filters["where"] = where
    records, total = _read_listing(ctx, db, filters, limit, offset)
    if json_out:
        print_json({"schema": "hrm.runs/v1", "runs": records})
    elif records:
        from hrm_tui import render

        print_tables([render.runs_table(records, width=None if wide else console().width)], wide=wide)
    hidden_older = total - offset - len(records)
    if not records and not json_out:
        err_console().print("no runs" if not total else f"no runs here: {total} match, --offset {offset} skips them all")
    elif (hidden_older > 0 or offset) and not (json_out and (last or offset)):  # a script that asked knows
        parts = []
        if offset:
            parts.append(f"{offset} newer skipped (--offset)")
        if hidden_older > 0:
            parts.append(f"{hidden_older} older not shown (--all, --last N or --offset {offset + len(records)})")
        _note(f"{len(records)} of {total} runs: " + ", ".join(parts), json_out)


def _read_listing(ctx, db, filters, limit, offset) -> tuple[list[dict], int]:
    """(records, number matching the filters), by the stdlib reader when the registry allows it."""
    from core.facade import fastread

    conn = None if filters.get("where") else fastread.connect(db_target(ctx, db))
    if conn is not None:
        try:
            return (fastread.list_records(conn, last=limit, offset=offset, **filters),
                    fastread.count_runs(conn, **filters))
        finally:
            conn.close()
    from core import api

    database = registry(ctx, db)
    records = api.list_records(database, last=limit, offset=offset, **filters)
    if limit is None or len(records) < limit:
        return records, offset + len(records)
    return records, len(api.list_runs(database, enriched=False, **filters))


def _note(text: str, plain: bool) -> None:
    """A status line on stderr (plain text when stdout carries JSON: no Rich to import)."""
    if plain:
        sys.stderr.write(text + "\n")
    else:
        err_console().print(f"[dim]{text}[/dim]", highlight=False)


def _usage(message: str) -> Exception:
    from core.errors import UserError

    return UserError(message, 2)


def show(ctx: typer.Context, run_id: RunIdArgument, wide: WideOption = False, json_out: JsonOption = False,
         db: DbOption = None) -> None:
    """A run in full: config, status, timings, per-epoch and per-layer tables, analysis tables."""
    if json_out:
        from core.facade import fastread

        conn = fastread.connect(db_target(ctx, db))
        if conn is not None:
            try:
                record = fastread.run_details(conn, run_id)
            finally:
                conn.close()
            if record is None:
                from core.errors import UserError

                raise UserError(f"run {run_id} does not exist in {_label(ctx, db)}", 1)
            print_json({"schema": "hrm.run/v1", "run": record}, expand=3)
            return
    from core import api
    from core.registry.status import RunStatus

    database = registry(ctx, db)
    run = api.require_run(database, run_id)
    record = api.list_records(database, ids=[run_id])[0]
    rows = api.metrics_since(database, run_id)
    tables = api.result_tables(database, run_id)
    resumed = api.attempt_fields(database, run_id)
    if json_out:
        record["metrics"] = rows
        record["tables"] = tables
        record.update(resumed)
        print_json({"schema": "hrm.run/v1", "run": record}, expand=3)
        return
    from core.registry.attempt_view import describe
    from hrm_tui import render

    screen = console()
    screen.print(render.run_header(record))
    for line in describe(resumed["attempts"], resumed["checkpoint"]):
        screen.print(line, markup=False, highlight=False)
    width = None if wide else screen.width
    print_tables([render.epoch_table(rows, width=width),
                  *render.layer_tables(rows, width=width, max_epochs=None if wide else 12),
                  render.summary_table(record["latest"]),
                  *(render.result_table(t["name"], t["rows"], t["stage"]) for t in tables)], wide=wide)
    if run.stderr_tail and run.status != RunStatus.COMPLETED.value:
        screen.print("[dim]stderr tail:[/dim]")
        screen.print(run.stderr_tail[-1500:], markup=False, highlight=False)


def _label(ctx, db) -> str:
    """The registry as ``core.api`` names it in messages (a ``sqlite:///`` URL of the absolute path)."""
    from core.facade import fastread

    return f"sqlite:///{fastread.sqlite_file(db_target(ctx, db)).resolve()}"


def logs(
    ctx: typer.Context,
    run_id: RunIdArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the run ends")] = False,
    db: DbOption = None,
) -> None:
    """The run's log: worker output (stdout/stderr), then the worker's and scheduler's notes; live with -f."""
    from core import api

    database = registry(ctx, db)
    api.require_run(database, run_id)
    # The local worker.log, or on another host the output the worker shipped into the registry; then
    # the registry's log lines (the worker's and the scheduler's notes). -f prints both as they come.
    if not follow:
        for text in api.tail_worker_log(database, run_id):
            sys.stdout.write(text)
            sys.stdout.flush()
        _print_log_lines(api.logs_since(database, run_id))
        return
    offset, last_line = 0, 0
    while True:
        run = api.require_run(database, run_id)
        while (chunk := api.read_worker_log(database, run_id, offset)) is not None:
            offset = chunk.end
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
        lines = api.logs_since(database, run_id, after_id=last_line)
        _print_log_lines(lines)
        last_line = lines[-1]["id"] if lines else last_line
        if run.status.is_terminal:
            return
        time.sleep(0.3)


def _print_log_lines(lines) -> None:
    for line in lines:
        console().print(f"[dim]{time.strftime('%H:%M:%S', time.localtime(line['ts']))} {line['source']}:[/dim] "
                        f"{line['message']}", highlight=False)


def cancel(
    ctx: typer.Context,
    run_id: RunIdArgument,
    force: Annotated[bool, typer.Option(
        "--force", help="end it now whatever its worker's state (an orphan of a gone host, a stuck worker)")] = False,
    db: DbOption = None,
) -> None:
    """Cancel a run (graceful SIGTERM, then SIGKILL after a grace period)."""
    from core import api
    from core.registry.status import RunStatus

    run = api.cancel(registry(ctx, db), run_id, force=force)
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
