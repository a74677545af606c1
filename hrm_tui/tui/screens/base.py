"""What every full screen of the dashboard shares: run actions, signal subscriptions, worker errors."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from textual import events, on
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from hrm_tui.tui.messages import LogsArrived, MetricsArrived, RunsChanged

if TYPE_CHECKING:
    from hrm_tui.tui.app import HrmApp

NARROW = 100
"""Below this many columns the footer drops the keys in ``WIDE_ONLY`` (they stay in ``?`` and the palette)."""

RUN_ACTION_BINDINGS = [
    Binding("l", "logs", "logs"),
    Binding("x", "cancel", "cancel"),
    Binding("r", "retry", "retry"),
    Binding("d", "delete", "delete"),
]
RUN_ACTION_PALETTE = [
    ("cancel", "Cancel run", "Cancel the selected run (queued: at once; running: SIGTERM via the scheduler)"),
    ("retry", "Retry run", "Queue a new run with the same experiment and config"),
    ("delete", "Delete run", "Delete the selected finished run and its metrics (asks first)"),
    ("logs", "Open logs", "The run's worker.log and registry log lines, followed live"),
]


class HrmScreen(Screen[None]):
    """A screen over the registry: subclasses implement the ``on_*`` hooks they need."""

    PALETTE: ClassVar[list[tuple[str, str, str]]] = []
    """(action, title, help) entries this screen adds to the command palette."""
    WIDE_ONLY: ClassVar[frozenset[str]] = frozenset({"retry", "delete"})
    """Actions whose keys the footer shows only when the terminal is wide."""
    _narrow: bool | None = None

    app: HrmApp  # type: ignore[assignment]

    def on_mount(self) -> None:
        self.app.runs_changed.subscribe(self, self.runs_changed)
        self.app.metrics_arrived.subscribe(self, self.metrics_arrived)
        self.app.logs_arrived.subscribe(self, self.logs_arrived)

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < NARROW
        if narrow == self._narrow:
            return
        self._narrow = narrow
        bindings = self._bindings.copy()
        for key, entries in bindings.key_to_bindings.items():
            bindings.key_to_bindings[key] = [
                replace(b, show=not narrow) if b.action in self.WIDE_ONLY and b.description else b for b in entries
            ]
        self._bindings = bindings
        self.refresh_bindings()

    def runs_changed(self, event: RunsChanged) -> None:
        """The run list changed (or a poll ticked: ``event.ids`` is empty)."""

    def metrics_arrived(self, event: MetricsArrived) -> None:
        """New metric rows of a watched run."""

    def logs_arrived(self, event: LogsArrived) -> None:
        """New log lines of a watched run."""

    @property
    def current_run_id(self) -> int | None:
        """The run the run actions (cancel, retry, delete, logs) apply to."""
        return None

    def action_cancel(self) -> None:
        self.app.cancel_run(self.current_run_id)

    def action_retry(self) -> None:
        self.app.retry_run(self.current_run_id)

    def action_delete(self) -> None:
        self.app.delete_run(self.current_run_id)

    def action_logs(self) -> None:
        if self.current_run_id is not None:
            self.app.open_logs(self.current_run_id)

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title=event.worker.description or "error",
                        severity="error", markup=False)
