"""``hrm``: queue, watch and manage experiment runs from the shell.

Commands stay thin: parse options, call :mod:`core.api`, render with :mod:`hrm_tui.render`.
A user's mistake ends with one ``error: ...`` line on stderr and exit code 2 (usage) or 1.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from typer.core import TyperGroup

from core import api
from core.experiments import catalog, get_experiment
from core.experiments.schema import describe
from core.registry import RegistryError, RunStatus, store
from hrm_tui import render
from hrm_tui.options import choice_enum, option_parameters, plain_values, with_signature

try:  # Typer ≥ 0.29 vendors click; older releases raise click's own exceptions
    from typer import TyperException as UsageProblem
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as UsageProblem

console = Console()
err_console = Console(stderr=True)


class OneLineErrors(TyperGroup):
    """Turn usage errors and :class:`core.api.UserError` into a single ``error:`` line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            code = 1
        except (typer.Exit,) as exc:
            code = exc.exit_code
        except UsageProblem as exc:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            print(f"error: {message}", file=sys.stderr)
            code = getattr(exc, "exit_code", 2)
        except api.UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = exc.exit_code
        except RegistryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors, no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="hrm-tui: queue, run, watch and compare hierarchical / early-exit LM experiments.",
)
run_app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, help="Validate a config and queue a run of an experiment.")
app.add_typer(run_app, name="run")

DbOption = Annotated[Optional[str], typer.Option("--db", envvar="HRM_DB", help="registry path or SQLAlchemy URL [default: ./runs.db]")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output (schema in the README)")]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# --- hrm run <experiment> ---------------------------------------------------------------------

def _common_run_parameters() -> list:
    import inspect

    def opt(name, annotation, default, *decls, help):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[annotation, typer.Option(*decls, help=help, rich_help_panel="Run")])

    return [
        opt("hrm_db", Optional[str], None, "--db", help="registry path or URL [env HRM_DB, default ./runs.db]"),
        opt("hrm_follow", bool, False, "--follow", "-f", help="stream the run's metrics until it ends"),
        opt("hrm_wait", bool, False, "--wait", help="block silently; exit 0 only if the run completed"),
        opt("hrm_tags", list[str], [], "--tag", "-t", help="tag the run (repeatable)"),
        opt("hrm_priority", int, 0, "--priority", help="higher runs first"),
        opt("hrm_start", bool, True, "--start-scheduler/--no-start-scheduler",
            help="start a background scheduler when none is alive"),
    ]


def _make_run_command(name: str):
    experiment = get_experiment(name)

    def command(**kwargs: Any) -> None:
        kwargs = plain_values(kwargs)
        db_arg = kwargs.pop("hrm_db") or _root_db()
        follow, wait = kwargs.pop("hrm_follow"), kwargs.pop("hrm_wait")
        tags, priority, start = kwargs.pop("hrm_tags"), kwargs.pop("hrm_priority"), kwargs.pop("hrm_start")
        api.validate_config(name, kwargs)  # before the registry is touched: bad input writes nothing
        db = api.open_registry(db_arg, create=True)
        run = api.submit(db, name, kwargs, tags=tags, priority=priority)
        if wait:
            _ensure_scheduler(db, start, quiet=True)
            final = api.wait(db, run.id)
            raise typer.Exit(0 if final.status == RunStatus.COMPLETED.value else 1)
        err_console.print(f"run [bold]{run.id}[/bold] queued ({name}, {run.variant})")
        sys.stdout.write(f"{run.id}\n") if not sys.stdout.isatty() else None
        _ensure_scheduler(db, start, quiet=False)
        if follow:
            final = _follow(db, run.id)
            raise typer.Exit(0 if final == RunStatus.COMPLETED.value else 1)

    command.__name__ = name.replace("-", "_")
    command.__doc__ = experiment.description
    params = option_parameters(experiment.config_cls) + _common_run_parameters()
    return with_signature(command, params)


def _ensure_scheduler(db, start: bool, *, quiet: bool) -> None:
    if api.scheduler_alive(db):
        return
    if start:
        pid = api.start_background_scheduler(db)
        if not quiet:
            err_console.print(f"[dim]started a background scheduler (pid {pid}); it exits when idle[/dim]")
    elif not quiet:
        err_console.print("[yellow]no scheduler is running:[/yellow] start one with `hrm scheduler`")


for _name in catalog():
    run_app.command(name=_name, help=get_experiment(_name).description)(_make_run_command(_name))


# --- watching ---------------------------------------------------------------------------------

def _follow(db, run_id: int) -> str:
    """Render a run live until it ends; returns the final status."""
    epochs: list[dict[str, Any]] = []
    layers: dict[int, dict[str, float]] = {}
    logs: list[str] = []
    status = "queued"
    live = Live(console=console, refresh_per_second=4, transient=False) if console.is_terminal else None
    if live:
        live.start()
    try:
        for update in api.follow(db, run_id):
            record = api.run_record(update.run)
            status = update.run.status
            for row in update.metrics:
                if row["kind"] == "epoch":
                    epochs.append(row)
                elif row["kind"] == "layer":
                    layers.setdefault(row["layer"], {})[row["key"]] = row["value"]
            logs.extend(line["message"] for line in update.logs)
            if live:
                live.update(render.follow_view(record, epochs, layers, logs))
            else:
                _print_plain_update(update)
    finally:
        if live:
            live.stop()
    final = store.get_run(db, run_id)
    err = f" ({final.error})" if final.error else ""
    err_console.print(f"run {run_id} {render.status_text(final.status)}{err}")
    return final.status


def _print_plain_update(update: api.FollowUpdate) -> None:
    """Non-terminal output: one line per epoch with its per-layer values."""
    by_epoch: dict[tuple, dict[str, Any]] = {}
    for row in update.metrics:
        if row["kind"] not in ("epoch", "layer"):
            continue
        slot = by_epoch.setdefault((row["stage"], row["epoch"]), {"metrics": {}, "layers": {}})
        if row["kind"] == "epoch":
            slot["metrics"][row["key"]] = row["value"]
        else:
            slot["layers"].setdefault(row["layer"], {})[row["key"]] = row["value"]
    for (stage, epoch), slot in by_epoch.items():
        prefix = (f"stage {stage} " if stage else "") + (f"epoch {epoch}" if epoch is not None else "final")
        metrics = "  ".join(f"{k} {render.fmt(v)}" for k, v in slot["metrics"].items())
        layer_text = "  ".join(
            f"L{layer} " + "/".join(render.fmt(v) for v in values.values()) for layer, values in sorted(slot["layers"].items())
        )
        console.print(f"{prefix}  {metrics}" + (f"  | {layer_text}" if layer_text else ""), highlight=False,
                      soft_wrap=True)
    for line in update.logs:
        console.print(f"[dim]{line['message']}[/dim]", highlight=False, soft_wrap=True)


_ROOT_DB: dict[str, Optional[str]] = {"db": None}


def _root_db() -> Optional[str]:
    return _ROOT_DB["db"]


@app.callback()
def root(
    db: DbOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what the scheduler does")] = False,
) -> None:
    """hrm-tui: queue, run, watch and compare hierarchical / early-exit LM experiments."""
    _ROOT_DB["db"] = db
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


def _db(db: Optional[str], *, create: bool = False):
    return api.open_registry(db or _root_db(), create=create)


@app.command("ls")
def list_runs(
    status: Annotated[Optional[list[RunStatus]], typer.Option("--status", "-s", help="filter by status (repeatable)")] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", "-e", help="filter by experiment")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", help="filter by tag")] = None,
    last: Annotated[Optional[int], typer.Option("--last", "-n", min=1, help="only the newest N runs")] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List runs, newest first."""
    records = api.list_records(_db(db), statuses=[s.value for s in status or ()], experiment=experiment, tag=tag, last=last)
    if json_out:
        _print_json({"schema": api.RUNS_JSON_SCHEMA, "runs": records})
        return
    if not records:
        err_console.print("no runs")
        return
    console.print(render.runs_table(records))


@app.command("show")
def show(
    run_id: Annotated[int, typer.Argument(help="run id")],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A run in full: config, status, timings, per-epoch and per-layer tables, analysis tables."""
    database = _db(db)
    run = api.require_run(database, run_id)
    record = api.list_records(database, ids=[run_id])[0]
    rows = store.metrics(database, run_id)
    tables = store.result_tables(database, run_id)
    if json_out:
        record["metrics"] = rows
        record["tables"] = tables
        _print_json({"schema": "hrm.run/v1", "run": record})
        return
    console.print(render.run_header(record))
    for table in (render.epoch_table(rows), *render.layer_tables(rows), render.summary_table(record["latest"])):
        if table is not None:
            console.print(table)
    for t in tables:
        console.print(render.result_table(t["name"], t["rows"], t["stage"]))
    if run.stderr_tail and run.status != RunStatus.COMPLETED.value:
        console.print("[dim]stderr tail:[/dim]")
        console.print(run.stderr_tail[-1500:], markup=False, highlight=False)


@app.command("logs")
def logs(
    run_id: Annotated[int, typer.Argument(help="run id")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the run ends")] = False,
    db: DbOption = None,
) -> None:
    """The run's log: worker output (stdout/stderr) followed live with -f."""
    from core.paths import worker_log

    database = _db(db)
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
            console.print(f"[dim]{time.strftime('%H:%M:%S', time.localtime(line['ts']))} {line['source']}:[/dim] "
                          f"{line['message']}", highlight=False)


@app.command("cancel")
def cancel(run_id: Annotated[int, typer.Argument(help="run id")], db: DbOption = None) -> None:
    """Cancel a run (graceful SIGTERM, then SIGKILL after a grace period)."""
    run = api.cancel(_db(db), run_id)
    word = "cancelled" if run.status == RunStatus.CANCELLED.value else "cancel requested"
    console.print(f"run {run_id}: {word}")


@app.command("retry")
def retry(run_id: Annotated[int, typer.Argument(help="run id")], db: DbOption = None,
          start: Annotated[bool, typer.Option("--start-scheduler/--no-start-scheduler")] = True) -> None:
    """Queue a new run with the same experiment and config."""
    database = _db(db)
    run = api.retry(database, run_id)
    console.print(f"run {run.id} queued (retry of {run_id})")
    _ensure_scheduler(database, start, quiet=False)


@app.command("delete")
def delete(run_id: Annotated[int, typer.Argument(help="run id")], db: DbOption = None,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False) -> None:
    """Delete a finished run and all its metrics."""
    database = _db(db)
    api.require_run(database, run_id)
    if not yes:
        typer.confirm(f"delete run {run_id} and all its metrics?", abort=True)
    api.delete(database, run_id)
    console.print(f"run {run_id} deleted")


@app.command("experiments")
def experiments(json_out: JsonOption = False) -> None:
    """The catalog: names, descriptions, parameters with defaults and bounds."""
    entries = [describe(e) for e in catalog().values()]
    if json_out:
        _print_json({"schema": "hrm.experiments/v1", "experiments": entries})
        return
    console.print(render.experiments_table(entries))


@app.command("scheduler")
def scheduler(
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPU indices, e.g. 0,1 [default: all visible; none → CPU]")] = None,
    max_parallel: Annotated[Optional[int], typer.Option("--max-parallel", min=1, help="runs at once [default: one per GPU slot, 1 on CPU]")] = None,
    pack: Annotated[int, typer.Option("--pack", min=1, help="runs sharing one GPU")] = 1,
    once: Annotated[bool, typer.Option("--once", help="drain the queue, then exit")] = False,
    idle_exit: Annotated[Optional[float], typer.Option("--idle-exit", min=0, help="exit after this many idle seconds")] = None,
    db: DbOption = None,
) -> None:
    """Run the scheduler in the foreground: launch queued runs as worker subprocesses."""
    from core.scheduler import Scheduler, SchedulerAlreadyRunning, Slots, detect_gpus

    gpu_list = tuple(g.strip() for g in gpus.split(",") if g.strip()) if gpus is not None else detect_gpus()
    slots = Slots(gpu_list, pack, max_parallel or (len(gpu_list) * pack if gpu_list else 1))
    database = _db(db, create=True)
    err_console.print(f"scheduler on {slots.describe()} for {database.url} (Ctrl-C stops; running workers continue)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        Scheduler(database, slots, once=once, idle_exit=idle_exit).run()
    except SchedulerAlreadyRunning as exc:
        raise api.UserError(str(exc), 1) from None


from hrm_tui.cli_compare import register as register_compare  # noqa: E402  (compare, reproduce, report, sweep)

register_compare(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
