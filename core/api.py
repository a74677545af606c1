"""The façade both front ends (CLI and dashboard) go through: submit, list, show, cancel, retry.

Front ends parse input and render output; every decision about runs lives here or below.
Errors a user can cause are :class:`UserError` (a one-line message, exit code 1 or 2).
What this module cannot hold (the start-up-light paths, and reproduce/report/sweep/search, which
import this module) the front ends reach through :mod:`core.facade`, loaded on first use.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import UserError
from core.experiments import UnknownExperiment, catalog, get_experiment
from core.registry.tracked import SCRIPT_SLOT
from core.experiments.base import Unavailable
from core.experiments.schema import describe
from core.paths import worker_log
from core.registry import Database, RegistryError, RunStatus, open_database, store
from core.registry.db import sqlite_path
from core.registry.view import RUNS_JSON_SCHEMA, RunView
from core.scheduler.loop import HEARTBEAT_STALE_AFTER
from core.scheduler.process import is_worker_of, signal_group

Run = RunView
"""The run entity every front end reads (:class:`core.registry.view.RunView`)."""

__all__ = ["RUNS_JSON_SCHEMA", "Run", "RunView", "UserError"]  # and every public function below


def open_registry(db: str | None, *, create: bool = False) -> Database:
    """The registry at ``db`` (path or URL; None: ``$HRM_DB`` or ``./runs.db``); UserError when unusable.

    Without ``create`` a missing file is refused (readers never leave an empty ``runs.db`` behind)."""
    try:
        return open_database(db, create=create)
    except RegistryError as exc:
        raise UserError(str(exc), 1) from None


def worker_log_path(db: Database, run_id: int) -> Path:
    """Where the scheduler sends a run's stdout and stderr."""
    return worker_log(db.url, run_id)


def registry_path(db: Database) -> Path | None:
    """The file behind a SQLite registry (None for a server database or in-memory SQLite)."""
    return sqlite_path(db.url)


# --- configs ----------------------------------------------------------------------------------

def experiment_names() -> list[str]:
    """The catalog's experiment names, in catalog order."""
    return list(catalog())


def describe_experiment(name: str) -> dict[str, Any]:
    """An experiment's catalog entry (``hrm.experiments/v1`` shape); UserError(exit 2) when unknown."""
    try:
        return describe(get_experiment(name))
    except UnknownExperiment as exc:
        raise UserError(str(exc), 2) from None


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def format_validation_error(exc: ValidationError) -> str:
    """A pydantic error → ``--hard-ratio: Input should be less than 1 (got 1.5)``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    where = option_name(loc) if loc else "config"
    got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
    if err["type"] == "extra_forbidden":
        return f"unknown option {where}"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error" and not loc:
        return message
    return f"{where}: {message}{got}"


def validate_config(experiment: str, values: Mapping[str, Any]):
    """The experiment's validated config, or UserError(exit 2)."""
    try:
        exp = get_experiment(experiment)
    except UnknownExperiment as exc:
        raise UserError(str(exc), 2) from None
    try:
        return exp.make_config(**dict(values))
    except ValidationError as exc:
        raise UserError(f"invalid config for {experiment}: {format_validation_error(exc)}", 2) from None


def submit(db: Database, experiment: str, values: Mapping[str, Any], *, tags: Sequence[str] = (),
           priority: int = 0, retry_of: int | None = None, host: str | None = None,
           executor: str | None = None) -> Run:
    """Validate and queue a run; nothing is written when validation fails.

    ``host`` pins the run to the scheduler of that name (``hrm run --host H``); None: any host.
    ``executor`` (``local``, ``slurm`` or ``ray``, ``hrm run --executor``): where it runs; None: the scheduler's choice.
    """
    check_executor(executor)
    config = validate_config(experiment, values)
    if host is not None and not host.strip():
        raise UserError("--host: a scheduler name cannot be empty", 2)
    exp = get_experiment(experiment)
    try:  # an extra, data or model missing on this machine: refused now, not minutes later in a worker
        if sqlite_path(db.url) is not None:  # a SQLite registry's workers run here; a shared one's may run elsewhere
            config.check_requirements()
        config.preflight()
    except Unavailable as exc:
        raise UserError(f"{experiment}: {exc}", 1) from None
    return store.create_run(db, experiment, config.model_dump(mode="json"), tags=tags, priority=priority,
                            retry_of=retry_of, headline_key=exp.headline, target_host=host, executor=executor)


EXECUTORS = ("local", "slurm", "ray")
"""Where a worker may run: a subprocess of the scheduler's host, a Slurm job (core.scheduler.slurm) or a
Ray actor (core.scheduler.ray_engine)."""


def check_executor(executor: str | None) -> None:
    """``--executor``: one of :data:`EXECUTORS` (UserError, exit 2, before anything is written); ``ray``
    needs the ``[ray]`` extra installed."""
    if executor is not None and executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: expected {' or '.join(EXECUTORS)}", 2)
    if executor == "ray":
        from core.scheduler.ray_engine import ray_missing

        if (problem := ray_missing()) is not None:
            raise UserError(problem, 2)


# --- scheduler ------------------------------------------------------------------------------

def local_scheduler_name() -> str:
    """The name this host's scheduler registers under (its host name)."""
    import socket

    return socket.gethostname()


def scheduler_alive(db: Database, *, name: str | None = None) -> bool:
    """Is a scheduler alive (``name``: the one of that name, e.g. :func:`local_scheduler_name`)?"""
    return bool(store.live_schedulers(db, stale_after=HEARTBEAT_STALE_AFTER, name=name))


def start_background_scheduler(db: Database, *, idle_exit: float = 300.0) -> int:
    """Spawn this host's scheduler (``python -m core.scheduler``) detached from this terminal; returns its pid.

    It exits by itself after ``idle_exit`` seconds with nothing queued or running. The registry URL
    reaches it through the environment, never its command line (see :mod:`core.scheduler.spawn`).
    """
    from core.paths import open_scheduler_log
    from core.scheduler.spawn import spawn

    with open_scheduler_log(db) as log:
        proc = spawn("core.scheduler", ["--idle-exit", str(idle_exit)], db_url=db.url, log=log)
    return proc.pid


def ensure_scheduler(db: Database) -> int | None:
    """Start this host's background scheduler unless it is alive; returns the new pid or None."""
    if scheduler_alive(db, name=local_scheduler_name()):
        return None
    return start_background_scheduler(db)


@dataclass(frozen=True)
class SchedulerPlan:
    """Where a foreground scheduler runs workers (``hrm scheduler``), checked before the registry opens."""

    slots: Any
    executor: str = "local"
    slurm: Any = None
    ray: Any = None
    """Ray's options (``--ray-address``, ``--ray-gpus``): the default engine's with ``--executor ray``, else
    those of the runs that ask for Ray."""

    def describe(self) -> str:
        if self.executor == "slurm":
            return f"Slurm (up to {self.slots.max_parallel} jobs)"
        if self.executor == "ray":
            return f"Ray at {self.ray.resolved_address()} (up to {self.slots.max_parallel} runs)"
        return self.slots.describe()


def plan_scheduler(*, gpus: str | None = None, pack: int = 1, max_parallel: int | None = None,
                   executor: str = "local", partition: str | None = None, gres: str | None = None,
                   time_limit: str | None = None, cpus_per_task: int | None = None,
                   mem: str | None = None, ray_address: str | None = None,
                   ray_gpus: float | None = None) -> SchedulerPlan:
    """Slots and executor from the scheduler's options; UserError(2) for contradictions or a missing extra,
    (1) without Slurm."""
    from core.scheduler import Slots

    slurm_flags = [flag for flag, value in (("--partition", partition), ("--gres", gres), ("--time", time_limit),
                                            ("--cpus-per-task", cpus_per_task), ("--mem", mem)) if value is not None]
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: expected {' or '.join(EXECUTORS)}", 2)
    ray = None
    if executor == "ray" or ray_address is not None or ray_gpus is not None:
        from core.scheduler.ray_engine import ray_missing, ray_options

        try:
            ray = ray_options(address=ray_address, num_gpus=ray_gpus)
        except ValueError as exc:
            raise UserError(str(exc), 2) from None
        if executor == "ray" and (problem := ray_missing()) is not None:
            raise UserError(problem, 2)
    if executor == "ray":
        if slurm_flags:
            raise UserError(f"{slurm_flags[0]} is a Slurm option: with --executor ray ask Ray with --ray-gpus", 2)
        if gpus or pack != 1:
            raise UserError("--gpus and --pack are for local workers: with --executor ray ask Ray with --ray-gpus", 2)
        from core.scheduler.ray_engine import RayError, probe_head

        try:  # before the registry is opened: an unreachable cluster writes nothing
            probe_head(ray.resolved_address())
        except RayError as exc:
            raise UserError(f"--executor ray: {exc}", 1) from None
        return SchedulerPlan(Slots.from_options("", max_parallel=max_parallel or 16), "ray", ray=ray)
    if executor == "local":
        if slurm_flags:
            raise UserError(f"{slurm_flags[0]} is a Slurm option: add --executor slurm", 2)
        return SchedulerPlan(Slots.from_options(gpus, pack=pack, max_parallel=max_parallel), ray=ray)
    if gpus or pack != 1:
        raise UserError("--gpus and --pack are for local workers: with --executor slurm ask Slurm with --gres", 2)
    from core.scheduler.slurm import slurm_available, slurm_options

    try:
        options = slurm_options(partition=partition, gres=gres, time_limit=time_limit, cpus_per_task=cpus_per_task,
                                mem=mem)
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    if (problem := slurm_available()) is not None:
        raise UserError(f"--executor slurm: {problem}", 1)
    slots = Slots.from_options("", max_parallel=max_parallel or 16)  # Slurm places the jobs: this bounds how many
    return SchedulerPlan(slots, "slurm", options, ray=ray)


def run_scheduler(db: Database, plan: SchedulerPlan, *, name: str | None = None, stale_after: float = 60.0,
                  once: bool = False, idle_exit: float | None = None, retries: int = 0, on_finish: str | None = None,
                  webhook: str | None = None, on_start: Callable[[], None] | None = None) -> None:
    """Run a scheduler in this process until it stops; UserError(1) when one of that name is alive.

    ``on_start`` runs once the scheduler holds its lease (a banner that a refused scheduler never prints).
    """
    from core.resume import EndPolicy
    from core.scheduler import Scheduler, SchedulerAlreadyRunning

    engine = None
    beat = {"HRM_HEARTBEAT_INTERVAL": f"{max(0.2, min(5.0, stale_after / 6)):g}"}
    if plan.executor == "slurm":
        from core.scheduler.by_run import slurm_first

        engine = slurm_first(db, plan.slurm, env=beat, ray=plan.ray)
    elif plan.executor == "ray":
        from core.scheduler.by_run import ray_first
        from core.scheduler.ray_engine import RayError

        try:
            engine = ray_first(db, plan.ray, env=beat)
        except RayError as exc:
            raise UserError(f"--executor ray: {exc}", 1) from None
    elif plan.ray is not None:
        from core.scheduler.by_run import default_executor

        engine = default_executor(db, env=beat, ray=plan.ray)
    policy = EndPolicy(retries=retries, on_finish=on_finish, webhook=webhook)
    try:
        Scheduler(db, plan.slots, name=name, stale_after=stale_after, once=once, idle_exit=idle_exit,
                  end_policy=policy, executor=engine, on_start=on_start).run()
    except SchedulerAlreadyRunning as exc:
        raise UserError(str(exc), 1) from None


def worker_output_since(db: Database, run_id: int, after_id: int = 0) -> list[dict[str, Any]]:
    """Chunks of a worker's stdout/stderr shipped into the registry (readable from any host), after ``after_id``."""
    from core.registry import output

    require_run(db, run_id)
    return output.output_since(db, run_id, after_id=after_id)


# --- reading runs -----------------------------------------------------------------------------

def require_run(db: Database, run_id: int) -> Run:
    run = store.get_run(db, run_id)
    if run is None:
        raise UserError(f"run {run_id} does not exist in {db.safe_url}", 1)
    return run


def list_runs(db: Database, **filters: Any) -> list[Run]:
    """Runs newest first, with their tags and headline fallback (filters: see ``store.list_runs``)."""
    return store.list_runs(db, **filters)


def run_record(run: Run, latest: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The stable JSON shape of a run (``hrm.runs/v1``): :meth:`RunView.record`."""
    return run.record(latest)


def list_records(db: Database, **filters: Any) -> list[dict[str, Any]]:
    """``hrm.runs/v1`` records of the runs ``list_runs`` finds, with their latest-metric summaries."""
    runs = store.list_runs(db, **filters)
    latest = store.latest_metrics(db, [r.id for r in runs])
    return [r.record(latest.get(r.id, [])) for r in runs]


@dataclass(frozen=True)
class RunDetail:
    """Everything ``hrm show`` and the dashboard's run view print about one run."""

    run: Run
    latest: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    tables: list[dict[str, Any]]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    """Every attempt, oldest first (more than one once the run was resumed or retried in place)."""
    checkpoint: dict[str, Any] | None = None
    """The newest checkpoint its worker recorded (None: none)."""

    @property
    def record(self) -> dict[str, Any]:
        return self.run.record(self.latest)


def run_detail(db: Database, run_id: int, *, with_metrics: bool = True) -> RunDetail:
    """The run, its latest-metric summaries, its metric history (unless ``with_metrics`` is False)
    and its analysis tables; UserError when it does not exist."""
    run = require_run(db, run_id)
    latest = store.latest_metrics(db, [run_id]).get(run_id, [])
    metrics = store.metrics(db, run_id) if with_metrics else []
    resumed = attempt_fields(db, run_id)
    return RunDetail(run, latest, metrics, store.result_tables(db, run_id), resumed["attempts"],
                     resumed["checkpoint"])


def metrics_since(db: Database, run_id: int, after_id: int = 0, *, kind: str | None = None) -> list[dict[str, Any]]:
    """Metric rows of a run emitted after row ``after_id`` (of one ``kind``: epoch, layer, summary),
    in emission order (live tails; ``after_id=0`` is the whole history)."""
    return store.metrics(db, run_id, after_id=after_id, kind=kind)


def result_tables(db: Database, run_id: int) -> list[dict[str, Any]]:
    """A run's analysis tables ({name, stage, rows}), in emission order."""
    return store.result_tables(db, run_id)


def logs_since(db: Database, run_id: int, after_id: int = 0) -> list[dict[str, Any]]:
    """Registry log lines (worker and scheduler notes) of a run after row ``after_id``."""
    return store.logs(db, run_id, after_id=after_id)


def change_watch(db: Database):
    """A :class:`core.registry.change_watch.ChangeWatch` on ``db``: ``changed()`` says whether anyone
    committed since the last call (exact on SQLite), so an idle poller can skip its queries."""
    from core.registry.change_watch import ChangeWatch

    return ChangeWatch(db)


def scheduler_status(db: Database) -> list[dict[str, Any]]:
    """The live schedulers' heartbeat rows (host, pid, slots, started_at, beat_at); empty when none."""
    return store.live_schedulers(db, stale_after=HEARTBEAT_STALE_AFTER)


def count_by_status(db: Database) -> dict[str, int]:
    return store.count_by_status(db)


def run_census(db: Database) -> tuple[int, int]:
    """(number of runs, largest id): lets a poller notice deletions without reading every id."""
    return store.run_census(db)


def all_run_ids(db: Database) -> set[int]:
    return store.all_run_ids(db)


LOG_TAIL_BYTES = 64_000
"""A worker.log first read from its tail starts this many bytes before its end."""


@dataclass(frozen=True)
class LogChunk:
    """Whole lines of a worker.log: bytes ``start``..``end`` decoded as ``text``."""

    start: int
    end: int
    text: str


def read_worker_log(db: Database, run_id: int, offset: int | None = 0) -> LogChunk | None:
    """The whole new lines of a run's worker.log (stdout+stderr) from byte ``offset``.

    ``offset=None`` starts at the last :data:`LOG_TAIL_BYTES`. A line still being written is left
    for the next call, so a follower never prints it split in two. None when nothing new (or no file).
    The one tailer behind ``hrm logs -f`` and the dashboard's log views.
    """
    path = worker_log(db.url, run_id)
    try:
        size = path.stat().st_size
    except OSError:  # not on this host: the output the worker shipped into the registry
        from core.registry import output

        start, data = output.read_from(db, run_id, offset, tail_bytes=LOG_TAIL_BYTES)
        size = start + len(data)  # past ``offset`` when the oldest chunks were dropped (bounded per run)
    else:
        start = max(0, size - LOG_TAIL_BYTES) if offset is None else offset
        if size <= start:
            return None
        with path.open("rb") as f:
            f.seek(start)
            data = f.read(size - start)
    if not data:
        return None
    if offset is None and start > 0:
        data = data[data.find(b"\n") + 1 :]  # drop the partial first line of a tail
        start = size - len(data)
    complete = data.rfind(b"\n") + 1
    if complete == 0 and len(data) < LOG_TAIL_BYTES:
        return None
    data = data[:complete] if complete else data
    return LogChunk(start, start + len(data), data.decode("utf-8", "replace"))


def tail_worker_log(db: Database, run_id: int, *, follow: bool = False, poll: float = 0.3) -> Iterator[str]:
    """The worker.log text from the start, in whole lines; with ``follow`` until the run ends (and the
    last lines it wrote are read)."""
    offset = 0
    while True:
        run = require_run(db, run_id) if follow else None
        while (chunk := read_worker_log(db, run_id, offset)) is not None:
            offset = chunk.end
            yield chunk.text
        if run is None or run.status.is_terminal:
            return
        time.sleep(poll)


# --- actions ----------------------------------------------------------------------------------

def cancel(db: Database, run_id: int, *, force: bool = False) -> Run:
    """Cancel a run: queued → cancelled now; active → its scheduler sends SIGTERM then SIGKILL.

    With no live scheduler for the run on this host, the worker is signalled directly. ``force``
    ends an active run at once whatever its worker's state (an orphan of a gone host, a stuck
    worker): a local worker is killed, the run is marked ``cancelled``, and a remote worker that
    is still alive gives up at its next heartbeat.
    """
    run = require_run(db, run_id)
    if run.status.is_terminal:
        raise UserError(run.why_not_cancellable() or "", 1)
    run = store.request_cancel(db, run_id)
    if not run.status.is_active:
        return run
    local = run.pid and run.host == local_scheduler_name() and is_worker_of(run.pid, run_id)
    if force:
        if local:
            signal_group(run.pid, signal.SIGKILL)
        where = f"pid {run.pid} on {run.host}" if run.pid else "no worker yet"
        store.finish_run(db, run_id, RunStatus.CANCELLED, error=f"cancelled by force ({where})")
        store.add_log(db, run_id, f"cancelled by force ({where})", source="user")
        return require_run(db, run_id)
    owner = getattr(run, "scheduler_name", None) or local_scheduler_name()
    if local and not scheduler_alive(db, name=owner):
        signal_group(run.pid, signal.SIGTERM)
    return run


def retry(db: Database, run_id: int) -> Run:
    """A new queued run with the same experiment and config (linked by ``retry_of``)."""
    run = require_run(db, run_id)
    if getattr(run, "imported_from", None):
        raise UserError(f"run {run_id} was imported ({run.imported_from}): a read-only record cannot be retried", 1)
    if run.gpu == SCRIPT_SLOT:
        raise UserError(f"run {run_id} was recorded by a script (hrm_tui.init), not queued: run the script again, "
                        "or queue it with hrm exec", 1)
    return submit(db, run.experiment, dict(run.config), tags=run.tags, retry_of=run_id)


def delete(db: Database, run_id: int) -> None:
    why = require_run(db, run_id).why_not_deletable()
    if why:
        raise UserError(why, 1)
    store.delete_run(db, run_id)


@dataclass
class FollowUpdate:
    """What ``follow`` yields: the run as it is now and the rows that arrived since the last poll."""

    run: Run
    metrics: list[dict[str, Any]]
    logs: list[dict[str, Any]]


def follow(db: Database, run_id: int, *, poll: float = 0.25,
           dead_after: float = 2 * HEARTBEAT_STALE_AFTER) -> Iterator[FollowUpdate]:
    """Yield new metric rows and log lines until the run reaches a terminal status.

    Raises :class:`UserError` when no scheduler can move the run on for ``dead_after`` seconds
    (see :func:`wait`), instead of following forever.
    """
    after_metric = after_log = 0
    stuck = _StuckWatch(db, dead_after)
    while True:
        run = require_run(db, run_id)
        rows = store.metrics(db, run_id, after_id=after_metric)
        lines = store.logs(db, run_id, after_id=after_log)
        if rows:
            after_metric = rows[-1]["id"]
        if lines:
            after_log = lines[-1]["id"]
        yield FollowUpdate(run, rows, lines)
        if run.status.is_terminal:
            return
        stuck.check(run)
        time.sleep(poll)


class _StuckWatch:
    """Raises UserError once :func:`nobody_to_run` has said why for ``dead_after`` seconds running
    (checked at most once a second: it reads the scheduler leases)."""

    def __init__(self, db: Database, dead_after: float) -> None:
        self.db, self.dead_after = db, dead_after
        self.since: float | None = None
        self.checked = 0.0

    def check(self, run: Run) -> None:
        now = time.monotonic()
        if now - self.checked < 1.0:
            return
        self.checked = now
        why = nobody_to_run(self.db, run)
        if why is None:
            self.since = None
        elif self.since is None:
            self.since = now
        elif now - self.since >= self.dead_after:
            raise UserError(why, 1)


def nobody_to_run(db: Database, run: Run) -> str | None:
    """Why no scheduler can move ``run`` on (one line), or None while one can.

    A queued run needs a live scheduler (the one it is pinned to, if any); an active one needs its
    worker beating or a live scheduler to settle it (a stale worker is marked lost by any scheduler).
    """
    if run.status.is_terminal:
        return None
    pinned = getattr(run, "target_host", None)
    if run.status == RunStatus.QUEUED:
        if scheduler_alive(db, name=pinned):
            return None
        who = f"scheduler {pinned!r}" if pinned else "scheduler"
        return f"run {run.id} is queued but no {who} is alive (it exited or was killed): start one with `hrm scheduler`"
    if scheduler_alive(db):
        return None
    from core.scheduler.loop import WORKER_STALE_AFTER

    beat = getattr(run, "heartbeat_at", None) or run.started_at or run.updated_at
    if beat is not None and time.time() - beat <= WORKER_STALE_AFTER:
        return None
    return (f"run {run.id} is {run.status} but its worker stopped beating and no scheduler is alive to settle it: "
            f"start one with `hrm scheduler`, or `hrm cancel --force {run.id}`")


def wait(db: Database, run_id: int, *, poll: float = 0.5, timeout: float | None = None,
         dead_after: float = 2 * HEARTBEAT_STALE_AFTER) -> Run:
    """Block until the run ends (or ``timeout``); returns the run.

    Raises :class:`UserError` when no scheduler can move it on for ``dead_after`` seconds (the
    background scheduler died): waiting would never end.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    stuck = _StuckWatch(db, dead_after)
    while True:
        run = require_run(db, run_id)
        if run.status.is_terminal or (deadline and time.monotonic() > deadline):
            return run
        stuck.check(run)
        time.sleep(poll)


# --- annotations, search and analysis: hrm tag / note / --where, hrm_tui.analysis ---------------

TAG_PATTERN = r"[A-Za-z0-9_.:=@/-][A-Za-z0-9_.:=@/+-]{0,99}"


def check_filter(where: str) -> None:
    """UserError (exit 2, with the column) unless ``where`` is a well-formed ``--where`` filter."""
    from core.registry.filter import validate

    validate(where)


def edit_tags_check(tag: str) -> None:
    """UserError (exit 2) unless ``tag`` is a plain tag: no spaces, not starting with + or -."""
    import re

    if not re.fullmatch(TAG_PATTERN, tag) or tag[0] in "+-":
        raise UserError(f"invalid tag {tag!r}: letters, digits and _ . : = @ / - (at most 100, no spaces)", 2)


def edit_tags(db: Database, run_id: int, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
    """Add and remove tags of a run after submit (one transaction); returns its tags afterwards."""
    for tag in (*add, *remove):
        edit_tags_check(tag)
    tags = store.set_tags(db, run_id, add=add, remove=remove)
    if tags is None:
        raise UserError(f"run {run_id} does not exist in {db.safe_url}", 1)
    return tags


def set_note(db: Database, run_id: int, note: str | None) -> Run:
    """Replace (or with None / "" clear) a run's free-text note."""
    if note is not None and len(note) > 10_000:
        raise UserError("a note is at most 10,000 characters", 2)
    if not store.set_note(db, run_id, note or None):
        raise UserError(f"run {run_id} does not exist in {db.safe_url}", 1)
    return require_run(db, run_id)


def export_runs(db: Database, run_ids: Sequence[int], to: str, target: str) -> str:
    """Export runs to ``tensorboard`` (event files in folder ``target``), ``mlflow`` (a tracking URI),
    ``csv`` or ``parquet`` (a folder with runs and metrics tables); nothing is left half-written."""
    if to == "tensorboard":
        from core.interop.tensorboard import export_tensorboard

        export_tensorboard(db, run_ids, target)
        return f"{len(run_ids)} run(s) written to {target} (tensorboard --logdir {target})"
    if to == "mlflow":
        from core.interop.mlflow_io import export_mlflow

        created = export_mlflow(db, run_ids, target)
        return f"{len(created)} run(s) written to MLflow {target}"
    if to in ("csv", "parquet"):
        from core.interop.tables import export_tables

        export_tables(db, run_ids, target, fmt=to)
        return f"{len(run_ids)} run(s) written to {Path(target) / ('runs.' + to)} and {Path(target) / ('metrics.' + to)}"
    raise UserError(f"unknown export format {to!r} (tensorboard, mlflow, csv, parquet)", 2)


def import_mlflow(db: Database, uri: str, *, experiments: Sequence[str] = (), tags: Sequence[str] = ()):
    """Bring an MLflow store's finished runs in as read-only records (see :mod:`core.interop.mlflow_io`)."""
    from core.interop.mlflow_io import import_mlflow as run_import

    for tag in tags:
        edit_tags_check(tag)
    return run_import(db, uri, experiments=experiments, tags=tags)


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A run record as one flat row (``config.*``, metric last/.min/.max): ``to_pandas`` and CSV columns."""
    from core.interop.source import flatten_record as flatten

    return flatten(record)


def latest_summaries(db: Database, run_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """{run id: its ``latestmetric`` rows} (last/min/max per key and stage) in one indexed query."""
    return store.latest_metrics(db, run_ids)


def metric_rows(db: Database, run_ids: Sequence[int], *, kinds: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every metric row of the runs (run_id, kind, stage, epoch, layer, key, value, ts), run by run."""
    return store.metrics_of(db, run_ids, kinds=kinds)


# --- resume, retries, notifications, disk (core.resume, core.run_gc) -------------------------------

def resume(db: Database, run_id: int) -> Run:
    """Queue a failed, lost or cancelled run again under its id (``attempt + 1``), from its newest checkpoint."""
    from core.resume import resume as _resume

    return _resume(db, run_id)


def check_run_policy(*, max_retries: int | None = None, on_finish: str | None = None, webhook: str | None = None) -> None:
    """Validate ``--retries/--on-finish/--webhook`` before anything is written (UserError, exit 2)."""
    from core.resume import check_policy

    check_policy(max_retries=max_retries, on_finish=on_finish, webhook=webhook)


def set_run_policy(db: Database, run_id: int, *, max_retries: int | None = None, on_finish: str | None = None,
                   webhook: str | None = None) -> None:
    """A run's own retry budget and run-end hooks (None keeps the scheduler's defaults)."""
    from core.resume import set_run_policy as _set

    _set(db, run_id, max_retries=max_retries, on_finish=on_finish, webhook=webhook)


def attempts(db: Database, run_id: int) -> list[dict[str, Any]]:
    """Every attempt of a run, oldest first (the last one is the current)."""
    from core.registry.attempts import attempts as _attempts

    return _attempts(db, run_id)


def attempt_fields(db: Database, run_id: int) -> dict[str, Any]:
    """``{"attempts": [...], "checkpoint": {...} | None}``: what ``hrm show`` adds about resuming."""
    from core.registry.attempts import show_fields

    return show_fields(db, run_id)


def checkpoint(run: Run) -> dict[str, Any] | None:
    """The run's newest checkpoint as recorded by its worker: {seq, stage, epoch, score, path, bytes, ...}."""
    import json

    raw = getattr(run, "checkpoint_json", None)
    return json.loads(raw) if raw else None


def gc(db: Database, *, dry_run: bool = False):
    """Remove checkpoints completed runs no longer need and folders of deleted runs (a ``GcReport``)."""
    from core.run_gc import collect

    return collect(db, dry_run=dry_run)


# --- plugins, doctor and the tracking client (hrm_tui.init) --------------------------------------

def plugin_problems() -> list[str]:
    """One line per ``hrm.experiments`` / ``hrm.reports`` entry point that was skipped, and why."""
    from core.experiments import plugin_problems as experiment_problems
    from core.published import report_plugins

    return [p.line() for p in (*experiment_problems(), *report_plugins()[1])]


def doctor(db: str | None):
    """``hrm doctor``'s checks (:class:`core.doctor.Check`): registry, plugins, extras, data, GPU."""
    from core.doctor import run_checks

    return run_checks(db)


def start_tracking(db: str | None = None, **options: Any):
    """A :class:`core.tracking.Tracker` for ``hrm_tui.init`` (attaches to ``$HRM_RUN_ID`` or creates a run)."""
    from core.tracking import start

    return start(db, **options)
