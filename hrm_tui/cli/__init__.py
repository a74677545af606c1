"""``hrm``: queue, watch and manage experiment runs from the shell.

Layout (one module per topic, each a set of plain Typer command functions):

- this module: the root app (``--db``, ``--verbose``, ``--version``), the one-line error handling
  and :data:`COMMANDS`, the table of every command;
- :mod:`hrm_tui.cli.common`: what commands share (``DbOption``, :func:`~hrm_tui.cli.common.registry`,
  consoles, JSON output);
- :mod:`hrm_tui.cli.run` (``hrm run <experiment>``), :mod:`hrm_tui.cli.follow` (``--follow``, follow),
  :mod:`hrm_tui.cli.runs` (ls, show, logs, cancel, retry, delete), :mod:`hrm_tui.cli.catalog`
  (experiments, served from :mod:`~hrm_tui.cli.catalog_cache`), :mod:`hrm_tui.cli.scheduler`,
  :mod:`hrm_tui.cli.compare` (compare, reproduce, report, sweep), :mod:`hrm_tui.cli.dashboard` (tui);
  other helpers' topics sit beside them (execute, doctor, resume, annotate, ...);
- start-up helpers: :mod:`~hrm_tui.cli.coercion` (plain options parsed without pydantic) and
  :mod:`~hrm_tui.cli.helpfmt` (Rich help without its Markdown/Traceback imports);
  ``benchmarks/bench_cli.py`` measures the result.

Commands are registered lazily so that ``hrm ls --json`` starts fast: importing this package imports
Typer and nothing else; a command's module is imported only when that command runs (or its own
``--help`` is asked for). ``hrm --help`` lists commands from the table without importing them.

Adding a command (other helpers: do exactly this):

1. write ``def my_command(ctx: typer.Context, ..., db: DbOption = None)`` in a module of your topic
   under ``hrm_tui/cli/`` (docstring = its help; heavy imports inside the function or at the top of
   your module, never in this file);
2. add one line to :data:`COMMANDS`: ``"name": ("hrm_tui.cli.mymodule", "my_command", "short help")``.
   The attribute may also be a ``typer.Typer`` (a command group) or a click command.

Command modules leave out ``from __future__ import annotations``: Typer reads a command's signature
at start-up, and string annotations cost a ``compile`` each (a third of ``hrm ls --json``).

Numbers that end in the registry take ``min=``/``max=`` (``common.MAX_ID``), an ``--out`` goes through
``compare.out_path``/``write_file``: bad input is one line, never a traceback (``tests/test_cli_fuzz.py``).

Open the registry with ``common.registry(ctx, db)`` (explicit ``--db`` of the command, then the root's
``--db``, then ``$HRM_DB``, then ``./runs.db``). Root state lives in ``ctx.obj`` (a
:class:`CliState`), never in a module global. A user's mistake ends with one ``error: ...`` line on
stderr and exit code 2 (usage) or 1 (runtime): raise ``core.api.UserError(message, code)``.
"""

import importlib
import re
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, attribute, short help shown by `hrm --help`)
    "run": ("hrm_tui.cli.run", "run_group", "Validate a config and queue a run of an experiment."),
    "ls": ("hrm_tui.cli.runs", "list_runs", "List runs, newest first."),
    "follow": ("hrm_tui.cli.follow", "follow", "Watch a run live until it ends (Ctrl-C stops watching, not the run)."),
    "show": ("hrm_tui.cli.runs", "show", "A run in full: config, status, timings, per-epoch and per-layer tables."),
    "logs": ("hrm_tui.cli.runs", "logs", "The run's log: worker output (stdout/stderr) and notes, followed live with -f."),
    "cancel": ("hrm_tui.cli.runs", "cancel", "Cancel a run (graceful SIGTERM, then SIGKILL after a grace period)."),
    "retry": ("hrm_tui.cli.runs", "retry", "Queue a new run with the same experiment and config."),
    "delete": ("hrm_tui.cli.runs", "delete", "Delete a finished run and all its metrics."),
    "experiments": ("hrm_tui.cli.catalog", "experiments", "The catalog: names, parameters, defaults and bounds."),
    "scheduler": ("hrm_tui.cli.scheduler", "scheduler", "Run the scheduler in the foreground."),
    "compare": ("hrm_tui.cli.compare", "compare", "Compare runs side by side, or a report's numbers with ours."),
    "reproduce": ("hrm_tui.cli.compare", "reproduce", "Queue every run needed to regenerate a report's tables."),
    "report": ("hrm_tui.cli.compare", "report_cmd", "Write a report regenerated with our numbers (markdown, plots)."),
    "sweep": ("hrm_tui.cli.compare", "sweep", "Queue a grid of runs under one tag; prints the tag."),
    "tui": ("hrm_tui.cli.dashboard", "tui", "Open the dashboard (same as `hrm-tui`)."),
    "exec": ("hrm_tui.cli.execute", "exec_app", "Queue any command as a run: hrm exec -- python train.py."),
    "doctor": ("hrm_tui.cli.doctor", "doctor", "Check the registry, plugins, extras, data files and GPUs."),
    "resume": ("hrm_tui.cli.resume", "resume", "Continue a failed, lost or cancelled run from its newest checkpoint."),
    "gc": ("hrm_tui.cli.resume", "gc", "Remove checkpoints and run folders no run needs (--dry-run to preview)."),
    "tag": ("hrm_tui.cli.annotate", "tag_app", "Add (+name) and remove (-name) tags of a run."),
    "note": ("hrm_tui.cli.annotate", "note", "Set, print or clear a run's note."),
    "export": ("hrm_tui.cli.annotate", "export", "Export runs to TensorBoard, MLflow, CSV or Parquet."),
    "import": ("hrm_tui.cli.annotate", "import_app", "Import runs from MLflow as read-only records."),
    "models": ("hrm_tui.cli.models", "models_app", "Fetch a model into the cache (hrm models fetch smollm2); list them."),
}
"""Every ``hrm`` command: name -> (module, attribute, short help). Extend with one line."""

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


class PlainHelp:
    """Help that reads like the usual Unix tools: ``RUN_ID`` not ``{RUN_ID}``, no ``<bool>`` on flags."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [_unbraced(p) for p in super().collect_usage_pieces(ctx)]

    def parse_args(self, ctx, args):
        from hrm_tui.cli.coercion import install

        install(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def format_help(self, ctx, formatter) -> None:
        from hrm_tui.cli.helpfmt import load_rich_help

        load_rich_help()
        for param in self.get_params(ctx):
            if getattr(param, "is_flag", False):
                param.display_type_rich = _no_type
            elif hasattr(param, "display_type_rich"):
                _plain_type(param, ctx)
        super().format_help(ctx, formatter)


def _unbraced(piece: str) -> str:
    """``{RUN_ID}`` → ``RUN_ID``, ``{+TAG|-TAG}...`` → ``+TAG|-TAG...`` and ``[-- CMD [ARGS]...]...`` →
    ``[-- CMD [ARGS]...]`` (a metavar that says "several" already)."""
    if piece.endswith("...]..."):
        return piece[:-3]
    body, dots = (piece[:-3], "...") if piece.endswith("...") else (piece, "")
    return body[1:-1] + dots if body.startswith("{") and body.endswith("}") else piece


def _no_type(ctx=None) -> None:
    return None


_PYTHON_TYPE = re.compile(r"^<(?:list\[(\w+)\]|(\w+) range)>$")
UNBOUNDED = 2**62
"""A bound at least this large only keeps a number inside a database column: help leaves it out."""


def _plain_type(param, ctx) -> None:
    """``<int>`` / ``<str>`` instead of Python's ``<list[str]>`` and ``<int range>``, and no bound
    of ±9223372036854775807 (``RUN_ID <int> [x>=1]``)."""
    match = _PYTHON_TYPE.match(param.display_type_rich(ctx) or "")
    if match:
        label = f"<{match.group(1) or match.group(2)}>"
        param.display_type_rich = lambda ctx=None: label
    bounds = getattr(param, "min", None), getattr(param, "max", None)
    low, high = (None if b is not None and abs(b) >= UNBOUNDED else b for b in bounds)
    if hasattr(param, "_get_number_range_help_str") and (low, high) != bounds:
        text = (f"{low}<=x<={high}" if low is not None and high is not None else f"x>={low}" if low is not None
                else f"x<={high}" if high is not None else None)  # as Typer writes a range
        param._get_number_range_help_str = lambda: text


class HrmCommand(PlainHelp, TyperCommand):
    """Every leaf command of ``hrm``."""


class HrmGroup(PlainHelp, TyperGroup):
    """A command group of ``hrm`` (``hrm import``): help in the same plain style."""


def command_holder() -> typer.Typer:
    """A throwaway Typer app that turns one function into a click command with hrm's settings."""
    return typer.Typer(context_settings=CONTEXT_SETTINGS, rich_markup_mode="rich", add_completion=False,
                       pretty_exceptions_enable=False)


class CliState:
    """What the root callback hands to every command through ``ctx.obj`` (a plain class: a
    dataclass costs a millisecond of start-up to generate)."""

    __slots__ = ("db", "verbose")

    def __init__(self, db: Optional[str] = None, verbose: bool = False) -> None:
        self.db = db
        self.verbose = verbose

    def __repr__(self) -> str:
        return f"CliState(db={self.db!r}, verbose={self.verbose!r})"


def load_command(name: str, spec: tuple[str, str, str]) -> Any:
    """Import a command's module and turn its attribute into a click command named ``name``."""
    module_name, attribute, short_help = spec
    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, typer.Typer):
        command = typer.main.get_command(target)
    elif callable(target) and not hasattr(target, "make_context"):
        holder = command_holder()
        holder.command(name, cls=HrmCommand)(target)
        command = typer.main.get_command(holder)
    else:
        command = target
    command.name = name
    if not command.short_help:
        command.short_help = short_help
    return command


class ListsWithoutImporting:
    """A group whose ``--help`` lists its commands from short help alone: ``_listing`` is set while it formats."""

    _listing = False

    def format_help(self, ctx, formatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


class SuggestsCommands:
    """A group whose "No such command" names the closest ones, imported yet or not (``hrm lss``:
    did you mean 'ls'?); Click itself only looks among the commands already loaded."""

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:  # Click's UsageError (Typer may carry its own copy of Click)
            message = getattr(exc, "message", None)
            if isinstance(message, str) and message.startswith("No such command") and "Did you mean" not in message:
                from difflib import get_close_matches

                close = get_close_matches(str(args[0]), self.list_commands(ctx), n=3) if args else []
                if close:
                    exc.message = f"{message.rstrip('.')}. Did you mean {' or '.join(repr(c) for c in close)}?"
            raise


class LazyCommands(SuggestsCommands, ListsWithoutImporting, PlainHelp, TyperGroup):
    """A group whose commands come from a table and are imported only when used."""

    table: dict[str, tuple[str, str, str]] = COMMANDS

    def list_commands(self, ctx) -> list[str]:
        return [*self.table, *(n for n in self.commands if n not in self.table)]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        spec = self.table.get(cmd_name)
        if spec is None:
            return None
        if self._listing:  # `hrm --help`: the table's short help, nothing imported
            return TyperCommand(name=cmd_name, short_help=spec[2], help=spec[2])
        command = load_command(cmd_name, spec)
        self.commands[cmd_name] = command
        return command


def _user_error_code(exc: BaseException) -> Optional[int]:
    """Exit code for an error a user caused (or ``None``), without importing ``core`` eagerly."""
    for module_name, class_name in (("core.errors", "UserError"), ("core.api", "UserError")):
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(exc, cls):
            return getattr(exc, "exit_code", 1)
    for module_name in ("core.errors", "core.registry.db"):
        cls = getattr(sys.modules.get(module_name), "RegistryError", None)
        if cls is not None and isinstance(exc, cls):
            return 1
    if isinstance(exc, ModuleNotFoundError):
        from core.facade import missing_extra

        if missing_extra(exc):
            return 1
    return None


def _check_text(args: list[str]) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates; no name, tag or path of hrm's can
    hold them (the registry stores UTF-8), so they are a usage error up front."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise typer.BadParameter(f"argument '{shown}' is not UTF-8 text") from None


def one_line(message: str) -> str:
    """An error message on one line: newlines, tabs and escape codes a user typed are shown escaped."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


class OneLineErrors(LazyCommands):
    """Usage errors, :class:`core.api.UserError` and registry errors become one ``error:`` line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        try:
            _check_text(args)
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            code = 1
        except typer.Exit as exc:
            code = exc.exit_code
        except typer.TyperException as exc:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            if type(exc).__name__ == "NoArgsIsHelpError":  # `hrm`, `hrm run`: the help, not an error line
                if message.strip():  # (Rich help is printed while it is built, leaving the message empty)
                    print(message)
            else:
                print(f"error: {one_line(message)}", file=sys.stderr)
            code = getattr(exc, "exit_code", 2)
        except OverflowError as exc:  # a number no column can hold, from an option without bounds
            print(f"error: a number is out of range ({one_line(str(exc))})", file=sys.stderr)
            code = 2
        except Exception as exc:
            code = _user_error_code(exc)
            if code is None:
                raise
            if isinstance(exc, ModuleNotFoundError):  # an optional extra: say which one to install
                from core.facade import missing_extra

                exc = missing_extra(exc)
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors, no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False,
    context_settings=CONTEXT_SETTINGS,
    help="hrm-tui: queue, run, watch and compare hierarchical / early-exit LM experiments.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("hrm-tui")
        except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
            number = "unknown"
        sys.stdout.write(f"hrm-tui {number}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option(
        "--db", envvar="HRM_DB", show_default="./runs.db",
        help="registry path or SQLAlchemy URL, for every command")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what the scheduler does")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """hrm-tui: queue, run, watch and compare hierarchical / early-exit LM experiments."""
    ctx.obj = CliState(db=db, verbose=verbose)
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


def main() -> None:
    """The ``hrm`` script. Output that cannot be written (a closed pipe, a full disk) ends quietly
    or with one line, not a traceback at interpreter exit."""
    try:
        app()
        sys.stdout.flush()
    except BrokenPipeError:  # `hrm ls | head`: the reader is gone
        _detach_stdout()
        sys.exit(141)
    except OSError as exc:
        if exc.filename is not None:
            raise
        _detach_stdout()
        print(f"error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)


def _detach_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


__all__ = ["app", "main", "COMMANDS", "CliState", "OneLineErrors"]
