"""``hrm tag``, ``hrm note``, ``hrm export`` and ``hrm import``: annotate runs after submit and move
them in and out of other tools (TensorBoard, MLflow, CSV, Parquet)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from hrm_tui.cli import HrmCommand, HrmGroup
from hrm_tui.cli.common import MAX_ID, DbOption, JsonOption, RunIdArgument, print_json, registry


def _single_command_app() -> typer.Typer:
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
                       context_settings={"help_option_names": ["-h", "--help"]})


tag_app = _single_command_app()


@tag_app.command("tag", cls=HrmCommand, context_settings={"ignore_unknown_options": True})  # -name is a tag, not an option
def tag(
    ctx: typer.Context,
    run_id: RunIdArgument,
    changes: Annotated[list[str], typer.Argument(metavar="+TAG|-TAG", help="+name adds a tag, -name removes one")],
    db: DbOption = None,
) -> None:
    """Add (+name) and remove (-name) tags of a run; prints its tags afterwards."""
    from core import api

    add, remove = [], []
    for change in changes:
        if len(change) < 2 or change[0] not in "+-":
            raise api.UserError(f"{change!r}: write +TAG to add a tag or -TAG to remove one", 2)
        (add if change[0] == "+" else remove).append(change[1:])
    tags = api.edit_tags(registry(ctx, db), run_id, add=add, remove=remove)
    sys.stdout.write((" ".join(tags) if tags else "(no tags)") + "\n")


def note(
    ctx: typer.Context,
    run_id: RunIdArgument,
    text: Annotated[Optional[str], typer.Argument(metavar="TEXT", help="the note (replaces the previous one); omit to print it")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove the note")] = False,
    db: DbOption = None,
) -> None:
    """Set, print or clear a run's free-text note (searchable: hrm ls --where "note ~ 'word'")."""
    from core import api

    database = registry(ctx, db)
    if clear and text is not None:
        raise api.UserError("give a note or --clear, not both", 2)
    if clear or text is not None:
        run = api.set_note(database, run_id, None if clear else text)
    else:
        run = api.require_run(database, run_id)
    current = getattr(run, "note", None)
    if current:
        sys.stdout.write(current + "\n")
    elif not clear:
        sys.stderr.write(f"run {run_id} has no note\n")


class ExportFormat(str, Enum):
    tensorboard = "tensorboard"
    mlflow = "mlflow"
    csv = "csv"
    parquet = "parquet"


def export(
    ctx: typer.Context,
    runs: Annotated[Optional[list[int]], typer.Argument(
        metavar="RUN_ID", min=1, max=MAX_ID, help="runs to export (or select them with --tag / --where)")] = None,
    to: Annotated[Optional[tuple[ExportFormat, str]], typer.Option(
        "--to", metavar="FORMAT TARGET", show_default=False,
        help="tensorboard DIR | mlflow URI | csv DIR | parquet DIR")] = None,
    tag_filter: Annotated[Optional[str], typer.Option("--tag", "-t", help="export the runs with this tag")] = None,
    where: Annotated[Optional[str], typer.Option("--where", "-w", help="export the runs this filter selects")] = None,
    db: DbOption = None,
) -> None:
    """Export runs: hrm export 3 4 --to tensorboard tb/ | --to mlflow sqlite:///mlflow.db | --to csv out/ | --to parquet out/.

    A folder target must be new or empty; nothing is left half-written when an export fails.
    """
    from core import api

    if to is None:
        raise api.UserError("--to FORMAT TARGET is required: tensorboard DIR, mlflow URI, csv DIR or parquet DIR", 2)
    fmt, target = to
    ids = list(runs or ())
    if not target.strip():
        raise api.UserError(f"--to {fmt.value} needs a target: {'a tracking URI' if fmt is ExportFormat.mlflow else 'a folder'}", 2)
    if where:
        api.check_filter(where)
    database = registry(ctx, db)
    if tag_filter or where:
        if ids:
            raise api.UserError("give run ids or --tag/--where, not both", 2)
        ids = [r.id for r in reversed(api.list_runs(database, tag=tag_filter, where=where, enriched=False))]
        if not ids:
            raise api.UserError("no runs match --tag/--where: nothing exported", 1)
    if not ids:
        raise api.UserError("nothing to export: give run ids, --tag or --where", 2)
    message = api.export_runs(database, ids, fmt.value, target)
    sys.stderr.write(message + "\n")


import_app = typer.Typer(cls=HrmGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                         context_settings={"help_option_names": ["-h", "--help"]},
                         help="Bring runs from other tools in as read-only records.")


@import_app.callback()
def import_group() -> None:
    """Bring runs from other tools in as read-only records (hrm import mlflow URI)."""


@import_app.command("mlflow", cls=HrmCommand)
def import_mlflow(
    ctx: typer.Context,
    uri: Annotated[str, typer.Argument(metavar="URI", help="MLflow tracking URI (sqlite:///mlflow.db, http://host:5000, ...)")],
    experiment: Annotated[Optional[list[str]], typer.Option("--experiment", "-e", help="only this MLflow experiment (repeatable)")] = None,
    tags: Annotated[Optional[list[str]], typer.Option("--tag", "-t", help="add this tag to every imported run (repeatable)")] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Import an MLflow store's finished runs (params → config, metric histories, tags) as read-only records.

    Imported runs are tagged `imported`; they cannot be retried. Runs imported before are skipped.
    """
    from core import api

    database = registry(ctx, db, create=True)
    result = api.import_mlflow(database, uri, experiments=experiment or (), tags=tags or ())
    if json_out:
        print_json({"imported": result.imported, "skipped_existing": result.skipped_existing,
                    "skipped_unfinished": result.skipped_unfinished}, expand=1)
        return
    parts = [f"{len(result.imported)} run(s) imported"]
    if len(result.imported) == 1:
        parts[0] += f" (run {result.imported[0]})"
    elif result.imported:
        parts[0] += f" (runs {result.imported[0]}–{result.imported[-1]})"
    if result.skipped_existing:
        parts.append(f"{result.skipped_existing} imported before")
    if result.skipped_unfinished:
        parts.append(f"{result.skipped_unfinished} still running in MLflow")
    sys.stderr.write(", ".join(parts) + "\n")
