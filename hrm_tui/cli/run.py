"""``hrm run <experiment>``: validate a config, queue it, and optionally follow or wait for it.

Each experiment's options come from its pydantic config (:mod:`hrm_tui.options`); the subcommand of
one experiment is built only when that experiment is named, so ``hrm run smoke`` does not build the
other fourteen.
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from hrm_tui.cli import CONTEXT_SETTINGS, HrmCommand, ListsWithoutImporting, PlainHelp, SuggestsCommands, command_holder
from hrm_tui.cli.common import MAX_ID, db_target, ensure_scheduler, err_console, registry


def _common_run_parameters() -> list[inspect.Parameter]:
    def opt(name, annotation, default, *decls, help, **extra):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[annotation, typer.Option(*decls, help=help, rich_help_panel="Run", **extra)])

    return [
        opt("hrm_db", Optional[str], None, "--db", help="registry path or URL",
            show_default="root --db, $HRM_DB or ./runs.db"),
        opt("hrm_follow", bool, False, "--follow", "-f", help="stream the run's metrics until it ends"),
        opt("hrm_wait", bool, False, "--wait",
            help="block until the run ends, then print its result; exit 0 only if it completed"),
        opt("hrm_tags", list[str], [], "--tag", "-t", help="tag the run (repeatable)"),
        opt("hrm_priority", int, 0, "--priority", help="higher runs first", min=-MAX_ID, max=MAX_ID),
        opt("hrm_start", bool, True, "--start-scheduler/--no-start-scheduler",
            help="start a background scheduler when none is alive"),
        opt("hrm_retries", Optional[int], None, "--retries", min=0, max=100,
            help="resume automatically from the checkpoint after an infrastructure failure, up to N times",
            show_default="the scheduler's --retries"),
        opt("hrm_on_finish", Optional[str], None, "--on-finish",
            help="command run when the run ends, e.g. 'notify-send hrm {run_id} {status}' (no shell)"),
        opt("hrm_webhook", Optional[str], None, "--webhook", help="http(s) URL that receives a JSON body when the run ends"),
        opt("hrm_host", Optional[str], None, "--host", help="run it only on the scheduler of this name (host)",
            show_default="any host"),
        opt("hrm_executor", Optional[str], None, "--executor",
            help="local (a subprocess of the scheduler's host), slurm (a Slurm job, through submitit) or ray (a Ray actor)",
            show_default="the scheduler's --executor"),
    ]


def make_run_command(name: str):
    """The ``hrm run NAME`` command function, its options generated from the experiment's config."""
    from core.facade import builtin_experiment
    from hrm_tui.options import option_parameters, plain_values, with_signature

    experiment = builtin_experiment(name)
    if experiment is None:
        from core.facade import get_experiment

        experiment = get_experiment(name)

    def command(ctx: typer.Context, **kwargs: Any) -> None:
        queue_from_options(ctx, name, plain_values(kwargs))

    command.__name__ = name.replace("-", "_")
    command.__doc__ = experiment.description
    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    params = [ctx_param, *option_parameters(experiment.config_cls), *_common_run_parameters()]
    return with_signature(command, params)


def queue_from_options(ctx: typer.Context, name: str, kwargs: dict[str, Any]) -> None:
    """Validate, queue, then ``--wait`` or ``--follow``: what ``hrm run NAME`` and ``hrm exec`` share.

    ``kwargs`` holds the experiment's config values and the ``hrm_*`` values of :func:`_common_run_parameters`.
    """
    db_arg = db_target(ctx, kwargs.pop("hrm_db"))
    follow, wait = kwargs.pop("hrm_follow"), kwargs.pop("hrm_wait")
    tags, priority, start = kwargs.pop("hrm_tags"), kwargs.pop("hrm_priority"), kwargs.pop("hrm_start")
    policy = {"max_retries": kwargs.pop("hrm_retries"), "on_finish": kwargs.pop("hrm_on_finish"),
              "webhook": kwargs.pop("hrm_webhook")}
    host, executor = kwargs.pop("hrm_host"), kwargs.pop("hrm_executor")
    if host is None and executor is None and not any(v is not None for v in policy.values()):
        fast = _queue_fast(ctx, name, kwargs, db_arg, tags=tags, priority=priority, start=start,
                           follow=follow, wait=wait)
        if fast is not None:
            db, run_id = fast
            _after_queue(db, run_id, follow=follow, wait=wait)
            return
    from core import api

    api.validate_config(name, kwargs)  # before the registry is touched: bad input writes nothing
    api.check_run_policy(**policy)
    api.check_executor(executor)
    db = registry(ctx, db_arg, create=True)  # refuses an in-memory registry, which no scheduler could see
    run = api.submit(db, name, kwargs, tags=tags, priority=priority, host=host, executor=executor)
    api.set_run_policy(db, run.id, **policy)
    err_console().print(f"run [bold]{run.id}[/bold] queued ({name}, {run.variant})"
                        + ("; waiting for it to end" if wait and not follow else ""))
    if not sys.stdout.isatty():
        sys.stdout.write(f"{run.id}\n")
        sys.stdout.flush()
    ensure_scheduler(db, start, quiet=False)
    _after_queue(db, run.id, follow=follow, wait=wait)


def _after_queue(db, run_id: int, *, follow: bool, wait: bool) -> None:
    """``--wait`` (block, then the result line) or ``--follow`` (stream); exit 0 only if the run completed."""
    if not (wait or follow):
        return
    from core import api
    from core.registry.status import RunStatus

    if wait and not follow:
        from hrm_tui.cli.follow import result_line, wait_run

        final = wait_run(db, run_id)
        err_console().print(result_line(api.list_records(db, ids=[run_id])[0], final.error), highlight=False,
                            soft_wrap=True)  # one line, whatever the width: scripts grep it
        raise typer.Exit(0 if final.status == RunStatus.COMPLETED.value else 1)
    from hrm_tui.cli.follow import follow_run

    final_status = follow_run(db, run_id)
    raise typer.Exit(0 if final_status == RunStatus.COMPLETED.value else 1)


def _queue_fast(ctx: typer.Context, name: str, values: dict[str, Any], db_arg: Optional[str], *, tags: list[str],
                priority: int, start: bool, follow: bool, wait: bool):
    """Queue a built-in experiment's run in a plain SQLite registry without SQLAlchemy or the catalog
    (``core.fastsubmit``, ``core.registry.fastwrite``): the same checks, row and messages as the full
    path, in a fraction of its start-up. Returns (registry or None, run id), or None when the full path
    must run (another experiment, a registry to create or migrate, a server URL)."""
    from core.facade import builtin_experiment, checked_config

    experiment = builtin_experiment(name)
    if experiment is None:
        return None
    from core.facade import fastwrite

    fast = fastwrite.connect(db_arg)
    if fast is None:
        return None
    with fast:
        config = checked_config(experiment, values)  # before anything is written, as api.submit does
        try:
            row = fast.create_run(name, config.model_dump(mode="json"), tags=tags, priority=priority,
                                  headline_key=experiment.headline)
        except fastwrite.LockTimeout as exc:
            from core.errors import UserError

            raise UserError(str(exc), 1) from None
        _say_queued(row["id"], name, row["variant"], wait and not follow)
        alive = fast.scheduler_alive(fastwrite.local_scheduler_name())
    db = None
    if (start and not alive) or wait or follow:  # the rest needs the full registry (a scheduler to start, a wait)
        db = registry(ctx, db_arg, create=True)
        if not alive:
            ensure_scheduler(db, start, quiet=False)
    elif not alive:
        _say(NO_SCHEDULER, "[yellow]no scheduler is running:[/yellow]")
    return db, row["id"]


NO_SCHEDULER = "no scheduler is running: start one with `hrm scheduler`"
"""What ``common.ensure_scheduler`` says when none is alive and none may be started."""


def _say(line: str, rich_prefix: str = "") -> None:
    """One status line on stderr: through Rich on a terminal, plain text (what Rich writes there) otherwise,
    so that a scripted ``hrm run`` does not import Rich. ``rich_prefix`` marks up the line's first words."""
    if sys.stderr.isatty():
        if rich_prefix:
            from rich.markup import render

            plain = render(rich_prefix).plain
            line = rich_prefix + line.removeprefix(plain) if line.startswith(plain) else line
        err_console().print(line, highlight=False)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _say_queued(run_id: int, name: str, variant: str, waiting: bool) -> None:
    """``run N queued (experiment, variant)`` on stderr; the bare id on stdout when it is not a terminal.

    Plain text off a terminal (what Rich would print there), so a scripted ``hrm run`` skips Rich's import."""
    line = f"run {run_id} queued ({name}, {variant})" + ("; waiting for it to end" if waiting else "")
    _say(line, f"run [bold]{run_id}[/bold]")
    if not sys.stdout.isatty():
        sys.stdout.write(f"{run_id}\n")
        sys.stdout.flush()


class ExperimentCommands(SuggestsCommands, ListsWithoutImporting, PlainHelp, TyperGroup):
    """``hrm run``'s subcommands: one per catalog entry, built on first use."""

    def list_commands(self, ctx) -> list[str]:
        from core.facade import catalog

        return list(catalog())

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        from core.facade import builtin_experiment

        experiment = None if self._listing else builtin_experiment(cmd_name)  # not the whole catalog
        if experiment is None:
            from core.facade import catalog

            experiment = catalog().get(cmd_name)
        if experiment is None:
            _refuse_broken_plugin(cmd_name)
            return None
        if self._listing:
            return TyperCommand(name=cmd_name, short_help=experiment.description, help=experiment.description)
        holder = command_holder()
        holder.command(cmd_name, help=experiment.description, cls=HrmCommand)(make_run_command(cmd_name))
        command = typer.main.get_command(holder)
        command.name = cmd_name
        self.commands[cmd_name] = command
        return command


def _refuse_broken_plugin(name: str) -> None:
    """A plugin experiment that failed to load: say why in one line instead of 'No such command'."""
    from core import api
    from core.facade import UnknownExperiment, plugin_problems

    if any(problem.name == name for problem in plugin_problems()):
        raise api.UserError(str(UnknownExperiment(name)), 2)


run_group = typer.Typer(cls=ExperimentCommands, no_args_is_help=True, context_settings=CONTEXT_SETTINGS,
                        rich_markup_mode="rich", add_completion=False, help="Validate a config and queue a run of an experiment.")


@run_group.callback()
def run_callback() -> None:
    """Validate a config and queue a run of an experiment (`hrm experiments` lists them)."""
