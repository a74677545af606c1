"""Loading Typer's Rich help formatter without the parts ``hrm`` never uses.

``typer.rich_utils`` imports ``rich.markdown`` (and with it markdown-it) and ``rich.traceback``
(Pygments) at the top, for ``rich_markup_mode="markdown"`` and pretty exceptions: ``hrm`` uses
neither, and the two imports are about 40 % of ``hrm --help``. While ``typer.rich_utils`` is first
imported, those two names are bound to stand-ins that import the real class if ever called; the
modules themselves stay unloaded and import normally for anyone else.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_DEFERRED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


def _stand_in(module_name: str, attribute: str) -> type:
    """A class (it appears in annotations, ``Markdown | Text``) that builds the real one when called."""

    def real() -> Any:
        return getattr(importlib.import_module(module_name), attribute)

    class Deferred(type):
        def __getattr__(cls, name: str) -> Any:  # class attributes: Traceback.from_exception
            return getattr(real(), name)

    class StandIn(metaclass=Deferred):
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return real()(*args, **kwargs)

    StandIn.__name__ = StandIn.__qualname__ = attribute
    return StandIn


def load_rich_help() -> None:
    """Import ``typer.rich_utils`` (once) with Markdown and Traceback deferred."""
    if "typer.rich_utils" in sys.modules:
        return
    placed: dict[str, types.ModuleType] = {}
    for module_name, attribute in _DEFERRED.items():
        if module_name not in sys.modules:
            stand_in = types.ModuleType(module_name)
            setattr(stand_in, attribute, _stand_in(module_name, attribute))
            sys.modules[module_name] = placed[module_name] = stand_in
    try:
        import typer.rich_utils  # noqa: F401
    finally:
        for module_name, stand_in in placed.items():
            if sys.modules.get(module_name) is stand_in:
                del sys.modules[module_name]
