"""``hrm experiments``: the catalog with each experiment's parameters, defaults and bounds."""

from __future__ import annotations

from hrm_tui.cli.common import JsonOption, console, print_json


def experiments(json_out: JsonOption = False) -> None:
    """The catalog: names, descriptions, parameters with defaults and bounds."""
    from core.experiments import catalog
    from core.experiments.schema import describe

    entries = [describe(e) for e in catalog().values()]
    _warn_plugin_problems()
    if json_out:
        print_json({"schema": "hrm.experiments/v1", "experiments": entries})
        return
    from hrm_tui import render

    console().print(render.experiments_table(entries))


def _warn_plugin_problems() -> None:
    """A plugin that could not be loaded: one line each on stderr (the rest of the catalog still works)."""
    import sys

    from core.experiments import plugin_problems

    for problem in plugin_problems():
        sys.stderr.write(f"warning: {problem.line()} (hrm doctor checks every plugin)\n")
