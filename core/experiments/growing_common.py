"""Config fields shared by report 004's growing experiments, ``greedy-layerwise`` (Exp 6) and ``progressive`` (Exp 7).

Not an experiment itself (no ``EXPERIMENT``). Only pydantic and the experiment API are imported here.
Defaults are the report's settings: d 64, 4 heads, 4 layers, seq 64, batch 16, AdamW 1e-3 (wd 0.01),
clip 1.0, max 30 epochs and patience 5 per stage, seed 42 (the report ran on 2 CPU threads: ``cpu_threads 2``).

Variants: ``published`` = the toy-fox text (quirk B11), last weights carried into the next stage (B12),
and for greedy the embedding frozen by the first added block (B13): the report's numbers.
``corrected`` = real WikiText-2 characters (source ``--data``), best weights restored at the end of every
stage, embedding trainable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.experiments.base import ExperimentConfig
from core.experiments.fields import CharModelFields, EarlyStoppingFields, OptimizerFields, check_toy_batches


class GrowingConfig(CharModelFields, OptimizerFields, EarlyStoppingFields, ExperimentConfig):
    n_layers: int = Field(4, ge=1, le=32, description="blocks of the final model (one stage per block when growing)")
    init_std: float = Field(0.02, gt=0.0, le=1.0, description="std of the truncated-normal init (I-C)")
    data: Literal["auto", "hub", "dir", "excerpt"] = Field(
        "auto",
        description=(
            "corrected variant's WikiText-2 source: dir (--data-dir), hub, excerpt (embedded), auto; "
            "published always uses the toy-fox text"
        ),
    )
    data_dir: str | None = Field(
        None, min_length=1, max_length=4096,
        description="directory with train.txt and valid.txt (or wiki.*.tokens), for --data dir/auto",
    )

    @model_validator(mode="after")
    def _data_fills_a_batch(self) -> GrowingConfig:
        if self.data == "dir" and not self.data_dir:
            raise ValueError("--data dir needs --data-dir DIR (a directory with train.txt and valid.txt)")
        if self.variant == "published":
            check_toy_batches(self.seq_len, self.batch_size)
        return self
