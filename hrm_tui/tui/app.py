"""``hrm-tui``: the dashboard. A thin front end over :mod:`core.api`, like the ``hrm`` CLI.

The app owns the registry connection, one poll worker and the merged state (the run list, the
metric history of the runs a screen is watching). Screens subscribe to its signals. It never
owns a worker process: quitting never stops training, and any number of dashboards can watch
one registry. Actions (submit, cancel, retry, delete) go through ``core.api`` on a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from core.errors import UserError
from hrm_tui.tui.messages import (
    ActionFinished,
    LogsArrived,
    MetricsArrived,
    RegistryOpened,
    RegistryPolled,
    RunsChanged,
)
from hrm_tui.tui.poller import GpuStat, PollResult, Watch, first_page, poll, quiet_poll
from hrm_tui.tui.runs_model import RunsModel
from hrm_tui.tui.series import RunSeries

if TYPE_CHECKING:
    from core.api import Database

DEFAULT_POLL_INTERVAL = 0.5


def _api():
    """``core.api``, imported on first use (it loads SQLAlchemy and the catalog: not before the first rows)."""
    from core import api

    return api


FIRST_PAGE = 200
FULL_POLL_EVERY = 5.0
"""Seconds between full polls while nobody commits: what changes with time alone (a scheduler's
heartbeat going stale) is still seen; in between, a poll with no new commit runs no query."""
"""Runs read by the very first poll, so the table fills before the full list is read."""
LOG_KEEP = 5000
"""Log lines kept in memory per watched run."""


class HrmApp(App[None]):
    """The dashboard over one registry."""

    CSS_PATH = "hrm.tcss"
    TITLE = "hrm-tui"
    BINDINGS = [
        Binding("question_mark", "toggle_keys", "keys"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        db: str | os.PathLike | Database | None = None,
        *,
        poll_interval: float | None = DEFAULT_POLL_INTERVAL,
        clock: Callable[[], float] = time.time,
        start_scheduler: bool = True,
    ) -> None:
        """``poll_interval=None`` disables the timer (tests call :meth:`poll_once`); ``clock`` feeds
        elapsed times (tests pin it); ``start_scheduler`` is the new-run form's default.

        A path to a current SQLite registry starts fast: the newest runs are read with the standard
        library and shown while ``core.api`` (SQLAlchemy, the catalog) loads on a thread; anything else
        is opened here, so a missing or unusable registry is refused before the screen starts."""
        super().__init__()
        self.db: Database | None = None
        self._target: str | None = None
        if db is not None and not isinstance(db, (str, os.PathLike)):
            self.db = db
        else:
            from core.facade import fastread

            target = None if db is None else str(db)
            conn = fastread.connect(target)
            if conn is not None:
                conn.close()
                self._target = target
            else:
                from core import api

                self.db = api.open_registry(target)
        self.poll_interval = poll_interval
        self.clock = clock
        self.start_scheduler = start_scheduler
        self.runs = RunsModel()
        self.counts: dict[str, int] = {}
        self.schedulers: list[dict[str, Any]] = []
        self.gpus: list[GpuStat] | None = None
        self.polled = False
        """True once the whole run list has been read."""
        self._registry_watch = None
        """``api.change_watch`` on the registry, made and used on the poll thread (polls never overlap)."""
        self._full_poll_at = float("-inf")
        self._watched_at_full: frozenset[int] = frozenset()
        self.series: dict[int, RunSeries] = {}
        self.logs: dict[int, list[str]] = {}
        self._watches: dict[int, Watch] = {}
        self._watchers: Counter[int] = Counter()
        self._gpu_watchers = 0
        self._watermark: float | None = None
        self._polling = False
        self._poll_pending = False

    @property
    def db_label(self) -> str:
        path = self._registry_path()
        return path.name if path is not None else self.db.safe_url

    def _registry_path(self):
        if self.db is None:
            from core.facade import fastread

            return fastread.sqlite_file(self._target).resolve()
        from core import api

        return api.registry_path(self.db)

    def on_mount(self) -> None:
        from hrm_tui.tui.screens.dashboard import Dashboard

        path = self._registry_path()
        self.sub_title = str(path) if path else self.db.safe_url
        self.push_screen(Dashboard())
        if self.db is None:
            self._open_registry(self._target)
            return
        self._start_polling()

    def _start_polling(self) -> None:
        if self.poll_interval:
            self.set_interval(self.poll_interval, self.poll_once)
        self.poll_once(first_page=FIRST_PAGE)
        self._poll_pending = True  # the full read follows at once

    @work(thread=True, group="open", exit_on_error=False, description="open the registry")
    def _open_registry(self, target: str | None) -> None:
        """The fast first page, then ``core.api`` and the registry for everything else (on a thread)."""
        page = first_page(target, FIRST_PAGE)
        if page is not None:
            self.post_message(RegistryPolled(page))
        from core import api

        try:
            self.post_message(RegistryOpened(api.open_registry(target)))
        except UserError as exc:
            self.post_message(RegistryOpened(None, str(exc)))

    @on(RegistryOpened)
    def _registry_opened(self, message: RegistryOpened) -> None:
        if message.db is None:
            self.notify(message.error or "cannot open the registry", title="registry", severity="error", markup=False)
            return
        self.db = message.db
        if self.poll_interval:
            self.set_interval(self.poll_interval, self.poll_once)
        self._poll_pending = False
        self.poll_once()  # the full read

    # --- polling ----------------------------------------------------------------------------

    def poll_once(self, *, first_page: int | None = None) -> None:
        """Start a poll now, or right after the one in flight (polls never overlap)."""
        if self._polling or self.db is None:
            self._poll_pending = True
            return
        self._polling = True
        watches = {run_id: Watch(w.metric_after, w.log_after, w.file_offset) for run_id, w in self._watches.items()}
        self.poll_registry(self._watermark, set(self.runs.rows), watches, self._gpu_watchers > 0, first_page)

    @property
    def poll_in_flight(self) -> bool:
        return self._polling or self._poll_pending or self.db is None

    async def settle(self) -> None:
        """Wait until no poll is in flight, its messages are handled and every deferred chart redraw
        is drawn (tests, benchmarks)."""
        while True:
            await self.workers.wait_for_complete()
            await asyncio.sleep(0)
            idle = not self.poll_in_flight and not any(w.is_running for w in self.workers)
            if idle and not any(getattr(s, "redraw_pending", False) for s in self.screen_stack):
                return
            await asyncio.sleep(0.01)

    @work(thread=True, group="poll", exit_on_error=False, description="poll the registry")
    def poll_registry(self, watermark: float | None, known: set[int], watches: dict[int, Watch], gpus: bool,
                      first_page: int | None = None) -> None:
        """Read what changed since the last poll (on a thread) and post it to the UI thread.

        Not ``exclusive``: :meth:`poll_once` already keeps polls from overlapping, and cancelling a
        poll whose result is on its way would only waste the read.
        """
        if self._registry_watch is None:
            from core import api

            self._registry_watch = api.change_watch(self.db)
        committed = self._registry_watch.changed() or not self._registry_watch.exact  # exact: SQLite
        now = time.monotonic()
        if (not committed and first_page is None and watermark is not None and set(watches) <= self._watched_at_full
                and now - self._full_poll_at < FULL_POLL_EVERY):
            result = quiet_poll(self.db, watches, self.schedulers, len(known), want_gpus=gpus)
        else:
            result = poll(self.db, watermark=watermark, known=known, watches=watches, want_gpus=gpus,
                          first_page=first_page)
            if first_page is None:
                self._full_poll_at, self._watched_at_full = now, frozenset(watches)
        self.post_message(RegistryPolled(result))

    @on(RegistryPolled)
    def _merge_poll(self, message: RegistryPolled) -> None:
        """Merge a poll; screens hear about it only when something they show changed."""
        result = message.result
        changed = self.runs.apply(result.rows, removed=result.removed, full=result.full)
        if result.watermark is not None:
            self._watermark = max(self._watermark or 0.0, result.watermark)
        before = (self.counts, self._scheduler_key(self.schedulers), self.polled, self.gpus)
        if result.counts is not None:
            self.counts = result.counts
        elif changed and self.polled:
            self.counts = self.runs.counts()
        self.schedulers = result.schedulers
        self.polled = self._watermark is not None
        if result.gpus is not None:
            self.gpus = result.gpus
        with self.batch_update():
            self._merge_run_data(result)
            if changed or before != (self.counts, self._scheduler_key(self.schedulers), self.polled, self.gpus):
                self._tell_screens("runs_changed", RunsChanged(frozenset(changed)))
        self._poll_done()

    @staticmethod
    def _scheduler_key(schedulers: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """What the screens show of the schedulers (heartbeat times change every beat; these do not)."""
        return [(s.get("host"), s.get("pid"), s.get("slots")) for s in schedulers]

    def _merge_run_data(self, result: PollResult) -> None:
        for run_id, rows in result.metrics.items():
            watch = self._watches.get(run_id)
            fresh = [r for r in rows if watch is not None and r["id"] > watch.metric_after]
            if fresh:
                watch.metric_after = fresh[-1]["id"]
                self.series.setdefault(run_id, RunSeries()).extend(fresh)
                self._tell_screens("metrics_arrived", MetricsArrived(run_id, fresh))
        for run_id in set(result.logs) | set(result.files):
            watch = self._watches.get(run_id)
            if watch is None:
                continue
            lines = [self._log_line(r) for r in result.logs.get(run_id, []) if r["id"] > watch.log_after]
            if lines:
                watch.log_after = result.logs[run_id][-1]["id"]
            chunk = result.files.get(run_id)
            if chunk is not None and watch.file_offset in (None, chunk.start):
                watch.file_offset = chunk.end
                lines.extend(chunk.text.splitlines())
            if lines:
                kept = self.logs.setdefault(run_id, [])
                kept.extend(lines)
                del kept[:-LOG_KEEP]
                self._tell_screens("logs_arrived", LogsArrived(run_id, lines))

    def _tell_screens(self, what: str, event: Any) -> None:
        """Hand a poll's news to every open dashboard screen, in this call (no message per screen: a
        message to a hidden screen would make Textual repaint the visible one whole)."""
        for screen in self.screen_stack:
            hear = getattr(screen, "hear", None)
            if hear is not None:
                hear(what, event)

    @staticmethod
    def _log_line(row: dict[str, Any]) -> str:
        return f"{time.strftime('%H:%M:%S', time.localtime(row['ts']))} {row['source']}: {row['message']}"

    def _poll_done(self) -> None:
        self._polling = False
        if self._poll_pending:
            self._poll_pending = False
            self.poll_once()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors surface: a notification, and polling goes on."""
        if event.state != WorkerState.ERROR:
            return
        if event.worker.group == "poll":
            self._poll_done()
        error = event.worker.error
        self.notify(f"{type(error).__name__}: {error}", title=event.worker.description or "error", severity="error",
                    markup=False)

    # --- what screens watch -------------------------------------------------------------------

    def watch_runs(self, run_ids: Iterable[int]) -> None:
        """Follow these runs' metrics and logs (reference-counted; pair with :meth:`unwatch_runs`)."""
        new = False
        for run_id in run_ids:
            self._watchers[run_id] += 1
            if run_id not in self._watches:
                self._watches[run_id] = Watch()
                self.series[run_id] = RunSeries()
                self.logs[run_id] = []
                new = True
        if new:
            self.poll_once()

    def unwatch_runs(self, run_ids: Iterable[int]) -> None:
        for run_id in run_ids:
            self._watchers[run_id] -= 1
            if self._watchers[run_id] <= 0:
                del self._watchers[run_id]
                self._watches.pop(run_id, None)
                self.series.pop(run_id, None)
                self.logs.pop(run_id, None)

    def watch_gpus(self, on: bool) -> None:
        self._gpu_watchers += 1 if on else -1
        if on:
            self.poll_once()

    @property
    def scheduler_alive(self) -> bool:
        return bool(self.schedulers)

    # --- actions ------------------------------------------------------------------------------

    def open_run(self, run_id: int) -> None:
        if not self._registry_ready():
            return
        from hrm_tui.tui.screens.run_view import RunScreen

        self.push_screen(RunScreen(run_id))

    def open_logs(self, run_id: int) -> None:
        if not self._registry_ready():
            return
        from hrm_tui.tui.screens.logs import LogScreen

        self.push_screen(LogScreen(run_id))

    def open_compare(self, run_ids: list[int]) -> None:
        if not self._registry_ready():
            return
        from hrm_tui.tui.screens.compare import CompareScreen

        if len(run_ids) < 2:
            self.notify("mark at least two runs with space, then press c", severity="warning")
            return
        self.push_screen(CompareScreen(run_ids))

    def open_queue(self) -> None:
        if not self._registry_ready():
            return
        from hrm_tui.tui.screens.queue import QueueScreen

        self.push_screen(QueueScreen())

    def action_open_queue(self) -> None:
        self.open_queue()

    def action_new_run(self) -> None:
        self.new_run()

    def new_run(self, experiment: str | None = None) -> None:
        if not self._registry_ready():
            return
        from hrm_tui.tui.screens.new_run import NewRunScreen

        self.push_screen(NewRunScreen(experiment, start_scheduler=self.start_scheduler), self._submitted)

    def _submitted(self, request: dict[str, Any] | None) -> None:
        if request is None:
            return
        start = request.pop("start_scheduler")

        def submit() -> Any:
            run = _api().submit(self.db, **request)
            if start:
                _api().ensure_scheduler(self.db)
            return run

        self.run_registry_action("queued", None, submit)

    def cancel_run(self, run_id: int | None) -> None:
        """Ask, then cancel; a run that cannot be cancelled gets the reason instead of a question."""
        row = self._require(run_id)
        if row is None:
            return
        why = row.why_not_cancellable()
        if why:
            self.notify(why, title="cancel", severity="warning", markup=False)
            return
        self._confirm(f"Cancel run {row.id} ({row.experiment}, {row.status})?", "cancel",
                      lambda: self.run_registry_action("cancel", row.id, partial(_api().cancel, self.db, row.id)))

    def retry_run(self, run_id: int | None) -> None:
        row = self._require(run_id)
        if row is not None:
            self.run_registry_action("retry", row.id, partial(_api().retry, self.db, row.id))

    def delete_run(self, run_id: int | None) -> None:
        """Ask, then delete; a run that cannot be deleted (it is running) gets the reason instead."""
        row = self._require(run_id)
        if row is None:
            return
        why = row.why_not_deletable()
        if why:
            self.notify(why, title="delete", severity="warning", markup=False)
            return
        self._confirm(f"Delete run {row.id} ({row.experiment}, {row.status}) and all its metrics?", "delete",
                      lambda: self.run_registry_action("delete", row.id, partial(_api().delete, self.db, row.id)))

    def edit_tags(self, run_id: int | None) -> None:
        """Ask for ``+a -b`` and change the run's tags (``core.api.edit_tags``)."""
        row = self._require(run_id)
        if row is None:
            return
        from hrm_tui.tui.screens.annotate import parse_tag_changes, tags_prompt

        def save(text: str | None) -> None:
            if text is not None:
                add, remove = parse_tag_changes(text)
                self.run_registry_action("tags", row.id, partial(_api().edit_tags, self.db, row.id, add=add,
                                                                 remove=remove))

        self.push_screen(tags_prompt(row.id, row.tags, _api().edit_tags_check), save)

    def edit_note(self, run_id: int | None) -> None:
        """Ask for the run's note (an empty one removes it) and save it (``core.api.set_note``)."""
        row = self._require(run_id)
        if row is None:
            return
        from hrm_tui.tui.screens.annotate import note_prompt

        def save(text: str | None) -> None:
            if text is not None and text.strip() != (row.extras.get("note") or ""):
                self.run_registry_action("note", row.id, partial(_api().set_note, self.db, row.id,
                                                                 text.strip() or None))

        self.push_screen(note_prompt(row.id, row.extras.get("note")), save)

    def _registry_ready(self) -> bool:
        """False (and says so) while the registry is still being opened after a fast start."""
        if self.db is None:
            self.notify("still opening the registry…", severity="warning")
        return self.db is not None

    def _require(self, run_id: int | None):
        if not self._registry_ready():
            return None
        row = self.runs.get(run_id) if run_id is not None else None
        if row is None:
            self.notify("no run selected", severity="warning")
        return row

    def _confirm(self, question: str, verb: str, then: Callable[[], None]) -> None:
        from hrm_tui.tui.screens.confirm import ConfirmScreen

        self.push_screen(ConfirmScreen(question, verb), lambda ok: then() if ok else None)

    @work(thread=True, group="actions", exit_on_error=False, description="registry action")
    def run_registry_action(self, verb: str, run_id: int | None, action: Callable[[], Any]) -> None:
        """Run a ``core.api`` call off the UI thread; a UserError comes back as a message."""
        try:
            outcome = action()
        except UserError as exc:
            self.post_message(ActionFinished(verb, run_id, error=str(exc)))
        else:
            self.post_message(ActionFinished(verb, run_id, outcome))

    @on(ActionFinished)
    def _action_finished(self, message: ActionFinished) -> None:
        if message.error:
            self.notify(message.error, title=message.verb, severity="error", markup=False)
        else:
            self.notify(self._describe(message), title=message.verb)
        self.poll_once()

    @staticmethod
    def _describe(message: ActionFinished) -> str:
        outcome = message.outcome
        if message.verb == "cancel":
            return f"run {message.run_id}: " + ("cancelled" if outcome.status == "cancelled" else "cancel requested")
        if message.verb == "retry":
            return f"run {outcome.id} queued (retry of {message.run_id})"
        if message.verb == "delete":
            return f"run {message.run_id} deleted"
        if message.verb == "tags":
            return f"run {message.run_id} tags: {' '.join(outcome) if outcome else '(none)'}"
        if message.verb == "note":
            return f"run {message.run_id}: " + ("note saved" if getattr(outcome, "note", None) else "note removed")
        return f"run {outcome.id} queued ({outcome.experiment}, {outcome.variant})"

    # --- command palette ----------------------------------------------------------------------

    def action_toggle_keys(self) -> None:
        """Show or hide the panel listing every key of the current screen."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_show_help_panel(self) -> None:
        """The keys panel takes the right third: the footer, which would no longer fit beside it (its
        keys ran under the palette hint), hides while the panel lists every key (``-keys-shown``)."""
        super().action_show_help_panel()
        self.screen.add_class("-keys-shown")

    def action_hide_help_panel(self) -> None:
        super().action_hide_help_panel()
        self.screen.remove_class("-keys-shown")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New run", "Queue a run from a form generated from the experiment's config",
                            self.new_run)
        yield SystemCommand("Queue and GPUs", "Queued, running and finished runs; per-GPU slots", self.open_queue)
        for action, title, help_text in getattr(screen, "PALETTE", ()):
            yield SystemCommand(title, help_text, partial(self.run_action, action, screen))


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one ``error: ...`` line and exit code 2, as for every ``hrm`` command."""

    def error(self, message: str) -> None:  # argparse prints the usage too, and "hrm-tui: error:"
        self.exit(2, f"error: {message} (hrm-tui --help lists the options)\n")


class PrintVersion(argparse.Action):
    """``--version``, as ``hrm --version`` prints it (the package metadata is read only when asked)."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("hrm-tui")
        except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
            number = "unknown"
        sys.stdout.write(f"hrm-tui {number}\n")
        parser.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="hrm-tui", description="Dashboard over an hrm run registry.")
    parser.add_argument("--db", default=os.environ.get("HRM_DB"),
                        help="registry path or SQLAlchemy URL [env HRM_DB, default ./runs.db]")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_INTERVAL, help="seconds between polls")
    parser.add_argument("--version", action=PrintVersion)
    args = parser.parse_args(argv)
    try:
        app = HrmApp(db=args.db, poll_interval=max(0.1, args.poll))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    app.run()


if __name__ == "__main__":
    main()
