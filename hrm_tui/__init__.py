"""hrm-tui's front ends: the ``hrm`` CLI, Rich rendering and the Textual dashboard.

``import hrm_tui as hrm`` is also the Python API. Its names load lazily (``import hrm_tui`` stays
cheap): each entry of :data:`_LAZY` maps a public name to the module that defines it.
"""

from __future__ import annotations

import importlib

_LAZY: dict[str, str] = {
    # tracking client: a script's or notebook's run (hrm_tui.tracking)
    "init": "hrm_tui.tracking",
    "Run": "hrm_tui.tracking",
    "TrackingError": "hrm_tui.tracking",
    "RunCancelled": "hrm_tui.tracking",
    # analysis: runs and metrics as records and DataFrames (hrm_tui.analysis)
    "runs": "hrm_tui.analysis",
    "metrics": "hrm_tui.analysis",
    "Runs": "hrm_tui.analysis",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hrm_tui' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
