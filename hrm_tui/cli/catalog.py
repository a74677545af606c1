"""``hrm experiments``: the catalog with each experiment's parameters, defaults and bounds."""

import json
import sys

from hrm_tui.cli.common import JsonOption, print_json


def experiments(json_out: JsonOption = False) -> None:
    """The catalog: names, descriptions, parameters with defaults and bounds."""
    from hrm_tui.cli.catalog_cache import CatalogCache, screen_key

    cache = CatalogCache()
    if cache.entries is None:
        entries, problems = _describe_catalog()
        cache.store(entries, problems)
    for line in cache.problems:
        sys.stderr.write(line + "\n")
    if json_out:
        print_json({"schema": "hrm.experiments/v1", "experiments": cache.entries}, expand=4)
        return
    key = screen_key()
    text = cache.screen(key)
    if text is None:
        text = _render(cache.entries)
        cache.store_screen(key, text)
    sys.stdout.write(text)
    sys.stdout.flush()


def _describe_catalog() -> tuple[list[dict], list[str]]:
    """The catalog as JSON-ready entries, and one warning line per plugin that could not be loaded."""
    from core.facade import catalog, plugin_problems
    from core.experiments.schema import describe

    entries = [describe(e) for e in catalog().values()]
    problems = [f"warning: {p.line()} (hrm doctor checks every plugin)" for p in plugin_problems()]
    return json.loads(json.dumps(entries, default=str)), problems


def _render(entries) -> str:
    from hrm_tui import render
    from hrm_tui.cli.common import console

    screen = console()
    with screen.capture() as captured:
        screen.print(render.experiments_table(entries))
    return captured.get()
