"""What every ``hrm`` command shares: the ``--db``/``--json`` options, opening the registry, output.

Nothing here imports Rich or ``core`` at import time: ``hrm ls --json`` must not pay for them.
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from core.api import Database

DbOption = Annotated[Optional[str], typer.Option(
    "--db", show_default="root --db, $HRM_DB or ./runs.db", help="registry path or SQLAlchemy URL")]
"""A command's own ``--db``. It reads no environment variable: ``$HRM_DB`` is read once, by the
root option, so that an explicit ``--db`` (the root's or the command's) always wins over it."""

MAX_ID = 2**63 - 1
"""Largest run id / count a registry column holds: bigger numbers are usage errors, not overflows."""
MAX_COUNT = MAX_ID

JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output (schema in the README)")]
RunIdArgument = Annotated[int, typer.Argument(metavar="RUN_ID", min=1, max=MAX_ID, help="run id (see `hrm ls`)")]


def db_target(ctx: Optional[typer.Context], db: Optional[str]) -> Optional[str]:
    """The registry to use: the command's ``--db``, the root's ``--db``, ``$HRM_DB``, else default."""
    if db:
        return db
    state = ctx.find_root().obj if ctx is not None else None
    root_db = getattr(state, "db", None)
    return root_db or os.environ.get("HRM_DB") or None


def registry(ctx: Optional[typer.Context], db: Optional[str], *, create: bool = False) -> "Database":
    """Open the registry for a command (one ``error:`` line if it cannot be opened)."""
    from core import api

    database = api.open_registry(db_target(ctx, db), create=create)
    if not getattr(database, "shareable", True):
        database.dispose()
        raise api.UserError(
            "an in-memory registry (sqlite:///:memory:) lives inside one process: the scheduler, its workers and "
            "every later hrm command would each see their own empty one; use a file (--db runs.db) or a server URL", 1)
    return database


def console() -> "Console":
    """Rich console on stdout (created on first use: Rich costs start-up time)."""
    return _console(sys.stdout, os.environ.get("COLUMNS"), False)


def err_console() -> "Console":
    """Rich console on stderr, for progress and status lines."""
    return _console(sys.stderr, os.environ.get("COLUMNS"), True)


@lru_cache(maxsize=8)
def _console(stream, columns: Optional[str], stderr: bool) -> "Console":
    """One console per stream and ``$COLUMNS`` (a test runner swaps the streams between commands)."""
    from rich.console import Console

    return Console(file=stream, stderr=stderr)


WideOption = Annotated[bool, typer.Option("--wide", "-W", help="every column, wider than the terminal if need be")]


def print_tables(renderables, *, wide: bool) -> None:
    """Print to stdout; ``wide`` lets each renderable take the width it needs (no column dropped)."""
    from rich.measure import Measurement

    screen = console()
    for renderable in renderables:
        if renderable is None:
            continue
        if not wide:
            screen.print(renderable)
            continue
        needed = Measurement.get(screen, screen.options.update(width=100_000), renderable).maximum
        width = screen.width
        screen.width = max(width, needed)  # Rich caps print(width=) at the console's width
        try:
            screen.print(renderable)
        finally:
            screen.width = width


def print_json(data: Any, *, expand: int = 2) -> None:
    """JSON on stdout, its outer ``expand`` levels one item per line (``hrm ls --json``: one run a line).

    Inner values are written compactly by the C encoder: ``indent=`` would take the pure-Python
    encoder, five times slower on a listing.
    """
    sys.stdout.write(_readable_json(data, expand, "") + "\n")


def _readable_json(value: Any, expand: int, pad: str) -> str:
    if expand <= 0 or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, default=str)
    inner = pad + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(str(k))}: {_readable_json(v, expand - 1, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [inner + _readable_json(v, expand - 1, inner) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


BACKGROUND_IDLE_EXIT_S = 300.0
"""How long a scheduler started by ``hrm run`` stays after the queue drains (said at submit)."""


def ensure_scheduler(db, start: bool, *, quiet: bool) -> None:
    """Start this host's background scheduler when none is alive (or say how to start one)."""
    from core import api

    if api.scheduler_alive(db, name=api.local_scheduler_name()):
        return
    if start:
        pid = api.start_background_scheduler(db, idle_exit=BACKGROUND_IDLE_EXIT_S)
        if not quiet:
            err_console().print(f"[dim]started a background scheduler (pid {pid}); it exits after "
                                f"{BACKGROUND_IDLE_EXIT_S / 60:g} min with nothing to run[/dim]",
                                highlight=False, soft_wrap=True)
    elif not quiet:
        err_console().print("[yellow]no scheduler is running:[/yellow] start one with `hrm scheduler`")
