"""The main screen: every run in a table, a status line, a filter and the actions."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from core.registry.status import RunStatus
from hrm_tui.render import STATUS_STYLES
from hrm_tui.tui.messages import RunsChanged
from hrm_tui.tui.runs_model import SortOrder
from hrm_tui.tui.screens.base import RUN_ACTION_BINDINGS, RUN_ACTION_PALETTE, HrmScreen
from hrm_tui.tui.widgets.run_table import RunTable

FILTER_DEBOUNCE = 0.12
"""Seconds of no typing before the filter is applied."""
CLOCK_TICK = 1.0
"""Elapsed times are shown to the second: live rows repaint this often, nothing else does."""


class Dashboard(HrmScreen):
    """Runs, newest first; the table updates in place as the registry changes."""

    WIDE_ONLY = frozenset({"logs", "cancel", "retry", "delete"})
    BINDINGS = [
        Binding("enter", "open", "open"),
        Binding("space", "mark", "mark"),
        Binding("c", "compare", "compare"),
        Binding("n", "new", "new"),
        Binding("slash", "filter", "filter"),
        Binding("s", "sort", "sort"),
        Binding("S", "sort_reverse", "reverse sort", show=False),
        Binding("g", "app.open_queue", "queue"),
        Binding("question_mark", "app.toggle_keys", "keys"),
        *RUN_ACTION_BINDINGS,
        Binding("escape", "clear", "clear filter/marks", show=False),
    ]
    PALETTE = [
        ("compare", "Compare marked runs", "Side-by-side table and overlaid val curves of the runs marked with space"),
        *RUN_ACTION_PALETTE,
        ("filter", "Filter runs", "Show only runs matching words (experiment, status, key=value, tag, #id)"),
        ("sort", "Sort by next column", "Cycle the sort column: id, experiment, status, progress, headline, ..."),
        ("sort_reverse", "Reverse sort order", "Flip ascending/descending"),
    ]

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.query_text = ""
        self.order = SortOrder()
        self._shown_version = -1
        self._filter_timer: Timer | None = None
        self._status: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="status-line")
        yield RunTable(clock=self.app.clock, id="runs")
        yield Input(placeholder="filter: words all must match (smoke running lr=0.001 #12) — enter keeps, esc clears",
                    id="filter")
        yield Footer(compact=True)

    def on_mount(self) -> None:  # (HrmScreen.on_mount runs too: Textual calls every class's handler)
        self.query_one(RunTable).focus()
        self._refresh_table(force=True)
        self.every(CLOCK_TICK, self._tick)

    def _tick(self) -> None:
        if self.is_active:
            self.table.tick()

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    @property
    def current_run_id(self) -> int | None:
        return self.table.cursor_run_id

    # --- live -------------------------------------------------------------------------------

    def runs_changed(self, event: RunsChanged) -> None:
        if event.ids:
            self._refresh_table(changed=event.ids)
        else:
            self._update_status()

    def _refresh_table(self, *, force: bool = False, changed: frozenset[int] | None = None) -> None:
        """Re-filter and re-sort after a change; with ``changed`` (and the same runs listed in the same
        order) only those runs' lines repaint, and nothing repaints when nothing changed."""
        table = self.table
        if force or self._shown_version != self.app.runs.version:
            rows = self.app.runs.view(self.query_text, self.order)
            heads = {r.headline_key for r in rows if r.headline_key}
            table.sort_column, table.sort_descending = self.order.column, self.order.descending
            table.set_rows(rows, diff_keys=self.app.runs.differing_keys(rows),
                           headline_label=heads.pop() if len(heads) == 1 else "headline",
                           changed=None if force else changed)
            self._shown_version = self.app.runs.version
        self._update_status()

    def _update_status(self) -> None:
        """One line: registry, counts, scheduler health, what the table shows. Parts drop when narrow."""
        app = self.app
        counts = Text()
        if not app.polled:
            counts.append(" loading…", style="dim")
        for status in RunStatus:
            if app.counts.get(status.value):
                counts.append(f" {app.counts[status.value]} ", style="bold")
                counts.append(status.value, style=STATUS_STYLES.get(status.value, ""))
        scheduler = Text(" │ scheduler ")
        if app.scheduler_alive:
            scheduler.append("alive", style="bold green")
        else:
            scheduler.append("absent", style="bold red" if app.counts.get("queued") else "dim")
        slots = Text(f" ({app.schedulers[0]['slots']})" if app.scheduler_alive else "", style="dim")
        shown = Text(f" │ {self.table.row_count}/{len(app.runs.rows)}")
        experiments = {r.experiment for r in self.table.rows}
        only = Text(f" {experiments.pop()}" if len(experiments) == 1 else "", style="bold")
        sort = Text(f" · sort {self.order}")
        flags = Text()
        if self.query_text:
            flags.append(f" · filter '{self.query_text}'", style="yellow")
        if self.table.marked:
            flags.append(f" · {len(self.table.marked)} marked", style="magenta")
        name = Text(f" {app.db_label}", style="bold")
        parts = [name, counts, scheduler, slots, shown, only, sort, flags]
        for optional in (slots, sort, name, only):  # least useful first (the header shows the sort)
            if sum(p.cell_len for p in parts) <= self.size.width:
                break
            parts.remove(optional)
        status = Text().join(parts)
        if status != self._status:  # one line, always: no relayout
            self._status = status
            self.query_one("#status-line", Static).update(status, layout=False)

    # --- actions ----------------------------------------------------------------------------

    def action_open(self) -> None:
        self.table.action_open()

    def action_mark(self) -> None:
        self.table.action_mark()

    @on(RunTable.Opened)
    def _opened(self, event: RunTable.Opened) -> None:
        self.app.open_run(event.run_id)

    @on(RunTable.MarksChanged)
    def _marks_changed(self) -> None:
        self._update_status()

    @on(RunTable.SortClicked)
    def _sort_clicked(self, event: RunTable.SortClicked) -> None:
        same = event.column == self.order.column
        self.order = self.order.reversed() if same else SortOrder(event.column, event.column in ("id", "elapsed"))
        self._refresh_table(force=True)

    def action_compare(self) -> None:
        """Compare the marked runs; the first one marked is the baseline."""
        self.app.open_compare([run_id for run_id in self.table.marked if self.app.runs.get(run_id)])

    def action_new(self) -> None:
        """The new-run form, on the selected run's experiment."""
        row = self.app.runs.get(self.current_run_id) if self.current_run_id is not None else None
        self.app.new_run(row.experiment if row else None)

    def action_sort(self) -> None:
        self.order = self.order.next_column()
        self._refresh_table(force=True)

    def action_sort_reverse(self) -> None:
        self.order = self.order.reversed()
        self._refresh_table(force=True)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = self.query_text
        box.focus()

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display or self.query_text:
            box.value = ""
            self._close_filter("")
        elif self.table.marked:
            self.table.marked.clear()
            self._refresh_table(force=True)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        """Re-filter once typing pauses (each pass over 10,000 runs costs a few ms of UI time)."""
        if self._filter_timer is not None:
            self._filter_timer.stop()
        text = event.value.strip()
        self._filter_timer = self.set_timer(FILTER_DEBOUNCE, lambda: self._apply_filter(text))

    def _apply_filter(self, text: str) -> None:
        self._filter_timer = None
        if text != self.query_text:
            self.query_text = text
            self._refresh_table(force=True)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._close_filter(event.value.strip())

    def _close_filter(self, text: str) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        self.query_text = text
        self.query_one("#filter", Input).display = False
        self.table.focus()
        self._refresh_table(force=True)
