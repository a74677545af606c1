"""The run registry: SQLModel tables, engine set-up, migrations and the store functions."""

from core.registry.db import Database, RegistryError, open_database, resolve_db_url
from core.registry.models import RunStatus

__all__ = ["Database", "RegistryError", "RunStatus", "open_database", "resolve_db_url"]
