"""Config fields shared by report 004's growing experiments, ``greedy-layerwise`` (Exp 6) and ``progressive`` (Exp 7).

Not an experiment itself (no ``EXPERIMENT``). Only pydantic and the experiment API are imported here.
Defaults are the report's settings: d 64, 4 heads, 4 layers, seq 64, batch 16, AdamW 1e-3 (wd 0.01),
clip 1.0, max 30 epochs and patience 5 per stage, seed 42, 2 CPU threads.

Variants: ``published`` = the toy-fox text (quirk B11), last weights carried into the next stage (B12),
and for greedy the embedding frozen by the first added block (B13): the report's numbers.
``corrected`` = real WikiText-2 characters (source ``--data``), best weights restored at the end of every
stage, embedding trainable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.experiments.base import ExperimentConfig


class GrowingConfig(ExperimentConfig):
    n_layers: int = Field(4, ge=1, le=32, description="blocks of the final model (one stage per block when growing)")
    d_model: int = Field(64, ge=8, le=2048, description="model width")
    n_heads: int = Field(4, ge=1, le=64, description="attention heads (must divide the width, even head dim)")
    seq_len: int = Field(64, ge=8, le=1024, description="characters per training window")
    batch_size: int = Field(16, ge=1, le=4096, description="windows per batch")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="AdamW learning rate of every growth stage")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay (PyTorch default 0.01)")
    clip: float = Field(1.0, ge=0.0, le=1000.0, description="gradient clipping max global norm (0: off)")
    max_epochs: int = Field(30, ge=1, le=10_000, description="maximum epochs per stage")
    patience: int = Field(5, ge=1, le=1_000, description="early stopping: epochs without strict val PPL improvement")
    init_std: float = Field(0.02, gt=0.0, le=1.0, description="std of the truncated-normal init (I-C)")
    cpu_threads: int = Field(
        2, ge=0, le=512,
        description="torch intra-op threads on CPU (0: torch's default); the report's numbers used 2",
    )
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
    def _heads_divide_width(self) -> GrowingConfig:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError("d_model must be a multiple of n_heads with an even head dimension (RoPE)")
        return self
