"""``RunTable``: the runs list, a virtual table that renders only the rows on screen.

Textual's DataTable measures every cell of every row when rows are added (about 1 s for
10,000 runs); this table uses the Line API instead (``render_line`` per visible line), so
opening, scrolling and live updates cost the same for 10 runs or 10,000.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.registry.view import RunView
from hrm_tui.tui import runs_model as cells
from hrm_tui.tui.runs_model import ConfigSpec


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    justify: str = "left"
    sort: str | None = None
    """The ``runs_model.SORTS`` key a click on the header sorts by."""


DROP_ORDER = ("gpu", "variant", "experiment", "elapsed")
"""Columns given up, in this order, when the terminal is too narrow for the rest (``experiment`` only
while every listed run has the same one: the status line names it then)."""
CONFIG_MIN = 18
PASS_WIDTH = len("base 41% 34 tok/s ETA 12m")
"""The progress text of a run in its pass (longer ones end in an ellipsis)."""
STRIP_CACHE = 512
"""Rendered rows kept (about a dozen screens); rendering a row costs ~0.3 ms, a cached one nothing."""


class RunTable(ScrollView, can_focus=True):
    """The runs, one per line; space marks runs for comparison, enter opens one."""

    COMPONENT_CLASSES = {"run-table--header", "run-table--cursor", "run-table--marked"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
        Binding("enter", "open", "open"),
        Binding("space", "mark", "mark", key_display="␣"),
    ]

    cursor: reactive[int] = reactive(0, init=False)
    """Index of the highlighted row in ``rows``."""

    @dataclass
    class Opened(Message):
        """Enter (or a double click) on a run."""

        run_id: int

    @dataclass
    class MarksChanged(Message):
        marked: list[int]

    @dataclass
    class SortClicked(Message):
        column: str

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[RunView] = []
        self.marked: dict[int, None] = {}
        """Runs marked with space, in marking order (kept across filters and refreshes)."""
        self.diff_keys: ConfigSpec = {}
        self.headline_label = "headline"
        self.sort_column: str | None = "id"
        self.sort_descending = True
        self.columns: list[Column] = []
        self.clock = clock
        self._layout_version = 0
        self._layout_diff: ConfigSpec | None = None
        self._strips: dict[int, tuple[RunView, tuple, Strip]] = {}

    # --- data -----------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def cursor_run_id(self) -> int | None:
        return self.rows[self.cursor].id if 0 <= self.cursor < len(self.rows) else None

    def set_rows(self, rows: Sequence[RunView], *, diff_keys: ConfigSpec, headline_label: str,
                 changed: Set[int] | None = None) -> None:
        """Show ``rows`` (already filtered and sorted), keeping the cursor on the same run.

        ``changed``: the runs whose data changed. When the listed runs, their order and the columns
        are as before, only those runs' lines are repainted; otherwise the whole table is.
        """
        current = self.cursor_run_id
        same_runs = changed is not None and len(rows) == len(self.rows) and all(
            new.id == old.id for new, old in zip(rows, self.rows, strict=True))
        layout = self._layout_version
        self.rows = list(rows)
        self.diff_keys = diff_keys
        same_layout = headline_label == self.headline_label
        self.headline_label = headline_label
        self._layout()
        if same_runs and same_layout and layout == self._layout_version:
            self._refresh_runs(changed or set())
            return
        index = next((i for i, r in enumerate(self.rows) if r.id == current), None) if current is not None else None
        self.set_reactive(RunTable.cursor, min(index if index is not None else self.cursor, max(0, len(self.rows) - 1)))
        self._scroll_to_cursor()
        self.refresh()

    def _visible(self) -> range:
        """Indexes in ``rows`` of the runs on screen."""
        top = int(self.scroll_y)
        return range(top, min(len(self.rows), top + self._page))

    def _refresh_runs(self, run_ids: Set[int]) -> None:
        """Repaint the lines of these runs that are on screen (line 0 is the header)."""
        for index in self._visible():
            if self.rows[index].id in run_ids:
                self.refresh_line(index + 1)

    def tick(self) -> None:
        """The clock moved on: repaint the elapsed time of the live runs on screen, nothing else."""
        live = {self.rows[i].id for i in self._visible() if self.rows[i].is_live}
        if live:
            self._refresh_runs(live)

    def move_to(self, run_id: int) -> None:
        for index, row in enumerate(self.rows):
            if row.id == run_id:
                self.cursor = index
                return

    def on_resize(self, _event: events.Resize) -> None:
        self._layout()

    def _layout(self) -> None:
        widths = {"mark": 1, "id": max(3, len(str(max((r.id for r in self.rows), default=0)))),
                  "experiment": max([10, *(len(r.experiment) for r in self.rows[:2000])]),
                  "variant": 9, "status": 10, "progress": self._progress_width(),
                  "headline": max(9, len(self.headline_label) + 1), "elapsed": 8, "gpu": 4}
        has_config = any(self.diff_keys.values())
        keys = ["mark", "id", "experiment", "variant", *(["config"] if has_config else []), "status", "progress",
                "headline", "elapsed", "gpu"]
        available = self.scrollable_content_region.width or self.size.width or 120

        def need(names: list[str]) -> int:
            return sum(widths.get(n, CONFIG_MIN) for n in names) + len(names) - 1

        single = len({r.experiment for r in self.rows[:5000]}) <= 1
        for name in DROP_ORDER:
            if need(keys) <= available:
                break
            if name != "experiment" or single:
                keys.remove(name)
        widths["config"] = max(CONFIG_MIN, available - need([k for k in keys if k != "config"]) - 1)
        labels = {"mark": "", "config": "config", "headline": self.headline_label}
        justify = {"id": "right", "headline": "right", "elapsed": "right"}
        sorts = {k: k for k in ("id", "experiment", "status", "progress", "headline", "elapsed", "gpu")}
        columns = [Column(k, labels.get(k, k), widths[k], justify.get(k, "left"), sorts.get(k)) for k in keys]
        if columns != self.columns or self.diff_keys != self._layout_diff:
            self.columns, self._layout_diff = columns, self.diff_keys
            self._layout_version += 1
        self.virtual_size = Size(need(keys), len(self.rows) + 1)

    def _progress_width(self) -> int:
        """Room for ``s2 ep 100/100`` plus the bar, from the largest epoch total and stage listed; while a
        listed run is in a pass before its epochs, room for ``base 41% 34 tok/s ETA 12m`` (a fixed width:
        a changing rate must not move the columns)."""
        digits = max((len(str(r.total_epochs or r.epoch)) for r in self.rows), default=1)
        staged = any(r.stage for r in self.rows)
        text = max(len("progress"), 4 + 2 * digits + (3 if staged else 0))
        if any(not r.epoch and r.pass_progress is not None for r in self.rows[:5000]):
            text = max(text, PASS_WIDTH)
        return text + 1 + cells.BAR_WIDTH

    # --- rendering --------------------------------------------------------------------------

    def _cells(self, row: RunView) -> dict[str, Text]:
        marked = row.id in self.marked
        return {
            "mark": Text("●" if marked else " ", style="bold magenta"),
            "id": Text(str(row.id)),
            "experiment": Text(row.experiment),
            "variant": Text(row.variant, style="dim" if row.variant == "corrected" else "yellow"),
            "config": cells.config_cell(row, self.diff_keys.get(row.experiment, {})),
            "status": cells.status_cell(row),
            "progress": cells.progress_cell(row),
            "headline": cells.headline_cell(row),
            "elapsed": cells.elapsed_cell(row, self.clock()),
            "gpu": Text(row.gpu or "—", style="" if row.gpu else "dim"),
        }

    def _line(self, texts: dict[str, Text], style: Style | None = None) -> Strip:
        parts = []
        for col in self.columns:
            text = texts[col.key]
            text.truncate(col.width, overflow="ellipsis")
            text.align(col.justify, col.width)  # type: ignore[arg-type]
            parts.append(text)
        line = Text(" ").join(parts)
        line.no_wrap = True
        if style is not None:
            line.style = style
        return Strip(list(line.render(self.app.console)), line.cell_len)

    def _row_strip(self, row: RunView) -> Strip:
        """The row's cells, unstyled by cursor or marks; cached until the row or the layout changes."""
        key = (row.id in self.marked, self._layout_version, int(self.clock()) if row.is_live else 0)
        cached = self._strips.get(row.id)
        if cached is not None and cached[0] is row and cached[1] == key:
            return cached[2]
        strip = self._line(self._cells(row))
        if len(self._strips) > 4 * STRIP_CACHE:
            self._strips.clear()
        self._strips[row.id] = (row, key, strip)
        return strip

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("run-table--header")
            strip = self._line({c.key: Text(self._label(c)) for c in self.columns}, style)
            return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, style)
        index = scroll_y + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[index]
        style = base
        if row.id in self.marked:
            style = style + self.get_component_rich_style("run-table--marked")
        if index == self.cursor:
            style = style + self.get_component_rich_style("run-table--cursor")
        cells_strip = self._row_strip(row)
        strip = Strip(Segment.apply_style(cells_strip, style), cells_strip.cell_length)
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, style)

    def _label(self, column: Column) -> str:
        if column.sort and column.sort == self.sort_column:
            return f"{column.label}{'↓' if self.sort_descending else '↑'}"
        return column.label

    # --- cursor and keys --------------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def watch_cursor(self, _old: int, _new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.rows) - 1)) if self.rows else 0

    def _scroll_to_cursor(self) -> None:
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + self._page:
            self.scroll_to(y=self.cursor - self._page + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * self._page

    def action_jump(self, where: int) -> None:
        self.cursor = 0 if where == 0 else len(self.rows) - 1

    def action_open(self) -> None:
        if self.cursor_run_id is not None:
            self.post_message(self.Opened(self.cursor_run_id))

    def action_mark(self) -> None:
        run_id = self.cursor_run_id
        if run_id is None:
            return
        if run_id in self.marked:
            del self.marked[run_id]
        else:
            self.marked[run_id] = None
        self.post_message(self.MarksChanged(list(self.marked)))
        self.cursor += 1
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x + int(self.scroll_x))
            if column is not None and column.sort:
                self.post_message(self.SortClicked(column.sort))
            return
        index = int(self.scroll_y) + offset.y - 1
        if index < len(self.rows):
            if index == self.cursor and getattr(event, "chain", 1) >= 2:
                self.action_open()
            self.cursor = index

    def _column_at(self, x: int) -> Column | None:
        left = 0
        for column in self.columns:
            if left <= x < left + column.width:
                return column
            left += column.width + 1
        return None


