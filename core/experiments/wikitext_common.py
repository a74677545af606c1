"""Config fields shared by report 004's Experiments 1–4 (data pipeline A, spec 1.1 and 1.4).

Not an experiment itself (no ``EXPERIMENT``): the catalog modules ``hrm``, ``infini_hrm``, ``irt`` and
``lpt`` subclass :class:`WikiTextCharConfig`. Only pydantic and the experiment API are imported here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import ExperimentConfig


class WikiTextCharConfig(ExperimentConfig):
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
    seq_len: int = Field(64, ge=8, le=1024, description="window length (non-overlapping next-char windows)")
    batch_size: int = Field(16, ge=1, le=4096, description="batch size (train shuffled, val in order)")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay")
    clip: float = Field(1.0, ge=0.0, le=1000.0, description="gradient clipping max global norm (0: off)")
    cpu_threads: int = Field(
        1,
        ge=0,
        le=512,
        description="torch intra-op threads on CPU (0: torch's default); these small models run fastest on 1",
    )
    n_heads: int = Field(4, ge=1, le=64, description="attention heads (must divide the width)")
