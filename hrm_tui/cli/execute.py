"""``hrm exec -- COMMAND [ARGS]...``: any command as a run (the built-in experiment ``exec``).

The command is checked before anything is written (a missing program or script: one line, exit 2),
then queued exactly like ``hrm run`` (the same ``--wait``/``--follow``/``--tag``/``--db``/``--retries``
options, through :func:`hrm_tui.cli.run.queue_from_options`) and run by a worker in a GPU slot; its
output is the run's log and its exit code decides completed/failed. Inside it, ``hrm_tui.init()``
attaches to the run (``$HRM_RUN_ID``, ``$HRM_DB``).
"""

from __future__ import annotations

import inspect
import os
from typing import Annotated, Any, Optional

import typer

from hrm_tui.cli import CONTEXT_SETTINGS, HrmCommand


def exec_command(ctx: typer.Context, **kwargs: Any) -> None:
    """Queue a command as a run: hrm exec [OPTIONS] -- python train.py --lr 1e-3."""
    from core import api
    from hrm_tui.cli.run import queue_from_options

    command, gpus = kwargs.pop("command") or [], kwargs.pop("gpus")
    if not command:
        raise api.UserError("no command: give it after --, e.g. hrm exec -- python train.py", 2)
    if gpus > 1:
        raise api.UserError(f"--gpus {gpus}: a run gets one GPU slot of the scheduler (0 or 1)", 2)
    values = {"argv": list(command), "cwd": os.getcwd(), "name": kwargs.pop("name"), "gpus": gpus,
              "env": list(kwargs.pop("env") or [])}
    try:
        api.validate_config("exec", values)  # here too, to say what is wrong without the config's name
    except api.UserError as exc:
        raise api.UserError(str(exc).removeprefix("invalid config for exec: "), exc.exit_code) from None
    queue_from_options(ctx, "exec", {**values, **kwargs})


def _parameters() -> list[inspect.Parameter]:
    from hrm_tui.cli.run import _common_run_parameters

    def param(name, annotation, default, kind=inspect.Parameter.KEYWORD_ONLY):
        return inspect.Parameter(name, kind, default=default, annotation=annotation)

    own = [
        param("ctx", typer.Context, inspect.Parameter.empty, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        param("command", Annotated[Optional[list[str]], typer.Argument(
            metavar="-- COMMAND [ARGS]...", show_default=False,
            help="the command line, after -- (e.g. -- python train.py --lr 1e-3)")], None),
        param("name", Annotated[str, typer.Option("--name", "-n", help="a label for the run (default: the command)",
                                                  rich_help_panel="Command")], ""),
        param("gpus", Annotated[int, typer.Option("--gpus", rich_help_panel="Command",
                                                  help="1: run in a GPU slot of the scheduler; 0: hide the GPUs")], 1),
        param("env", Annotated[Optional[list[str]], typer.Option(
            "--env", "-e", metavar="KEY=VALUE", rich_help_panel="Command",
            help="an environment variable for the command (repeatable)")], None),
    ]
    return [*own, *_common_run_parameters()]


def _build() -> typer.Typer:
    from hrm_tui.options import with_signature

    app = typer.Typer(add_completion=False, rich_markup_mode="rich", pretty_exceptions_enable=False)
    app.command("exec", cls=HrmCommand, context_settings={
        **CONTEXT_SETTINGS, "allow_interspersed_args": False, "ignore_unknown_options": True,
    })(with_signature(exec_command, _parameters()))
    return app


exec_app = _build()
