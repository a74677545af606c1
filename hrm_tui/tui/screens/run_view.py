"""One run, live: header, train/val curves, per-layer heatmap, stage selector, config, log, tables."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Log, Static, Tab, TabbedContent, TabPane, Tabs

from core import api
from core.errors import UserError
from core.registry.attempt_view import checkpoint_record
from core.registry.attempt_view import describe as describe_attempts
from hrm_tui import render
from hrm_tui.tui.messages import LogsArrived, MetricsArrived, RunsChanged
from hrm_tui.tui.runs_model import progress_bar, progress_done, status_cell
from hrm_tui.tui.screens.base import (
    ANNOTATE_BINDINGS,
    ANNOTATE_PALETTE,
    RUN_ACTION_BINDINGS,
    RUN_ACTION_PALETTE,
    HrmScreen,
)
from hrm_tui.tui.series import ALL_STAGES, RunSeries
from hrm_tui.tui.widgets.layer_heatmap import LayerHeatmap
from hrm_tui.tui.widgets.loss_chart import LossChart

TABS = ("curves", "log", "config", "tables")
DETAIL_TABS = ("config", "tables")
REDRAW_EVERY = 1.0
"""Seconds between chart redraws while epochs stream in faster than that: the two charts, the heatmap
and their repaint cost ~10 ms of UI time, most of the run view's idle CPU (issue #13). An epoch that
follows a quiet spell is drawn at once; the header shows every epoch as it arrives."""
CLOCK_TICK = 1.0


class RunScreen(HrmScreen):
    """Everything about one run; metric rows arrive incrementally from the app's poll."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        *RUN_ACTION_BINDINGS,
        *ANNOTATE_BINDINGS,
        Binding("right_square_bracket", "stage(1)", "next stage"),
        Binding("left_square_bracket", "stage(-1)", "previous stage", show=False),
        Binding("k", "layer_key", "layer key"),
        *(Binding(str(i + 1), f"tab('{name}')", name, show=False) for i, name in enumerate(TABS)),
    ]
    PALETTE = [*RUN_ACTION_PALETTE, *ANNOTATE_PALETTE, ("layer_key", "Next per-layer key", "Show the next per-layer metric")]

    def __init__(self, run_id: int) -> None:
        super().__init__(classes="run-screen")
        self.run_id = run_id
        self.stage = ALL_STAGES
        self.layer_key: str | None = None
        self.record: dict[str, Any] | None = None
        self.tables: list[dict[str, Any]] = []
        self._header: Text | None = None
        self._drawn_at = -math.inf
        self._drawn_points = 0
        self._redraw_timer: Timer | None = None
        self._details_stale = True

    @property
    def current_run_id(self) -> int | None:
        return self.run_id

    @property
    def series(self) -> RunSeries:
        return self.app.series.get(self.run_id) or RunSeries()

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        yield Tabs(id="stages")
        with TabbedContent(id="run-tabs"):
            with TabPane("1 Curves", id="curves"):
                with Horizontal(id="charts"):
                    yield LossChart("loss", id="loss-chart")
                    yield LossChart("perplexity", id="other-chart")
                yield LayerHeatmap(id="heatmap")
            with TabPane("2 Log", id="log"):
                yield Log(id="run-log", max_lines=5000)
            with TabPane("3 Config", id="config"):
                yield VerticalScroll(Static(id="config-text"))
            with TabPane("4 Tables", id="tables"):
                yield VerticalScroll(Static("no analysis tables", id="tables-text"))
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#stages", Tabs).display = False
        self.app.watch_runs([self.run_id])
        self.query_one("#run-log", Log).write_lines(self.app.logs.get(self.run_id, []))
        self._redraw()
        self._details_stale = False
        self.load_details()
        self.every(CLOCK_TICK, self._tick)

    def _tick(self) -> None:
        """The elapsed time in the header, to the second (the rest repaints only when data arrives)."""
        if self.is_active:
            self._update_header()

    def on_unmount(self) -> None:
        self.app.unwatch_runs([self.run_id])

    # --- data -------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="details", exit_on_error=False, description="read run details")
    def load_details(self) -> None:
        try:
            detail = api.run_detail(self.app.db, self.run_id, with_metrics=False)
        except UserError:
            self.app.call_from_thread(self._show_details, None, [])
            return
        self.app.call_from_thread(self._show_details, detail.record, detail.tables,
                                  describe_attempts(detail.attempts, detail.checkpoint))

    def _show_details(self, record: dict[str, Any] | None, tables: list[dict[str, Any]],
                      resumed: list[str] | None = None) -> None:
        self.record, self.tables = record, tables
        if record is None:
            self.query_one("#run-header", Static).update(Text(f"run {self.run_id} no longer exists", style="red"))
            return
        parts: list[Any] = [render.run_header(record)]
        if resumed:  # attempts (resumed or retried in place) and the checkpoint the next one would start from
            parts.append(Text("\n".join(resumed), style="dim"))
        summary = render.summary_table(record["latest"])
        if summary is not None:
            parts.append(summary)
        self.query_one("#config-text", Static).update(Group(*parts))
        if tables:
            self.query_one("#tables-text", Static).update(
                Group(*(render.result_table(t["name"], t["rows"], t["stage"]) for t in tables)))
        self._update_header()

    def runs_changed(self, event: RunsChanged) -> None:
        if self.run_id in event.ids:
            self._details_stale = True
            self._load_details_if_shown()
            self._update_header()

    def _load_details_if_shown(self) -> None:
        """The Config and Tables tabs are read again only while one of them is on screen."""
        if self._details_stale and self.query_one("#run-tabs", TabbedContent).active in DETAIL_TABS:
            self._details_stale = False
            self.load_details()

    @on(TabbedContent.TabActivated, "#run-tabs")
    def _tab_shown(self) -> None:
        self._load_details_if_shown()

    def metrics_arrived(self, event: MetricsArrived) -> None:
        if event.run_id == self.run_id:
            self._redraw_soon()

    def _redraw_soon(self) -> None:
        """Redraw now, or once ``REDRAW_EVERY`` has passed since the last redraw (never later).
        The first points of an empty chart are drawn at once."""
        if self._redraw_timer is not None:
            return
        wait = self._drawn_at + REDRAW_EVERY - time.monotonic()
        if wait <= 0 or not self._drawn_points:
            self._redraw()
        else:
            self._redraw_timer = self.set_timer(wait, self._redraw)

    @property
    def redraw_pending(self) -> bool:
        return self._redraw_timer is not None

    def caught_up(self) -> None:
        self._redraw()
        log = self.query_one("#run-log", Log)
        log.clear()
        log.write_lines(self.app.logs.get(self.run_id, []))

    def logs_arrived(self, event: LogsArrived) -> None:
        if event.run_id == self.run_id:
            self.query_one("#run-log", Log).write_lines(event.lines)

    # --- drawing ----------------------------------------------------------------------------

    def _update_header(self) -> None:
        row = self.app.runs.get(self.run_id)
        if row is None:
            return
        head = Text.assemble((f"run {row.id} ", "bold"), (row.experiment, "bold"), f" ({row.variant})  ",
                             status_cell(row), "  ",
                             render.progress_text(row.progress, live=row.is_live and row.status.is_active), " ",
                             progress_bar(*progress_done(row), width=10))
        if row.stage_name:
            head.append(f"  {row.stage_name}", style="italic")
        if row.headline is not None:
            head.append(f"  {row.headline_key} {render.fmt(row.headline)}", style="bold")
        info = Text(f"elapsed {render.duration(row.elapsed(self.app.clock()))}  gpu {row.gpu or '—'}  ", style="dim")
        attempt = row.extras.get("attempt") or 1
        if attempt > 1:
            info.append(f"attempt {attempt}  ", style="bold yellow")
        checkpoint = checkpoint_record(row.extras.get("checkpoint_json"))
        if checkpoint:
            where = f"s{checkpoint['stage']} ep {checkpoint['epoch']}" if checkpoint.get("stage") else \
                f"ep {checkpoint['epoch']}"
            info.append(f"checkpoint {where}  ")
        info.append("  ".join(f"{k}={render.fmt(v)}" for k, v in row.config.items()))
        lines = [head, info]
        notes = annotation_line(row)
        if notes is not None:
            lines.append(notes)
        if row.error:
            lines.append(Text(f"error: {row.error}", style="red"))
        text = Text("\n").join(lines)
        text.no_wrap, text.overflow = True, "ellipsis"
        if text != self._header:  # a relayout only when the header gains or loses a line
            relayout = self._header is None or len(lines) != self._header.plain.count("\n") + 1
            self._header = text
            self.query_one("#run-header", Static).update(text, layout=relayout)

    def _redraw(self) -> None:
        self._drawn_at = time.monotonic()
        self._drawn_points = self.series.point_count
        if self._redraw_timer is not None:
            self._redraw_timer.stop()
            self._redraw_timer = None
        series = self.series
        self._sync_stage_tabs(series.stages())
        keys = series.epoch_keys()
        losses = [k for k in keys if "loss" in k]
        others = [k for k in keys if k not in losses and "ppl" in k] or [k for k in keys if k not in losses][:3]
        stage_note = "" if self.stage == ALL_STAGES else f" · stage {self.stage}"
        markers = series.stage_starts() if self.stage == ALL_STAGES else []
        if markers:
            stage_note = " · all stages (│ = next stage)"
        with self.app.batch_update():
            self.query_one("#loss-chart", LossChart).set_series(series.curves(losses, self.stage),
                                                                title=f"loss{stage_note}", markers=markers)
            other = self.query_one("#other-chart", LossChart)
            other.display = bool(others)
            other.set_series(series.curves(others, self.stage), title=", ".join(others) + stage_note,
                             markers=markers)
            layer_keys = series.layer_keys()
            if self.layer_key not in layer_keys:
                self.layer_key = layer_keys[0] if layer_keys else None
            heatmap = self.query_one(LayerHeatmap)
            width = max(4, (self.size.width - 16) // 10)
            heatmap.show(series.grid(self.layer_key, self.stage, max_columns=width) if self.layer_key else None)

    def _sync_stage_tabs(self, stages: list[int]) -> None:
        tabs = self.query_one("#stages", Tabs)
        staged = [s for s in stages if s > 0]
        if not staged:
            return
        tabs.display = True
        if tabs.tab_count == 0:
            tabs.add_tab(Tab("all stages", id="stage-all"))
        for stage in staged:
            if not tabs.query(f"#stage-{stage}"):
                tabs.add_tab(Tab(f"stage {stage}", id=f"stage-{stage}"))

    @on(Tabs.TabActivated, "#stages")
    def _stage_chosen(self, event: Tabs.TabActivated) -> None:
        suffix = (event.tab.id or "stage-all").removeprefix("stage-")
        stage = ALL_STAGES if suffix == "all" else int(suffix)
        if stage != self.stage:
            self.stage = stage
            self._redraw()

    def action_stage(self, step: int) -> None:
        tabs = self.query_one("#stages", Tabs)
        if tabs.tab_count:
            tabs.action_next_tab() if step > 0 else tabs.action_previous_tab()

    def action_layer_key(self) -> None:
        keys = self.series.layer_keys()
        if keys:
            index = keys.index(self.layer_key) + 1 if self.layer_key in keys else 0
            self.layer_key = keys[index % len(keys)]
            self._redraw()

    def action_tab(self, name: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = name


def annotation_line(row) -> Text | None:
    """``tags a, b  note …`` for the header (None when the run has neither: the header keeps its lines)."""
    note = " ".join((row.extras.get("note") or "").split())
    if not row.tags and not note:
        return None
    line = Text()
    if row.tags:
        line.append("tags ", style="dim")
        line.append(", ".join(row.tags), style="bold magenta")
    if note:
        line.append("  note " if row.tags else "note ", style="dim")
        line.append(note, style="italic")
    return line
