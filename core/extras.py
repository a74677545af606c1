"""Optional parts of hrm-tui and the pip extra that installs each.

A plain ``pip install hrm-tui`` is the registry, the CLI and the dashboard; training needs
``[train]`` (torch, numpy), the SmolLM2 experiments ``[smollm2]``, the hub datasets ``[hub]``,
report plots ``[report]``. A missing one is reported as one line naming the extra to install.
This module imports nothing, so any front end can use it on its error path.
"""

from __future__ import annotations

EXTRA_OF: dict[str, str] = {
    "torch": "train", "numpy": "train", "safetensors": "train",
    "transformers": "smollm2", "gguf": "smollm2", "accelerate": "smollm2", "tokenizers": "smollm2",
    "datasets": "hub",
    "matplotlib": "report",
    "psycopg": "postgres",
    "pandas": "analysis", "optuna": "sweep", "submitit": "slurm", "ray": "ray",
    "tensorboard": "interop", "mlflow": "interop", "pyarrow": "interop",
}
"""Top-level module -> the extra of ``pyproject.toml`` that provides it."""


def missing_extra(exc: BaseException) -> str | None:
    """``torch is not installed: pip install 'hrm-tui[train]'`` for a missing optional module, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    return f"{module} is not installed: pip install 'hrm-tui[{extra}]'"
