"""The run registry: SQLModel tables, engine set-up, migrations and the store functions.

The names below load on first use (PEP 562), so that the SQLAlchemy-free readers
(:mod:`core.registry.view`, :mod:`core.registry.fastread`) can be imported without the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.registry.db import Database, RegistryError, open_database, resolve_db_url
    from core.registry.status import RunStatus

__all__ = ["Database", "RegistryError", "RunStatus", "open_database", "resolve_db_url"]

_HOME = {"Database": "core.registry.db", "RegistryError": "core.registry.db", "open_database": "core.registry.db",
         "resolve_db_url": "core.registry.db", "RunStatus": "core.registry.status"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value
