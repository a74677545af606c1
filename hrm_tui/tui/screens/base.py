"""What every full screen of the dashboard shares: run actions, signal subscriptions, worker errors."""

from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual import events, on
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from hrm_tui.tui.messages import LogsArrived, MetricsArrived, RunsChanged

if TYPE_CHECKING:
    from hrm_tui.tui.app import HrmApp

PALETTE_HINT = 11
"""Cells of the footer's ``▏^p palette`` hint, right of the keys."""

RUN_ACTION_BINDINGS = [
    Binding("l", "logs", "logs"),
    Binding("x", "cancel", "cancel"),
    Binding("r", "retry", "retry"),
    Binding("d", "delete", "delete"),
]
ANNOTATE_BINDINGS = [
    Binding("t", "tags", "tags", show=False),
    Binding("N", "note", "note", show=False),
]
"""Edit the run's tags (``+a -b``) and note after submit (in ``?`` and the palette; the footer stays short)."""
ANNOTATE_PALETTE = [
    ("tags", "Edit tags", "Add (+name) and remove (-name) tags of the selected run"),
    ("note", "Edit note", "Write, change or (empty) remove the selected run's note"),
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

    _pending_runs: frozenset[int] | None = None
    """Runs that changed while another screen was on top (None: nothing happened)."""
    _pending_data = False
    _own_timers: list[Timer]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._own_timers = []


    # A screen under another one repaints nothing: Textual counts the screen under the top one as
    # visible and forwards its dirty lines to the top screen, which then repaints whole. It notes
    # what changed instead and catches up when it is on top again (``is_active``, not ``is_current``).

    def hear(self, what: str, event: RunsChanged | MetricsArrived | LogsArrived) -> None:
        """News from the app's poll (``what``: runs_changed, metrics_arrived or logs_arrived)."""
        if not self.is_mounted:
            return
        if self.is_active:
            getattr(self, what)(event)
        elif isinstance(event, RunsChanged):
            self._pending_runs = (self._pending_runs or frozenset()) | event.ids
        else:
            self._pending_data = True

    def every(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """An interval timer that runs only while this screen is on top: any message a hidden screen
        handles makes Textual repaint the screen on top whole."""
        timer = self.set_interval(seconds, callback)
        self._own_timers.append(timer)
        return timer

    def on_screen_suspend(self) -> None:
        for timer in self._own_timers:
            timer.pause()

    def on_screen_resume(self) -> None:
        for timer in self._own_timers:
            timer.resume()
        pending, self._pending_runs = self._pending_runs, None
        if pending is not None:
            self.runs_changed(RunsChanged(pending))
        if self._pending_data:
            self._pending_data = False
            self.caught_up()

    def caught_up(self) -> None:
        """Metrics or log lines arrived while this screen was hidden: redraw from the app's state."""

    def footer_width(self) -> int:
        """Cells the footer needs for every key it lists (the ``WIDE_ONLY`` ones too) and the palette
        hint: below it the ``WIDE_ONLY`` keys go (they stay in ``?`` and the palette), so that no key
        runs under the hint."""
        keys: dict[str, int] = {}
        for binding in [*self.BINDINGS, *self.app.BINDINGS]:
            if isinstance(binding, Binding) and binding.show and binding.description:
                keys.setdefault(binding.key, len(self.app.get_key_display(binding)) + 1 + len(binding.description))
        return sum(keys.values()) + len(keys) - 1 + PALETTE_HINT

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < self.footer_width()
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

    def action_tags(self) -> None:
        self.app.edit_tags(self.current_run_id)

    def action_note(self) -> None:
        self.app.edit_note(self.current_run_id)

    def action_logs(self) -> None:
        if self.current_run_id is not None:
            self.app.open_logs(self.current_run_id)

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title=event.worker.description or "error",
                        severity="error", markup=False)
