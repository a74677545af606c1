"""Runs in and out of other tools: TensorBoard event files, MLflow stores, CSV and Parquet tables.

Headless like the rest of ``core``. Each exporter writes into a staging place first and moves it
into the target only when everything was written, so a failure leaves nothing half-written; each
reader (``hrm import mlflow``) fetches everything before it writes one transaction per run.
The libraries are optional extras, imported when used: ``pip install 'hrm-tui[interop]'``.
"""

from __future__ import annotations

from core.errors import UserError

EXTRA = "interop"


def require(module: str, *, extra: str = EXTRA, package: str | None = None):
    """Import an optional library or fail with one line naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{package or module.split('.')[0]} is not installed: pip install 'hrm-tui[{extra}]'", 1) from None
