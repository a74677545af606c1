"""Queue and GPUs: runs grouped by state, and per slot/GPU what runs on it (plus nvidia-smi numbers)."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Label, Static

from core.registry.status import RunStatus
from core.registry.view import RunView
from hrm_tui.render import duration, fmt, progress_text
from hrm_tui.tui.messages import RunsChanged
from hrm_tui.tui.runs_model import status_cell
from hrm_tui.tui.screens.base import RUN_ACTION_BINDINGS, RUN_ACTION_PALETTE, HrmScreen

FINISHED_SHOWN = 20


class QueueScreen(HrmScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "back"), Binding("enter", "open", "open"), *RUN_ACTION_BINDINGS]
    PALETTE = RUN_ACTION_PALETTE

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, list] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="scheduler-line")
        with VerticalScroll(id="queue-body"):
            yield Label("GPUs / slots", classes="section")
            yield DataTable(id="slots", cursor_type="none", show_cursor=False)
            for name in ("running", "queued", "finished"):
                yield Label(name, classes="section", id=f"label-{name}")
                yield DataTable(id=name, cursor_type="row", classes="queue-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app.watch_gpus(True)
        self.query_one("#running", DataTable).focus()
        self._redraw()
        self.every(1.0, lambda: self._redraw() if self.is_active else None)  # waiting/elapsed times

    def on_unmount(self) -> None:
        self.app.watch_gpus(False)

    def runs_changed(self, event: RunsChanged) -> None:
        self._redraw()

    @property
    def current_run_id(self) -> int | None:
        table = self.focused if isinstance(self.focused, DataTable) else None
        if table is None or table.id == "slots" or not table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return int(key) if key else None

    def action_open(self) -> None:
        if self.current_run_id is not None:
            self.app.open_run(self.current_run_id)

    @on(DataTable.RowSelected, ".queue-table")
    def _row_selected(self) -> None:
        self.action_open()

    def _redraw(self) -> None:
        rows = list(self.app.runs.rows.values())
        active = sorted((r for r in rows if RunStatus(r.status).is_active), key=lambda r: r.id)
        queued = sorted((r for r in rows if r.status == RunStatus.QUEUED.value), key=lambda r: (-r.priority, r.id))
        finished = sorted((r for r in rows if RunStatus(r.status).is_terminal),
                          key=lambda r: -(r.finished_at or r.updated_at))[:FINISHED_SHOWN]
        now = self.app.clock()
        self._scheduler_line()
        self._slots(active)
        self._fill("running", ("id", "experiment", "status", "gpu", "pid", "progress", "elapsed"), active,
                   lambda r: (str(r.id), r.experiment, status_cell(r), r.gpu or "—", str(r.pid or "—"),
                              progress_text(r.progress), duration(r.elapsed(now))))
        position = {r.id: i for i, r in enumerate(queued, start=1)}
        self._fill("queued", ("#", "id", "experiment", "variant", "priority", "waiting"), queued,
                   lambda r: (str(position[r.id]), str(r.id), r.experiment, r.variant, str(r.priority),
                              duration(now - r.created_at)))
        self._fill("finished", ("id", "experiment", "status", "headline", "elapsed", "finished"), finished,
                   lambda r: (str(r.id), r.experiment, status_cell(r), fmt(r.headline), duration(r.elapsed(now)),
                              time.strftime("%m-%d %H:%M", time.localtime(r.finished_at)) if r.finished_at else "—"))

    def _scheduler_line(self) -> None:
        line = Text(" scheduler ")
        if not self.app.schedulers:
            line.append("absent", style="bold red")
            line.append(" — queued runs wait; start one with `hrm scheduler`", style="dim")
        for beat in self.app.schedulers:
            line.append("alive", style="bold green")
            line.append(f" on {beat['host']} (pid {beat['pid']}, slots {beat['slots']})")
        self.query_one("#scheduler-line", Static).update(line)

    def _slots(self, active: list[RunView]) -> None:
        by_slot: dict[str, list[int]] = {}
        for row in active:
            by_slot.setdefault(row.gpu or "?", []).append(row.id)
        stats = {g.index: g for g in self.app.gpus or []}
        rows = [(slot, ", ".join(map(str, by_slot.get(slot, []))) or Text("idle", style="dim"),
                 f"{gpu.memory_used:,.0f}/{gpu.memory_total:,.0f} MiB" if gpu else "—",
                 f"{gpu.utilization:.0f}%" if gpu else "—", gpu.name if gpu else ("CPU" if slot == "cpu" else "—"))
                for slot in sorted(set(by_slot) | set(stats)) for gpu in [stats.get(slot)]]
        if not rows:
            rows = [("—", Text("no active runs", style="dim"), "—", "—",
                     "nvidia-smi not found" if self.app.gpus is None else "—")]
        plain = [tuple(str(c) for c in row) for row in rows]
        if self._shown.get("slots") == plain:
            return
        self._shown["slots"] = plain
        table = self.query_one("#slots", DataTable)
        table.clear(columns=True)
        table.add_columns("slot", "runs", "memory", "util", "device")
        for row in rows:
            table.add_row(*row)

    def _fill(self, name: str, columns: tuple[str, ...], rows: list[RunView], cells) -> None:
        table = self.query_one(f"#{name}", DataTable)
        content = [(row.id, cells(row)) for row in rows]
        plain = [(run_id, tuple(str(c) for c in row)) for run_id, row in content]
        if self._shown.get(name) == plain:
            return
        self._shown[name] = plain
        cursor = table.cursor_row
        table.clear(columns=True)
        table.add_columns(*columns)
        for run_id, row in content:
            table.add_row(*row, key=str(run_id))
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        self.query_one(f"#label-{name}", Label).update(f"{name} ({len(rows)})")
