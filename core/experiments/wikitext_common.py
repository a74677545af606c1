"""Config fields shared by report 004's Experiments 1–4 (data pipeline A, spec 1.1 and 1.4).

Not an experiment itself (no ``EXPERIMENT``): the catalog modules ``hrm``, ``infini_hrm``, ``irt`` and
``lpt`` subclass :class:`WikiTextCharConfig`. Only pydantic and the experiment API are imported here;
the shared fields (optimizer, early stopping, model shape) come from :mod:`core.experiments.fields`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.experiments.base import ExperimentConfig
from core.experiments.fields import CharModelFields, EarlyStoppingFields, OptimizerFields


class WikiTextCharConfig(CharModelFields, OptimizerFields, EarlyStoppingFields, ExperimentConfig):
    """Data, optimiser and early-stopping settings of pipeline A; defaults = report 004's."""

    data: Literal["auto", "hub", "dir", "excerpt"] = Field(
        "auto",
        description=(
            "text source: dir (--data-dir), hub (Hugging Face wikitext-2-v1), excerpt (embedded test[:20000] "
            "as train), auto (dir if given, else hub, else excerpt; recorded as data_source)"
        ),
    )
    data_dir: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="directory with train.txt and valid.txt (or wiki.train.tokens / wiki.valid.tokens)",
    )
    train_chars: int = Field(20_000, ge=130, le=50_000_000, description="characters taken from the train text")
    val_chars: int = Field(5_000, ge=130, le=50_000_000, description="characters taken from the val text")

    @model_validator(mode="after")
    def _data_can_fill_a_window(self) -> WikiTextCharConfig:
        if self.data == "dir" and not self.data_dir:
            raise ValueError("--data dir needs --data-dir DIR (a directory with train.txt and valid.txt)")
        for name in ("train_chars", "val_chars"):
            if getattr(self, name) <= self.seq_len:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} gives no window of "
                                 f"--seq-len {self.seq_len}: it needs more than {self.seq_len} characters")
        return self
