"""``hrm tui``: the dashboard as a subcommand (the ``hrm-tui`` script stays)."""

from typing import Annotated, Optional

import typer

from hrm_tui.cli.common import DbOption, db_target


def tui(
    ctx: typer.Context,
    poll: Annotated[Optional[float], typer.Option("--poll", min=0.1, show_default="0.5", help="seconds between polls")] = None,
    db: DbOption = None,
) -> None:
    """Open the dashboard over the registry (quitting it never stops a run)."""
    from hrm_tui.tui.app import main as dashboard_main

    target = db_target(ctx, db)
    dashboard_main([*(["--db", target] if target else []), *(["--poll", str(poll)] if poll else [])])
