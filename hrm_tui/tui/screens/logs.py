"""A run's logs, full screen and followed live: worker.log (stdout/stderr) and the registry's log lines."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Log, Static

from core import api
from hrm_tui.tui.messages import LogsArrived
from hrm_tui.tui.screens.base import HrmScreen


class LogScreen(HrmScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("f", "follow", "follow"),
        Binding("x", "cancel", "cancel"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id

    @property
    def current_run_id(self) -> int | None:
        return self.run_id

    def compose(self) -> ComposeResult:
        path = api.worker_log_path(self.app.db, self.run_id)
        # the path last: a narrow terminal cuts the end of the line
        yield Static(f" run {self.run_id} logs (last 64 kB, then live) · {path}", id="log-title")
        yield Log(id="full-log", max_lines=20_000, auto_scroll=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app.watch_runs([self.run_id])
        log = self.query_one("#full-log", Log)
        log.write_lines(self.app.logs.get(self.run_id, []))
        log.focus()

    def on_unmount(self) -> None:
        self.app.unwatch_runs([self.run_id])

    def caught_up(self) -> None:
        log = self.query_one("#full-log", Log)
        log.clear()
        log.write_lines(self.app.logs.get(self.run_id, []))

    def logs_arrived(self, event: LogsArrived) -> None:
        if event.run_id == self.run_id:
            self.query_one("#full-log", Log).write_lines(event.lines)

    def action_follow(self) -> None:
        log = self.query_one("#full-log", Log)
        log.auto_scroll = not log.auto_scroll
        if log.auto_scroll:
            log.scroll_end(animate=False)
        self.notify("following" if log.auto_scroll else "not following", timeout=1.5)
