"""Marked runs side by side: ``core.compare.runs_table`` (the CLI's table) and overlaid val curves.

The first marked run is the baseline ("vs run N %", positive = better). ``e`` / ``E`` export the
table as Markdown / CSV through ``core.compare.export`` into the current directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from core import api, compare
from hrm_tui.render import STATUS_STYLES
from hrm_tui.tui.messages import MetricsArrived, RunsChanged
from hrm_tui.tui.screens.base import HrmScreen
from hrm_tui.tui.series import ALL_STAGES, RunSeries
from hrm_tui.tui.widgets.loss_chart import LossChart

CURVE_PREFERENCE = ("val_loss", "val_ppl")
COMPARISON_FIRST = ("run", "best", "vs_baseline_pct")
"""When the table is wider than the terminal, these columns come first (then the rest, in order),
so the comparison itself is on screen at 80 columns and the config keys scroll."""


class CompareScreen(HrmScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("k", "curve_key", "curve key"),
        Binding("e", "export('markdown')", "export .md"),
        Binding("E", "export('csv')", "export .csv"),
    ]
    PALETTE = [
        ("export('markdown')", "Export comparison as Markdown", "Write compare-<ids>.md in the current directory"),
        ("export('csv')", "Export comparison as CSV", "Write compare-<ids>.csv in the current directory"),
        ("curve_key", "Next curve key", "Overlay the next per-epoch metric"),
    ]

    def __init__(self, run_ids: list[int], *, export_dir: Path | None = None) -> None:
        super().__init__()
        self.run_ids = run_ids
        self.export_dir = export_dir or Path.cwd()
        self.table: compare.Table | None = None
        self.curve_key: str | None = None

    def compose(self) -> ComposeResult:
        others = ", ".join(map(str, self.run_ids[1:]))
        yield Static(f" comparing runs {others} against run {self.run_ids[0]} (baseline)", id="compare-title")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="compare-notes")
        yield LossChart("val", id="compare-chart")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app.watch_runs(self.run_ids)
        self.load_table()
        self._redraw_chart()

    def on_unmount(self) -> None:
        self.app.unwatch_runs(self.run_ids)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False, description="build the comparison")
    def load_table(self) -> None:
        by_id = {r["id"]: r for r in api.list_records(self.app.db, ids=self.run_ids)}
        records = [by_id[i] for i in self.run_ids if i in by_id]
        baseline = records[0]["id"] if records else None
        table = compare.runs_table(records, baseline=baseline, title="comparison")
        self.app.call_from_thread(self._show_table, table)

    def _show_table(self, table: compare.Table) -> None:
        self.table = table
        view = self.query_one("#compare-table", DataTable)
        cursor = view.cursor_row
        view.clear(columns=True)
        columns = self._column_order(table)
        for col in columns:
            view.add_column(col.label, key=col.key)
        for row in table.rows:
            view.add_row(*(self._cell(row, col) for col in columns), key=str(row["run"]))
        if table.rows:
            view.move_cursor(row=min(cursor, len(table.rows) - 1))
        self.query_one("#compare-notes", Static).update(Text("\n".join(table.notes), style="dim"))

    def _column_order(self, table: compare.Table) -> list[compare.Column]:
        """The table's own order when it fits the screen; else the comparison columns first."""
        def width(col: compare.Column) -> int:
            cells = [compare.format_value(row.get(col.key), col) for row in table.rows]
            return max([len(col.label), *map(len, cells)]) + 2  # DataTable pads a cell by one each side

        if sum(map(width, table.columns)) <= self.size.width:
            return list(table.columns)
        first = [c for key in COMPARISON_FIRST for c in table.columns if c.key == key]
        return first + [c for c in table.columns if c not in first]

    def on_resize(self) -> None:
        if self.table is not None:
            self._show_table(self.table)

    @staticmethod
    def _cell(row: dict[str, Any], col: compare.Column) -> Text:
        value = row.get(col.key)
        text = compare.format_value(value, col)
        if col.key == "status":
            return Text(text, style=STATUS_STYLES.get(str(value), ""))
        if col.key == "vs_baseline_pct" and isinstance(value, (int, float)):
            return Text(text, style="green" if value > 0 else "red" if value < 0 else "", justify="right")
        return Text(text, justify="left" if col.type == "text" else "right")

    def runs_changed(self, event: RunsChanged) -> None:
        if event.ids & set(self.run_ids):
            self.load_table()

    def metrics_arrived(self, event: MetricsArrived) -> None:
        if event.run_id in self.run_ids:
            self._redraw_chart()

    def caught_up(self) -> None:
        self._redraw_chart()

    def _redraw_chart(self) -> None:
        all_series = {i: self.app.series.get(i) or RunSeries() for i in self.run_ids}
        keys = list(dict.fromkeys(k for s in all_series.values() for k in s.epoch_keys()))
        if self.curve_key not in keys:
            preferred = [k for k in CURVE_PREFERENCE if k in keys] + [k for k in keys if k.startswith("val")] + keys
            self.curve_key = preferred[0] if preferred else None
        curves = {}
        if self.curve_key:
            for run_id, series in all_series.items():
                points = series.curves([self.curve_key], ALL_STAGES).get(self.curve_key)
                if points:
                    curves[f"run {run_id}"] = points
        self.query_one("#compare-chart", LossChart).set_series(curves, title=self.curve_key or "no epochs yet")

    def action_curve_key(self) -> None:
        all_series = [self.app.series.get(i) or RunSeries() for i in self.run_ids]
        keys = list(dict.fromkeys(k for series in all_series for k in series.epoch_keys()))
        if keys:
            self.curve_key = keys[(keys.index(self.curve_key) + 1) % len(keys) if self.curve_key in keys else 0]
            self._redraw_chart()

    def action_export(self, fmt: str) -> None:
        if self.table is None:
            self.notify("the comparison is still loading", severity="warning")
            return
        suffix = {"markdown": "md", "csv": "csv"}[fmt]
        path = self.export_dir / f"compare-{'-'.join(map(str, self.run_ids))}.{suffix}"
        try:
            path.write_text(compare.export([self.table], fmt), encoding="utf-8")
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc}", severity="error", markup=False)
            return
        self.notify(f"wrote {path}", title="export", markup=False)
