"""The experiment API: the seam every catalog entry plugs into.

An experiment is a typed config (a pydantic model with defaults and bounds; the CLI options
and the TUI's new-run form are generated from it) plus a ``run(config, emit)`` function.
The run function computes; it never opens the registry, prints metrics or parses arguments.
Everything it wants recorded goes through the :class:`Emitter` it is handed.

Adding an experiment is one module that defines ``EXPERIMENT = Experiment(...)`` and one
line in :mod:`core.experiments` that registers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The runtime (emitter, seeding, device, threads) lives below training; re-exported here for experiments.
from core.runtime import Emitter, RecordingEmitter, resolve_device, seed_everything, torch_threads

__all__ = [
    "Emitter", "Experiment", "ExperimentConfig", "RecordingEmitter", "Unavailable", "Variant",
    "resolve_device", "seed_everything", "torch_threads",
]

Variant = Literal["published", "corrected"]


class Unavailable(RuntimeError):
    """What a run needs is not on this machine (data, model, network): refused at submit, exit 1."""


class ExperimentConfig(BaseModel):
    """Fields every experiment has. Subclass it and add your own ``Field``s with bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: Variant = Field(
        "corrected",
        description="published: the code path behind the report, quirks included; corrected: the fixes",
    )
    seed: int = Field(42, ge=0, le=2**31 - 1, description="random seed")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu or cuda[:N]")

    @model_validator(mode="after")
    def _local_paths_exist(self) -> ExperimentConfig:
        """A missing data file or model path is the user's mistake: refuse it before anything is queued."""
        import os

        for name in ("data_dir", "data_file", "model"):
            value = getattr(self, name, None)
            if not isinstance(value, str) or not value:
                continue
            local = name != "model" or value.startswith(("/", "./", "../", "~")) or value.endswith(".gguf")
            if local and not os.path.exists(os.path.expanduser(value)):
                raise ValueError(f"--{name.replace('_', '-')}: {value!r} does not exist")
        return self

    requires: ClassVar[tuple[str, ...]] = ()
    """Top-level modules a run of this config imports (``("torch",)``): a missing one is refused at submit."""

    def check_requirements(self) -> None:
        """Raise :class:`Unavailable` naming the pip extra when a module in ``requires`` is not installed.

        A plain ``pip install hrm-tui`` has no torch: a training run is refused at submit with the extra
        to install, instead of being queued and failing in its worker.
        """
        import importlib.util

        from core.extras import EXTRA_OF

        for module in type(self).requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):  # a broken install counts as missing
                found = False
            if not found:
                raise Unavailable(f"{module} is not installed: pip install 'hrm-tui[{EXTRA_OF.get(module, 'all')}]'")
        build = _cpu_only_torch() if "torch" in type(self).requires and self.device.startswith("cuda") else None
        if build:
            raise Unavailable(f"--device {self.device}: the installed torch ({build}) is a CPU-only build; "
                              f"use --device cpu or auto")

    def preflight(self) -> None:
        """Checks that ask the machine rather than the values (data reachable, files present).

        Raise :class:`Unavailable` with one line that says what to do. Called once when a run is
        submitted (``core.api.submit``), not on every validation (forms validate while you type).
        """


def _cpu_only_torch() -> str | None:
    """The installed torch's version when it is a CPU-only wheel (``2.13.0+cpu``), else None; read from
    its metadata, without importing torch (submit stays fast)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("torch")
    except PackageNotFoundError:
        return None
    return installed if installed.endswith("+cpu") else None


@dataclass(frozen=True)
class Experiment:
    """A catalog entry: name, what it does, its config type and its run function."""

    name: str
    description: str
    config_cls: type[ExperimentConfig]
    run: Callable[[Any, Emitter], None]
    report: str | None = None
    """The seed report this experiment reproduces (e.g. ``"004"``), if any."""
    headline: str = "best_val_ppl"
    """The summary metric shown as the run's headline in lists and comparisons."""
    lower_is_better: bool = True

    def make_config(self, **values: Any) -> ExperimentConfig:
        """Validate ``values`` into this experiment's config (raises pydantic.ValidationError)."""
        return self.config_cls(**values)
