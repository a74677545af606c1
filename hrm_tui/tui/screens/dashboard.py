"""The main screen: every run in a table, a status line, a filter and the actions."""

from __future__ import annotations

import re
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.containers import Vertical
from textual.widgets import Footer, Input, Static

from core.errors import UserError
from core.registry.status import RunStatus
from hrm_tui.render import STATUS_STYLES
from hrm_tui.tui.messages import RunsChanged
from hrm_tui.tui.runs_model import SortOrder
from hrm_tui.tui.screens.base import (
    ANNOTATE_BINDINGS,
    ANNOTATE_PALETTE,
    RUN_ACTION_BINDINGS,
    RUN_ACTION_PALETTE,
    HrmScreen,
)
from hrm_tui.tui.widgets.run_table import RunTable

FILTER_DEBOUNCE = 0.12
"""Seconds of no typing before the filter is applied."""
CLOCK_TICK = 1.0
"""Elapsed times are shown to the second: live rows repaint this often, nothing else does."""
WORD = re.compile(r"""[^\s=<>!~()'",]+(=[^\s=<>!~()'",]*)?""")
"""A search word of the filter box: ``smoke``, ``#12``, ``lr=0.001`` (no operator, quote or bracket)."""


def is_words(text: str) -> bool:
    """True when the filter box holds plain search words (every one must match as a substring), False
    when it holds something else: an expression of the ``--where`` language (``docs/filter.md``)."""
    return all(WORD.fullmatch(word) for word in text.split())


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
        *ANNOTATE_BINDINGS,
        Binding("escape", "clear", "clear filter/marks", show=False),
    ]
    PALETTE = [
        ("compare", "Compare marked runs", "Side-by-side table and overlaid val curves of the runs marked with space"),
        *RUN_ACTION_PALETTE,
        *ANNOTATE_PALETTE,
        ("filter", "Filter runs", "Words (experiment, status, key=value, tag, #id) or an expression: "
                                  "val_ppl.min < 12 and tag == 'sweep-1'"),
        ("sort", "Sort by next column", "Cycle the sort column: id, experiment, status, progress, headline, ..."),
        ("sort_reverse", "Reverse sort order", "Flip ascending/descending"),
    ]

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.query_text = ""
        """The box's words (every one a substring of the run's id, experiment, status, config, tags)."""
        self.where_text: str | None = None
        """The box's expression, once it parsed (then ``where_ids`` are the runs it selects)."""
        self.where_ids: frozenset[int] | None = None
        self.filter_error: str | None = None
        self._where_busy = False
        self._where_again = False
        self.order = SortOrder()
        self._shown_version = -1
        self._filter_timer: Timer | None = None
        self._status: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="status-line")
        yield RunTable(clock=self.app.clock, id="runs")
        with Vertical(id="filter-box"):
            yield Input(placeholder="filter: words (smoke running lr=0.001 #12) or an expression "
                                    "(val_ppl.min < 12 and tag == 'x') — enter keeps, esc clears", id="filter")
            yield Static(id="filter-error", markup=False)
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
            if self.where_text is not None:  # a changed run may enter or leave what the expression selects
                self._query_where()
            self._refresh_table(changed=event.ids)
        else:
            self._update_status()

    def _refresh_table(self, *, force: bool = False, changed: frozenset[int] | None = None) -> None:
        """Re-filter and re-sort after a change; with ``changed`` (and the same runs listed in the same
        order) only those runs' lines repaint, and nothing repaints when nothing changed."""
        table = self.table
        if force or self._shown_version != self.app.runs.version:
            rows = self.app.runs.view(self.query_text, self.order,
                                      only=self.where_ids if self.where_text is not None else None)
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
        if self.where_text is not None:
            flags.append(f" · where {self.where_text}", style="yellow")
        elif self.query_text:
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
        self.query_one("#filter-box").display = True
        box = self.query_one("#filter", Input)
        box.value = self.where_text if self.where_text is not None else self.query_text
        box.focus()

    def action_clear(self) -> None:
        if self.query_one("#filter-box").display or self.query_text or self.where_text is not None:
            self.query_one("#filter", Input).value = ""
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
        self._set_filter(text)

    def _set_filter(self, text: str) -> None:
        """Words filter here and now; anything else is checked as an expression on a thread (its parse
        error, if any, shows under the box, and the text is searched as words meanwhile)."""
        if not is_words(text):
            self._pending_where = text
            self._query_where()
            return
        self._pending_where = None
        self._show_filter_error(None)
        if text != self.query_text or self.where_text is not None:
            self.query_text, self.where_text, self.where_ids = text, None, None
            self._refresh_table(force=True)

    _pending_where: str | None = None
    """The expression the box asks for (the one a running check must still match to be applied)."""

    def _query_where(self) -> None:
        """(Re)read which runs the expression selects; one read at a time, the latest text wins."""
        if self._where_busy:
            self._where_again = True
            return
        text = self._pending_where if self._pending_where is not None else self.where_text
        if text is None:
            return
        self._where_busy = True
        self._select_where(text)

    @work(thread=True, group="where", exit_on_error=False, description="filter runs")
    def _select_where(self, text: str) -> None:
        from core import api

        try:
            api.check_filter(text)
            deadline = time.monotonic() + 30.0
            while self.app.db is None:  # a fast start: the registry is still being opened
                if time.monotonic() > deadline:
                    raise UserError("the registry is not open yet: try the filter again in a moment", 1)
                time.sleep(0.05)
            ids = frozenset(r.id for r in api.list_runs(self.app.db, where=text, enriched=False))
        except Exception as exc:  # a UserError says what is wrong with the text; anything else, in one line
            message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            self.app.call_from_thread(self._where_selected, text, None, message)
        else:
            self.app.call_from_thread(self._where_selected, text, ids, None)

    def _where_selected(self, text: str, ids: frozenset[int] | None, error: str | None) -> None:
        self._where_busy = False
        current = text == (self._pending_where if self._pending_where is not None else self.where_text)
        if self._where_again:
            self._where_again = False
            self._query_where()
        if not current:
            return  # the box moved on
        self._show_filter_error(error)
        if error is not None:  # not an expression: searched as words, the reason shown under the box
            self.query_text, self.where_text, self.where_ids = text, None, None
        elif self.where_text == text and self.where_ids == ids:
            return  # nothing entered or left: the table is as it should be
        else:
            self.query_text, self.where_text, self.where_ids = "", text, ids
        self._refresh_table(force=True)

    def _show_filter_error(self, error: str | None) -> None:
        if error != self.filter_error:
            self.filter_error = error
            line = self.query_one("#filter-error", Static)
            line.update(error or "")
            line.display = error is not None

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._close_filter(event.value.strip())

    def _close_filter(self, text: str) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        self.query_one("#filter-box").display = False
        self.table.focus()
        self._set_filter(text)
        self._refresh_table(force=True)
