"""``hrm doctor``: registry, plugins, extras, data files and GPUs, one line per check (exit 1 on a failure)."""

from __future__ import annotations

import typer

from hrm_tui.cli.common import DbOption, JsonOption, db_target, print_json


def doctor(ctx: typer.Context, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Check this installation: registry, plugins, optional extras, data files, GPUs."""
    from core import api

    checks = api.doctor(db_target(ctx, db))
    if json_out:
        print_json({"schema": "hrm.doctor/v1",
                    "checks": [{"area": c.area, "status": c.status, "detail": c.detail} for c in checks]})
    else:
        width = max(len(c.area) for c in checks)
        for c in checks:
            typer.echo(f"{c.status:<4}  {c.area:<{width}}  {c.detail}")
    if any(c.status == "FAIL" for c in checks):
        raise typer.Exit(1)
