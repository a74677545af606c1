"""``hrm compare``, ``hrm reproduce``, ``hrm report``, ``hrm sweep``: comparison tables and re-runs of the reports.

Commands parse options, call :mod:`core.compare` / :mod:`core.reproduce` / :mod:`core.sweep` /
:mod:`core.report` and render; Rich renderers of :class:`core.compare.Table` live here.
"""

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from core import api
from core.compare import FORMATS, CompareError, Table, export, summary_line
from hrm_tui.cli.common import MAX_ID, DbOption, registry

console = Console()
err_console = Console(stderr=True)
# (this module is imported only when one of its commands runs, so Rich at the top costs nothing else)
WIDE = 240
"""Width used when stdout is not a terminal, so that piped report tables are not squeezed."""


def _out_console() -> Console:
    return console if console.is_terminal else Console(width=WIDE)



class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    latex = "latex"


class VariantChoice(str, Enum):
    published = "published"
    corrected = "corrected"


EXTENSIONS = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".json": "json", ".tex": "latex"}
STATUS_STYLE = {"ok": "green", "out": "bold red", "missing": "yellow", "n/a": "dim", "info": "dim", "ref": "dim cyan"}


def _db(ctx: typer.Context, db: Optional[str], *, create: bool = False):
    return registry(ctx, db, create=create)


# --- Rich rendering ---------------------------------------------------------------------------

def rich_table(table: Table, columns=None, *, title: Optional[str] = None, caption: bool = True,
               tight: bool = False) -> RichTable:
    """A :class:`core.compare.Table` as a Rich table (``columns``: only these, in order; ``title``
    replaces the table's); out-of-tolerance cells red with ✗. A column is never narrower than its
    values (numbers are never cut; text wraps past :data:`TEXT_CAP` cells); headers wrap at spaces.
    ``tight``: number columns no wider than their values either, so that their headers wrap rather
    than a text column."""
    out = RichTable(title=table.title if title is None else title, title_justify="left", header_style="bold",
                    show_lines=False)
    grouped = any(c.group for c in table.columns)
    columns = table.human_columns() if columns is None else columns
    for col in columns:
        natural = _natural_width(table, col, grouped)
        out.add_column(_label(col, grouped), justify="left" if col.type == "text" else "right",
                       overflow="fold", max_width=TEXT_CAP if col.type == "text" else natural if tight else None,
                       min_width=None if col.type == "text" else natural)
    for i in range(len(table.rows)):
        out.add_row(*(_cell(table, i, col) for col in columns))
    if table.notes and caption:
        out.caption = "\n".join(table.notes)
        out.caption_justify = "left"
    return out


TEXT_CAP = 40
"""Widest a text column (a config value, a data description) is printed in a table; longer text wraps."""


def _label(col, grouped: bool) -> str:
    if grouped and col.group:
        suffix = col.key.rsplit(".", 1)[-1]
        return {"pub": f"{col.group}\npublished", "ours": "\nours", "diff": "\nΔ"}.get(suffix, col.label)
    return col.label


def _cell(table: Table, i: int, col) -> Text:
    row = table.rows[i]
    text = table.cell_text(i, col)
    status = row.get(col.status_key) if col.status_key else None
    if status == "out":
        return Text(f"{text} ✗", style=STATUS_STYLE["out"])
    if status in ("missing", "n/a", "ref", "info") and row.get(col.key) is None:
        return Text(status, style=STATUS_STYLE[status])
    if status == "ok" and row.get(col.key) is not None:
        return Text(text, style="green")
    return Text(text)


def _natural_width(table: Table, col, grouped: bool) -> int:
    """Cells the column needs to show every value whole (text: up to TEXT_CAP) and its header's
    longest word (a header wraps at spaces)."""
    widest = max([cell_len(word) for word in _label(col, grouped).split()] +
                 [_cell(table, i, col).cell_len for i in range(len(table.rows))])
    return min(widest, TEXT_CAP) if col.type == "text" else widest


def fitted_tables(table: Table, width: int) -> list:
    """The table as Rich tables no wider than ``width``: one when it fits, else blocks of columns
    (like a wide DataFrame's printout), each repeating the first column (what a row is) and keeping a
    header group (published | ours | Δ) together, so that no column is squeezed and no number cut."""
    grouped = any(c.group for c in table.columns)
    columns = table.human_columns()
    cost = {id(col): _natural_width(table, col, grouped) + 3 for col in columns}  # padding and a border
    if len(columns) < 2 or 1 + sum(cost.values()) <= width:
        roomy = 1 + sum(max(cell_len(line) for line in _label(col, grouped).split("\n")) + 3
                        for col in columns) <= width
        return _titled([rich_table(table, title="", caption=False, tight=not roomy)], table)
    head, units = columns[0], []
    for col in columns[1:]:
        if units and col.group and units[-1][-1].group == col.group:
            units[-1].append(col)
        else:
            units.append([col])
    blocks: list[list] = [[]]
    used = 1 + cost[id(head)]
    for unit in units:
        need = sum(cost[id(col)] for col in unit)
        if blocks[-1] and used + need > width:
            blocks.append([])
            used = 1 + cost[id(head)]
        blocks[-1] += unit
        used += need
    parts: list = []
    for n, block in enumerate(blocks, start=1):
        if n > 1:
            parts.append(Text(f"(continued, {n}/{len(blocks)})", style="dim"))
        parts.append(rich_table(table, [head, *block], title="", caption=False, tight=True))
    return _titled(parts, table)


def _titled(parts: list, table: Table) -> list:
    """The title above and the notes below, as lines of the terminal's width, not the table's."""
    title = [Text(table.title, style="italic")] if table.title else []
    return [*title, *parts, *(Text(note, style="dim") for note in table.notes)]


def _emit(tables: list[Table], fmt: Format, out: Optional[Path], *, summary=None, source=None) -> None:
    kind = fmt.value
    if out is not None and kind == "table":
        kind = EXTENSIONS.get(out.suffix.lower(), "")
        if not kind:
            raise api.UserError(f"--out {out}: give --format (markdown, csv, json, latex) or a .md/.csv/.json/.tex name", 2)
    if kind == "table":
        screen = _out_console()
        for table in tables:
            for part in fitted_tables(table, screen.width):
                screen.print(part)
            screen.print()
        if summary:
            screen.print(_summary_text(summary))
        return
    try:
        text = export(tables, kind, summary=summary, source=source)
    except CompareError as exc:
        raise api.UserError(str(exc), 2) from None
    if out is None:
        sys.stdout.write(text)
    else:
        write_file(out, text)
        err_console.print(f"wrote {out} ({kind})")


def out_path(value: Optional[str]) -> Optional[Path]:
    """``--out`` as a path; an empty one is a usage error (it would mean the working folder)."""
    if value is None:
        return None
    if not value.strip():
        raise api.UserError("--out: empty path (give a file or folder name)", 2)
    return Path(value)


def write_file(path: Path, text: str) -> None:
    """Write ``--out`` (folders created); an unwritable place is one error line, not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise api.UserError(f"cannot write --out {path}: {exc.strerror or exc}", 1) from None


def _summary_text(summary) -> Text:
    counts = summary.get("counts", {})
    style = "bold green" if summary.get("within_tolerance") else ("bold red" if counts.get("out") else "yellow")
    return Text(summary_line(summary), style=style)


# --- hrm compare ------------------------------------------------------------------------------

def compare(
    ctx: typer.Context,
    runs: Annotated[Optional[list[int]], typer.Argument(metavar="RUN_ID", min=1, max=MAX_ID, help="run ids to compare (in this order)")] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", "-e", help="runs of this experiment")] = None,
    last: Annotated[Optional[int], typer.Option("--last", "-n", min=1, max=MAX_ID, help="only the newest N runs")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", help="runs with this tag (a sweep: mean ± std over seeds; a --search sweep: trials ranked)")] = None,
    where: Annotated[Optional[str], typer.Option("--where", "-w", help="runs this filter selects (the `hrm ls --where` language)")] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", metavar="KEY[:min|max]", help="rank runs by a metric's best (min or max) value")] = None,
    report: Annotated[Optional[str], typer.Option("--report", "-r", help="published vs ours for a report: 000, 001, 002, 003, 004")] = None,
    exp: Annotated[Optional[list[str]], typer.Option("--exp", help="with --report: only these experiments (4, 5-11, 5,6)")] = None,
    variant: Annotated[VariantChoice, typer.Option("--variant", help="with --report: which variant's runs to use")] = VariantChoice.published,
    baseline: Annotated[Optional[int], typer.Option("--baseline", "-b", min=1, max=MAX_ID, help="add the change vs this run in % (+ = better)")] = None,
    metric: Annotated[Optional[list[str]], typer.Option("--metric", "-m", help="extra column KEY[:last|min|max|best|min_epoch|max_epoch|count] (repeatable)")] = None,
    layers: Annotated[bool, typer.Option("--layers", help="per-layer tables (layer × epoch for one run, layer × run for several)")] = False,
    layer_epoch: Annotated[Optional[list[int]], typer.Option("--epoch", min=0, max=MAX_ID, help="with --layers: these epochs only (one run) / this epoch (several)")] = None,
    stages: Annotated[bool, typer.Option("--stages", help="per-stage table (s<k>/ summaries)")] = False,
    thresholds: Annotated[bool, typer.Option("--thresholds", help="the runs' threshold analysis tables")] = False,
    aggregate: Annotated[Optional[bool], typer.Option("--aggregate/--no-aggregate", show_default="on with --tag when seeds repeat", help="mean ± std over seeds")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="write to this file instead of stdout")] = None,
    check: Annotated[bool, typer.Option("--check", help="with --report: exit 1 unless every number is within tolerance")] = False,
    use: Annotated[Optional[list[str]], typer.Option("--use", help="with --report: pin a run key to a run, KEY=RUN (e.g. exp10.routed=17)")] = None,
    schema: Annotated[bool, typer.Option("--schema", help="print the JSON schema of --format json and exit")] = False,
    db: DbOption = None,
) -> None:
    """Compare runs side by side, or a report's published numbers with ours (--report)."""
    from core import compare as cmp

    if schema:
        sys.stdout.write(json.dumps(cmp.COMPARE_JSON_SCHEMA, indent=2, ensure_ascii=False) + "\n")
        return
    out = out_path(out)

    if report is not None:
        if runs or experiment or last:
            raise api.UserError("--report selects its own runs: drop the run ids / --experiment / --last", 2)
        _compare_report(ctx, report, exp, variant.value, tag, fmt, out, check, _parse_use(use), db)
        return
    if exp or use:
        raise api.UserError(f"{'--exp' if exp else '--use'} needs --report", 2)
    if check:
        raise api.UserError("--check needs --report", 2)
    if runs and (experiment or tag or last or where):
        raise api.UserError("give run ids or --experiment/--tag/--where/--last, not both", 2)
    if not runs and not (experiment or tag or where):
        raise api.UserError("nothing to compare: give run ids, --experiment X [--last N], --tag T, --where F or --report R", 2)
    if where:
        api.check_filter(where)
    if sort:
        from core.facade import parse_objective

        parse_objective(sort)
    database = _db(ctx, db)
    if runs:
        found = {r["id"]: r for r in api.list_records(database, ids=list(runs))}
        missing = [str(i) for i in runs if i not in found]
        if missing:
            raise api.UserError(f"no run {', '.join(missing)} in {database.safe_url}", 1)
        records = [found[i] for i in dict.fromkeys(runs)]
    else:
        records = api.list_records(database, experiment=experiment, tag=tag, last=last, where=where)
        records.reverse()  # oldest first: the order they were queued in
        if not records:
            what = " ".join(x for x in (f"experiment {experiment}" if experiment else "", f"tag {tag}" if tag else "",
                                        f"--where {where!r}" if where else "") if x)
            raise api.UserError(f"no runs with {what} in {database.safe_url}", 1)
    if tag and not sort:
        from core.facade import recorded_objective

        sort = recorded_objective(database, tag)  # a --search sweep: its trials best first
    if sort:
        from core.facade import rank_records

        records = rank_records(records, sort)
    if baseline is not None and baseline not in {r["id"] for r in records}:
        base = api.list_records(database, ids=[baseline])
        if not base:
            raise api.UserError(f"no run {baseline} in {database.safe_url}", 1)
        records = base + records
    if aggregate is None:
        aggregate = bool(tag) and any(len(g) > 1 for g in cmp.seed_groups(records))
    try:
        tables = [cmp.aggregate_table(records, metrics=metric or (), baseline=baseline) if aggregate
                  else cmp.runs_table(records, metrics=metric or (), baseline=baseline)]
        if stages:
            tables.append(cmp.stages_table(records, metrics=metric or ()))
        if layers:
            rows = {r["id"]: api.metrics_since(database, r["id"], kind="layer") for r in records}
            if len(records) > 1 and layer_epoch and len(layer_epoch) > 1:
                raise api.UserError("with several runs --epoch takes one epoch", 2)
            found_layers = cmp.layer_tables(records, rows, epochs=layer_epoch if len(records) == 1 else None,
                                            epoch=layer_epoch[0] if layer_epoch and len(records) > 1 else None)
            if not found_layers:
                err_console.print("[yellow]no per-layer metrics in these runs[/yellow]")
            tables += found_layers
        if thresholds:
            by_run = {r["id"]: api.result_tables(database, r["id"]) for r in records}
            found_thresholds = cmp.threshold_tables(records, by_run)
            if not found_thresholds:
                err_console.print("[yellow]no threshold tables in these runs[/yellow]")
            tables += found_thresholds
    except CompareError as exc:
        raise api.UserError(str(exc), 2) from None
    source = {"runs": [r["id"] for r in records], "tag": tag, "experiment": experiment, "baseline": baseline}
    _emit(tables, fmt, out, source=source)


def _parse_use(values: Optional[list[str]]) -> dict[str, int]:
    pinned: dict[str, int] = {}
    for value in values or ():
        key, sep, run = value.partition("=")
        if not sep or not key.strip() or not run.strip().isdigit():
            raise api.UserError(f"--use {value!r}: expected KEY=RUN_ID", 2)
        if not 1 <= int(run) <= MAX_ID:
            raise api.UserError(f"--use {value!r}: a run id is between 1 and {MAX_ID}", 2)
        pinned[key.strip()] = int(run)
    return pinned


def _compare_report(ctx, report, exp, variant, tag, fmt, out, check, use, db) -> None:
    from core.facade import compare_report

    database = _db(ctx, db)
    result = compare_report(database, report, variant=variant, exps=exp, tag=tag, use=use)
    with_runs = fmt in (Format.table, Format.markdown) or (out is not None and out.suffix.lower() in (".md", ".markdown"))
    tables = [result.runs_table, *result.tables] if with_runs else result.tables
    summary = result.summary
    _emit(tables, fmt, out, summary=summary,
          source={"report": report, "variant": variant, "tag": tag, "exps": exp or None,
                  "runs": {k: (r["id"] if r else None) for k, r in result.matches.items()}})
    if out is not None or fmt in (Format.csv, Format.json, Format.latex):
        err_console.print(_summary_text(summary))  # markdown and table output carry it already
    if check and not summary["within_tolerance"]:
        raise typer.Exit(1)


# --- hrm reproduce ----------------------------------------------------------------------------

def reproduce(
    ctx: typer.Context,
    report: Annotated[str, typer.Argument(metavar="REPORT", help="report to regenerate: 000, 001, 002, 003 or 004")],
    variant: Annotated[VariantChoice, typer.Option("--variant", help="published: the reports' code paths, quirks included; corrected: the fixes")] = VariantChoice.published,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="only these experiments of the report (e.g. 4, 5-11)")] = None,
    priority: Annotated[int, typer.Option("--priority", min=-MAX_ID, max=MAX_ID, help="higher runs first")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be queued; write nothing")] = False,
    start: Annotated[bool, typer.Option("--start-scheduler/--no-start-scheduler", help="start a background scheduler when none is alive")] = True,
    db: DbOption = None,
) -> None:
    """Queue every run needed to regenerate a report's tables (tag reproduce-<report>-<variant>)."""
    from core.facade import plan_reproduce, queue_reproduce, reproduce_tag

    items = plan_reproduce(report, variant.value, only)
    tag = reproduce_tag(report, variant.value)
    if dry_run:
        from core.facade import catalog

        table = RichTable(title=f"would queue (tag {tag})", title_justify="left", header_style="bold")
        for col in ("exp", "key", "experiment", "config"):
            table.add_column(col)
        for item in items:
            config = " ".join(f"{k}={v}" for k, v in item.config.items())
            note = "" if item.experiment in catalog() else "  [yellow](not in the catalog yet)[/yellow]"
            table.add_row(item.exp, item.key, item.experiment + note, config)
        console.print(table)
        return
    database = _db(ctx, db, create=True)
    result = queue_reproduce(database, report, items, variant.value, priority=priority)
    table = RichTable(title=f"reproduce {report} ({variant.value})", title_justify="left", header_style="bold")
    for col in ("exp", "key", "experiment", "run", "state"):
        table.add_column(col)
    for item, run_id in result.queued:
        table.add_row(item.exp, item.key, item.experiment, str(run_id), Text("queued", style="cyan"))
    for item, run_id in result.existing:
        table.add_row(item.exp, item.key, item.experiment, str(run_id), Text("already queued/done", style="dim"))
    for item in result.unavailable:
        table.add_row(item.exp, item.key, item.experiment, "—", Text("not in the catalog", style="yellow"))
    err_console.print(table)
    if not result.queued and not result.existing:
        raise api.UserError(f"nothing to queue for report {report}: its experiments are not in the catalog", 1)
    err_console.print(f"{len(result.queued)} queued, {len(result.existing)} already there, "
                      f"{len(result.unavailable)} unavailable; compare with: hrm compare --report {report} "
                      f"--variant {variant.value}")
    sys.stdout.write(tag + "\n")
    if result.queued:
        _start_scheduler(database, start)


def _start_scheduler(database, start: bool) -> None:
    from hrm_tui.cli.common import ensure_scheduler

    ensure_scheduler(database, start, quiet=False)


# --- hrm report -------------------------------------------------------------------------------

def report_cmd(
    ctx: typer.Context,
    report: Annotated[str, typer.Argument(metavar="REPORT", help="report: 000, 001, 002, 003 or 004")],
    out: Annotated[str, typer.Option("--out", "-o", help="directory for the markdown document and its PNG plots")],
    variant: Annotated[VariantChoice, typer.Option("--variant", help="which variant's runs to use")] = VariantChoice.published,
    exp: Annotated[Optional[list[str]], typer.Option("--exp", help="only these experiments (e.g. 5-11)")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", help="only runs with this tag")] = None,
    db: DbOption = None,
) -> None:
    """Write the report regenerated with our numbers: markdown, published vs ours, quirks, PNG plots."""
    from core.facade import write_report

    out = out_path(out)
    try:
        if out.exists() and not out.is_dir():
            raise api.UserError(f"--out {out} exists and is not a directory", 2)
        path = write_report(_db(ctx, db), report, out, variant=variant.value, exps=exp, tag=tag)
    except OSError as exc:
        raise api.UserError(f"cannot write the report into {out}: {exc.strerror or exc}", 1) from None
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    err_console.print(f"wrote {path} and {len(pngs)} plot(s)")
    sys.stdout.write(str(path) + "\n")


# --- hrm sweep --------------------------------------------------------------------------------

def sweep(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="experiment to sweep (see `hrm experiments`)")],
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="NAME=V1,V2,... one grid axis (repeatable)")] = None,
    fixed: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="NAME=VALUE fixed for every point (repeatable)")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="repeat every point with N seeds (seed, seed+1, ...)")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", show_default="sweep-<experiment>-<time>", help="tag of the sweep")] = None,
    priority: Annotated[int, typer.Option("--priority", min=-MAX_ID, max=MAX_ID, help="higher runs first")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and show the grid; write nothing")] = False,
    start: Annotated[bool, typer.Option("--start-scheduler/--no-start-scheduler", help="start a background scheduler when none is alive")] = True,
    search: Annotated[Optional[str], typer.Option("--search", metavar="random|tpe", help="an Optuna search instead of a grid: --param lr=log(1e-4,1e-2) --param layers=int(2,6) --param act=a,b")] = None,
    trials: Annotated[Optional[int], typer.Option("--trials", min=1, max=10_000, show_default="20", help="with --search: how many trials")] = None,
    objective: Annotated[Optional[str], typer.Option("--objective", metavar="KEY:min|max", help="with --search: the metric to optimise (its best value over the run)")] = None,
    parallel: Annotated[Optional[int], typer.Option("--parallel", min=1, max=1000, show_default="1", help="with --search: trials queued or running at once")] = None,
    prune: Annotated[bool, typer.Option("--prune", help="with --search: stop trials whose epochs fall behind (median pruner)")] = False,
    sampler_seed: Annotated[Optional[int], typer.Option("--sampler-seed", help="with --search: seed of the sampler")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="with --search: the ranked trials as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Queue a grid of runs (every point validated first) under one tag; prints the tag.

    With --search random|tpe, Optuna proposes the configs instead: the command stays in the foreground,
    queues trials through the scheduler and tells Optuna each result (re-run with --tag T to resume).
    """
    from core.facade import plan_sweep, queue_sweep

    if search is not None:
        if seeds is not None:
            raise api.UserError("--seeds is for grids: with --search, search the seed or --set it", 2)
        from hrm_tui.cli.search import search_sweep

        search_sweep(ctx, experiment, param or [], fixed=fixed or [], search=search, trials=trials or 20,
                     objective=objective, parallel=parallel or 1, prune=prune, sampler_seed=sampler_seed, tag=tag,
                     priority=priority, dry_run=dry_run, start=start, json_out=json_out, db=db)
        return
    if objective or prune or sampler_seed is not None or json_out or trials is not None or parallel is not None:
        raise api.UserError("--trials, --objective, --parallel, --prune, --sampler-seed and --json go with --search random|tpe", 2)
    plan = plan_sweep(experiment, param or [], fixed=fixed or [], seeds=seeds, tag=tag, preflight=dry_run)
    axes = "  ".join(f"{k}={','.join(v)}" for k, v in plan.axes.items())
    if dry_run:
        err_console.print(f"{len(plan.points)} runs of {experiment}: {axes} (dry run, nothing queued)")
        for point in plan.points:
            console.print(json.dumps({k: point[k] for k in plan.axes}), highlight=False)
        return
    database = _db(ctx, db, create=True)
    ids = queue_sweep(database, plan, priority=priority)
    err_console.print(f"{len(ids)} runs of {experiment} queued (runs {ids[0]}–{ids[-1]}): {axes}")
    err_console.print(f"compare with: hrm compare --tag {plan.tag}")
    sys.stdout.write(plan.tag + "\n")
    _start_scheduler(database, start)


__all__ = ["compare", "reproduce", "report_cmd", "sweep", "rich_table", "FORMATS"]
