"""Rich renderings for the CLI: run lists, run details, the catalog, live follow. No DB access."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from core.registry.view import format_number, record_headline

STATUS_STYLES = {
    "queued": "cyan", "starting": "yellow", "running": "bold yellow", "completed": "green",
    "failed": "bold red", "cancelled": "magenta", "lost": "red",
}


LIVE_STATUSES = ("starting", "running")
"""A run in these is working now: its pass shows a rate and an ETA."""

fmt = format_number
"""Numbers as a researcher reads them (:func:`core.registry.view.format_number`, the one formatter)."""


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_text(progress: Mapping[str, Any], *, live: bool = True) -> str:
    """``s2 ep 26/150``, or during a pass before the first epoch ``base 41% 34 tok/s ETA 12m``
    (``live`` False: a run that ended in the pass, so no rate or ETA: ``base 41%``)."""
    if progress.get("pass"):
        return pass_text(progress["pass"], live=live)
    parts = []
    if progress.get("stage"):
        parts.append(f"s{progress['stage']}")
    total = progress.get("total_epochs")
    if progress.get("epoch"):
        parts.append(f"ep {progress['epoch']}/{total}" if total else f"ep {progress['epoch']}")
    return " ".join(parts) or "—"


def pass_label(phase: str) -> str:
    """``frozen base pass`` → ``base``: the phase's distinctive word(s)."""
    label = phase.removeprefix("frozen ").removesuffix(" pass").strip()
    return label or "pass"


def pass_text(record: Mapping[str, Any], *, live: bool = True) -> str:
    """A pass in a few cells: ``base 41% 34 tok/s ETA 12m`` (``live`` False: ``base 41%``)."""
    percent = int(100 * record["tokens_done"] / record["tokens_total"])  # floor: 100% only once finished
    parts = [pass_label(record["phase"]), f"{percent}%"]
    if live and record.get("tokens_per_s") is not None:
        parts.append(f"{rate(record['tokens_per_s'])} tok/s")
    if live and record.get("eta_s") is not None:
        parts.append(f"ETA {short_duration(record['eta_s'])}")
    return " ".join(parts)


def rate(per_s: float) -> str:
    """``3.4``, ``34``, ``12.3k``, ``1.2M``: a rate in at most five cells."""
    if per_s >= 1e6:
        return f"{per_s / 1e6:.1f}M"
    if per_s >= 1e4:
        return f"{per_s / 1e3:.0f}k"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f}k"
    return f"{per_s:.1f}" if per_s < 10 else f"{per_s:.0f}"


def short_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``: an estimate, to the minute once it is over one."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes = round(seconds / 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def pass_details(record: Mapping[str, Any], *, live: bool = True) -> str | None:
    """``hrm show``'s line for a pass (``info.progress``, under way or over):
    ``frozen base pass 1,234/3,000 tokens (41%), 34 tok/s, ETA 1m10s, elapsed 36s``; None if not one."""
    done, total = record.get("tokens_done"), record.get("tokens_total")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (done, total)) or total <= 0:
        return None
    parts = [f"{record.get('phase') or 'pass'} {fmt(done)}/{fmt(total)} tokens ({int(100 * min(done, total) / total)}%)"]
    for key, show in (("tokens_per_s", lambda v: f"{rate(v)} tok/s"), ("eta_s", lambda v: f"ETA {duration(v)}"),
                      ("elapsed_s", lambda v: f"elapsed {duration(v)}")):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
                and (live or key != "eta_s") and not (key == "eta_s" and done >= total):
            parts.append(show(value))
    return ", ".join(parts)


RUN_COLUMNS = ("id", "status", "headline", "experiment", "progress", "config", "elapsed", "variant", "gpu")
"""``hrm ls`` columns, most important first: a narrow terminal drops them from the end of this list,
so the id, the status and the headline are always shown whole."""
GAP = 2  # columns between cells (collapse_padding)


def runs_table(records: Sequence[Mapping[str, Any]], *, width: int | None = None) -> Table:
    """The run list: only the config keys that differ, and the headline under its own name.

    With ``width`` (the terminal's), columns that do not fit are dropped least important first
    (:data:`RUN_COLUMNS`) instead of squeezing every column; the caption names what was dropped.
    """
    from core.compare import differing_config_keys

    diff = differing_config_keys(records) if len({r["experiment"] for r in records}) == 1 else []
    heads = {r["headline"]["key"] for r in records if r["headline"]["key"]}
    head_title = heads.pop() if len(heads) == 1 else "headline"
    cells: dict[str, list[Any]] = {
        "id": [str(r["id"]) for r in records],
        "experiment": [r["experiment"] for r in records],
        "variant": [r["variant"] for r in records],
        "config": [" ".join(f"{k}={fmt(r['config'].get(k))}" for k in diff[:4]) for r in records] if diff else None,
        "status": [status_text(r["status"]) for r in records],
        "progress": [progress_text(r["progress"], live=r["status"] in LIVE_STATUSES) for r in records],
        "headline": [fmt(record_headline(r)) for r in records],
        "elapsed": [duration(r["elapsed_s"]) for r in records],
        "gpu": [r["gpu"] or "—" for r in records],
    }
    titles = {"headline": head_title}
    natural = {name: max([len(titles.get(name, name)), *(len(str(c)) for c in values)])
               for name, values in cells.items() if values is not None}
    shown = [name for name in RUN_COLUMNS if name in natural]
    if "config" in natural:
        natural["config"] = min(natural["config"], 28)  # folds onto more lines rather than pushing others out
    dropped = []
    while width and len(shown) > 3 and sum(natural[n] for n in shown) + GAP * (len(shown) - 1) > width:
        if shown[-1] == "config":  # it folds: narrower, onto more lines, rather than gone
            spare = width - sum(natural[n] for n in shown[:-1]) - GAP * (len(shown) - 1)
            if spare >= min(16, natural["config"]):
                natural["config"] = spare
                break
        dropped.append(shown.pop())
    order = ["id", "experiment", "variant", "config", "status", "progress", "headline", "elapsed", "gpu"]
    table = Table(header_style="bold", pad_edge=False, box=box.SIMPLE_HEAD, collapse_padding=True)
    for name in (n for n in order if n in shown):
        title = titles.get(name, name)
        if name == "config":
            table.add_column(title, overflow="fold", min_width=min(16, natural[name]))
        else:
            table.add_column(title, justify="right" if name in ("id", "headline", "elapsed") else "left",
                             no_wrap=True, min_width=natural[name])
    for i in range(len(records)):
        table.add_row(*(cells[name][i] for name in order if name in shown))
    if dropped:
        table.caption = f"not shown at this width: {', '.join(reversed(dropped))} (--wide shows every column)"
        table.caption_justify = "left"
    return table


def epoch_table(rows: Iterable[Mapping[str, Any]], title: str = "per-epoch metrics", *,
                width: int | None = None, more: str = "--wide shows every column") -> Table | None:
    """Pivot epoch rows into (stage, epoch) × key; with ``width``, only the metric columns that fit
    whole (in their order), the caption naming the others and ``more`` (where to see them)."""
    grid: dict[tuple[int, int], dict[str, float]] = {}
    keys: list[str] = []
    for row in rows:
        if row["kind"] != "epoch":
            continue
        grid.setdefault((row["stage"], row["epoch"]), {})[row["key"]] = row["value"]
        if row["key"] not in keys:
            keys.append(row["key"])
    if not grid:
        return None
    staged = any(stage for stage, _ in grid)
    hidden: list[str] = []
    if width:
        used = 1 + (8 if staged else 0) + 8  # border, stage, epoch
        fitting = []
        for key in keys:
            cell = max(len(key), *(len(fmt(values.get(key))) for values in grid.values())) + 3
            if used + cell > width and fitting:
                hidden = keys[len(fitting):]
                break
            fitting.append(key)
            used += cell
        keys = fitting
    table = Table(title=title, title_justify="left", header_style="bold")
    if staged:
        table.add_column("stage", justify="right", no_wrap=True)
    table.add_column("epoch", justify="right", no_wrap=True)
    for key in keys:
        table.add_column(key, justify="right", no_wrap=True)
    for (stage, epoch), values in sorted(grid.items()):
        cells = [str(stage)] if staged else []
        table.add_row(*cells, str(epoch), *(fmt(values.get(k)) for k in keys))
    if hidden:
        table.caption = f"not shown at this width: {', '.join(hidden)} ({more})"
        table.caption_justify = "left"
    return table


BAR_KEYS = ("cos_mean", "mean", "loss", "val_loss")


def bar(value: float | None, low: float, high: float, width: int = 20) -> Text:
    """A horizontal bar of ``value`` on the scale [low, high] (eighth-block resolution)."""
    if value is None or not math.isfinite(value) or high <= low:
        return Text("")
    eighths = round(max(0.0, min(1.0, (value - low) / (high - low))) * width * 8)
    full, part = divmod(eighths, 8)
    return Text("█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[part], style="cyan")


def layer_profile_table(stage: int, by_key: Mapping[str, Mapping[int, float]]) -> Table:
    """End-of-run per-layer statistics (one value per layer and key, e.g. ``saturation``) as one
    layer × statistic table with a bar chart of the headline key, like report 003's profile."""
    keys = list(by_key)
    bar_key = next((k for k in BAR_KEYS if k in by_key), keys[0])
    layers = sorted({layer for cells in by_key.values() for layer in cells})
    bar_values = [v for v in by_key[bar_key].values() if math.isfinite(v)]
    low = min(0.0, *bar_values) if bar_values else 0.0
    high = max(bar_values) if bar_values else 1.0
    title = "per-layer profile" + (f" (stage {stage})" if stage else "")
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("layer", justify="right")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column(f"{bar_key} ({fmt(low, 2)} … {fmt(high, 2)})", no_wrap=True)
    for layer in layers:
        table.add_row(str(layer), *(fmt(by_key[k].get(layer)) for k in keys), bar(by_key[bar_key].get(layer), low, high))
    return table


def layer_tables(rows: Iterable[Mapping[str, Any]], *, max_epochs: int | None = 12,
                 width: int | None = None) -> list[Table]:
    """Per-layer rows as layer × epoch tables, one per (stage, key); a stage whose per-layer values
    are all end-of-run (no epoch) becomes one :func:`layer_profile_table` instead.

    With ``width``, a table shows as many epochs as fit with every value whole (the first, the last
    and evenly spaced ones between); ``max_epochs=None`` shows every epoch."""
    groups: dict[tuple[int, str], dict[int, dict[Any, float]]] = {}
    for row in rows:
        if row["kind"] != "layer":
            continue
        cell = groups.setdefault((row["stage"], row["key"]), {}).setdefault(row["layer"], {})
        cell[row["epoch"]] = row["value"]
    final_only: dict[int, dict[str, dict[int, float]]] = {}
    for (stage, key), by_layer in groups.items():
        final_only.setdefault(stage, {})[key] = {layer: cells.get(None) for layer, cells in by_layer.items()}
    for (stage, key), by_layer in groups.items():
        if any(set(cells) != {None} for cells in by_layer.values()):
            final_only.pop(stage, None)
    tables = [layer_profile_table(stage, by_key) for stage, by_key in final_only.items()]
    for (stage, key), by_layer in groups.items():
        if stage in final_only:
            continue
        epochs = sorted({e for cells in by_layer.values() for e in cells}, key=lambda e: (e is None, e or 0))
        limit = max_epochs or len(epochs)
        if width:
            cell = max(len(f"ep {e}") for e in epochs)
            cell = max(cell, *(len(fmt(v)) for cells in by_layer.values() for v in cells.values())) + 3
            limit = min(limit, max(2, (width - 9) // cell))
        if len(epochs) > limit:  # keep the first, the last, and evenly spaced ones between
            step = len(epochs) / (limit - 1)
            epochs = sorted({epochs[int(i * step)] for i in range(limit - 1)} | {epochs[-1]},
                            key=lambda e: (e is None, e or 0))
        title = f"per-layer {key}" + (f" (stage {stage})" if stage else "")
        table = Table(title=title, title_justify="left", header_style="bold")
        table.add_column("layer", justify="right")
        for epoch in epochs:
            table.add_column("final" if epoch is None else f"ep {epoch}", justify="right", no_wrap=True)
        for layer in sorted(by_layer):
            table.add_row(str(layer), *(fmt(by_layer[layer].get(e)) for e in epochs))
        tables.append(table)
    return tables


def result_table(name: str, rows: Sequence[Mapping[str, Any]], stage: int = 0) -> Table:
    table = Table(title=name + (f" (stage {stage})" if stage else ""), title_justify="left", header_style="bold")
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*(fmt(row.get(c)) for c in columns))
    return table


def run_header(record: Mapping[str, Any]) -> Panel:
    info = record["info"]
    lines = Text()
    lines.append(f"run {record['id']}  ", style="bold")
    lines.append(f"{record['experiment']} ({record['variant']})  ")
    lines.append_text(status_text(record["status"]))
    lines.append(f"\ncreated {record['created_at']}  started {record['started_at'] or '—'}  "
                 f"finished {record['finished_at'] or '—'}  elapsed {duration(record['elapsed_s'])}")
    live = record["status"] in LIVE_STATUSES
    lines.append(f"\nhost {record['host'] or '—'}  gpu {record['gpu'] or '—'}  pid {record['pid'] or '—'}  "
                 f"progress {progress_text(record['progress'], live=live)}")
    passed = info.get("progress")  # a pass before the epochs (cascade's frozen base pass), under way or over
    details = pass_details(passed, live=live) if isinstance(passed, Mapping) else None
    if details:
        lines.append(f"\n{details}")
    engine = record.get("executor")
    if engine and engine.get("job_id"):
        lines.append(f"\n{engine['name']} job {engine['job_id']}  state {engine['state'] or '—'}")
    if record["tags"]:
        lines.append(f"\ntags {', '.join(record['tags'])}")
    if record.get("note"):
        lines.append(f"\nnote {record['note']}")
    if record["error"]:
        lines.append(f"\nerror: {record['error']}", style="red")
    config = " ".join(f"{k}={v}" for k, v in record["config"].items())
    lines.append(f"\nconfig {config}")
    shown = {k: v for k, v in info.items() if v not in (None, "", [], {}) and not (k == "progress" and details)}
    if shown:
        lines.append("\ninfo " + "  ".join(f"{k}={fmt(v) if isinstance(v, (int, float)) else v}" for k, v in shown.items()))
    return Panel(lines, expand=False)


def summary_table(latest: Mapping[str, Mapping[str, Any]]) -> Table | None:
    if not latest:
        return None
    table = Table(title="latest metrics", title_justify="left", header_style="bold")
    for col in ("key", "last", "min", "(epoch)", "max", "(epoch)"):
        table.add_column(col, justify="right" if col != "key" else "left")
    for key, m in latest.items():
        table.add_row(key, fmt(m["last"]), fmt(m["min"]), fmt(m["min_epoch"]), fmt(m["max"]), fmt(m["max_epoch"]))
    return table


def experiments_table(entries: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(header_style="bold", show_lines=True)
    table.add_column("experiment", no_wrap=True)
    table.add_column("report", justify="center")
    table.add_column("description / parameters")
    for entry in entries:
        params = Text(entry["description"] + "\n", style="bold")
        for p in entry["parameters"]:
            params.append(f"  --{p['name'].replace('_', '-')}", style="cyan")
            params.append(f" = {p['default']}")
            extra = p.get("choices") and "{" + "|".join(p["choices"]) + "}" or p.get("bounds")
            if extra:
                params.append(f"  {extra}", style="dim")
            params.append("\n")
        table.add_row(entry["name"], entry["report"] or "—", params)
    return table


def last_epochs(rows: Sequence[Mapping[str, Any]], count: int) -> list[Mapping[str, Any]]:
    """The metric rows of the newest ``count`` (stage, epoch) pairs: whole epochs, not a row count."""
    keep: set[tuple[Any, Any]] = set()
    for row in reversed(rows):
        key = (row.get("stage"), row.get("epoch"))
        if key not in keep:
            if len(keep) == count:
                break
            keep.add(key)
    return [row for row in rows if (row.get("stage"), row.get("epoch")) in keep]


def follow_view(record: Mapping[str, Any], epochs: list[Mapping[str, Any]], layers: Mapping[int, Mapping[str, float]],
                logs: list[str], *, width: int | None = None) -> Group:
    """The live ``--follow`` view: status line, progress bar, last epochs, latest per-layer values.

    With ``width`` (the terminal's) the epoch table keeps the metric columns that fit whole, as in
    ``hrm show``, instead of squeezing the epoch column out of sight."""
    progress = record["progress"]
    total = progress.get("total_epochs") or 0
    head = Text()
    head.append(f"run {record['id']} {record['experiment']} ", style="bold")
    head.append_text(status_text(record["status"]))
    head.append(f"  {progress_text(progress)}" + (f" · {progress['stage_name']}" if progress.get("stage_name") else ""))
    parts: list[Any] = [head]
    passing = progress.get("pass")
    if passing:  # before the first epoch: the pass's tokens
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=passing["tokens_total"], completed=passing["tokens_done"], width=40),
                    Text(pass_details(passing) or "", style="dim"))
        parts.append(bar)
    elif total:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=total, completed=progress.get("epoch") or 0, width=40),
                    Text(f"{progress.get('epoch') or 0}/{total} epochs", style="dim"))
        parts.append(bar)
    table = epoch_table(last_epochs(epochs, 12), title="epochs", width=width,
                        more=f"hrm show {record['id']} --wide")
    if table is not None:
        parts.append(table)
    if layers:
        grid = Table(title="per layer, latest epoch", title_justify="left", header_style="bold")
        keys = sorted({k for values in layers.values() for k in values})
        grid.add_column("metric")
        for layer in sorted(layers):
            grid.add_column(f"L{layer}", justify="right")
        for key in keys:
            grid.add_row(key, *(fmt(layers[layer].get(key)) for layer in sorted(layers)))
        parts.append(grid)
    for line in logs[-5:]:
        parts.append(Text(line, style="dim"))
    return Group(*parts)
