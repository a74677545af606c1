"""Config fields the char-model experiments share, declared once: bounds, descriptions and the one RoPE check.

Each field type is an ``Annotated`` alias (bounds and description travel with the type), so a config
that needs another default redeclares only the default: ``patience: Patience = 1``. The mixins group
the fields with the defaults of report 004:

- :class:`OptimizerFields`: AdamW ``lr`` 1e-3, ``weight_decay`` 0.01, ``clip`` 1.0.
- :class:`EarlyStoppingFields`: ``max_epochs`` 30, ``patience`` 5 (strict improvement of the val PPL).
- :class:`CharModelFields`: ``seq_len`` 64, ``batch_size`` 16, ``d_model`` 64, ``n_heads`` 4 (with the
  RoPE check: every width a multiple of ``n_heads`` with an even head dimension) and ``cpu_threads``.

Only pydantic is imported here: listing the catalog and validating a config stay fast.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

LearningRate = Annotated[float, Field(gt=0.0, le=1.0, description="AdamW learning rate")]
WeightDecay = Annotated[float, Field(ge=0.0, le=1.0, description="AdamW weight decay")]
GradClip = Annotated[float, Field(ge=0.0, le=1000.0, description="gradient clipping max global norm (0: off)")]
MaxEpochs = Annotated[int, Field(ge=1, le=10_000, description="maximum epochs (per stage or phase)")]
Patience = Annotated[int, Field(ge=1, le=1_000, description="early stopping: epochs without strict val PPL improvement")]
SeqLen = Annotated[int, Field(ge=8, le=1024, description="characters per window")]
BatchSize = Annotated[int, Field(ge=1, le=4096, description="windows per batch")]
ModelWidth = Annotated[int, Field(ge=8, le=4096, description="model width")]
Heads = Annotated[int, Field(ge=1, le=64, description="attention heads (must divide the width into an even head dimension)")]
CpuThreads = Annotated[int, Field(
    ge=0, le=512,
    description="torch intra-op threads on CPU (0: torch's default); these small models run fastest on 1, "
    "report 004's runs used 2 (hrm reproduce sets it)",
)]

DEFAULT_CPU_THREADS = 1
"""The one default of ``cpu_threads`` (every char experiment)."""

_FROZEN = ConfigDict(extra="forbid", frozen=True)


def check_rope_heads(n_heads: int, *widths: int) -> None:
    """Raise ValueError unless every width splits into ``n_heads`` heads of an even size (RoPE rotates pairs)."""
    for width in widths:
        if width % n_heads or (width // n_heads) % 2:
            raise ValueError(f"width {width} must be a multiple of n_heads {n_heads} with an even head dimension (RoPE)")


def check_toy_batches(seq_len: int, batch_size: int) -> None:
    """Raise ValueError when the toy-fox text (pipeline B) gives no complete train or val batch for this shape."""
    from core.data.toy import toy_batch_counts

    n_train, n_val = toy_batch_counts(seq_len, batch_size)
    if not n_train or not n_val:
        raise ValueError(f"--seq-len {seq_len} × --batch-size {batch_size} leaves {n_train} train / {n_val} val "
                         "batches of the toy-fox text (about 20,000 / 5,000 characters): use a smaller shape")


class OptimizerFields(BaseModel):
    """AdamW settings (report 004's)."""

    model_config = _FROZEN

    lr: LearningRate = 1e-3
    weight_decay: WeightDecay = 0.01
    clip: GradClip = 1.0


class EarlyStoppingFields(BaseModel):
    """Early stopping on the val PPL (report 004's: 30 epochs at most, patience 5)."""

    model_config = _FROZEN

    max_epochs: MaxEpochs = 30
    patience: Patience = 5


class CharModelFields(BaseModel):
    """Window, batch and transformer shape of a character model, and the CPU thread count it runs with."""

    model_config = _FROZEN
    requires: ClassVar[tuple[str, ...]] = ("torch", "numpy")

    seq_len: SeqLen = 64
    batch_size: BatchSize = 16
    d_model: ModelWidth = 64
    n_heads: Heads = 4
    cpu_threads: CpuThreads = DEFAULT_CPU_THREADS

    def rope_widths(self) -> tuple[int, ...]:
        """The widths whose heads use RoPE (a config with a second model adds its width)."""
        return (self.d_model,)

    @model_validator(mode="after")
    def _rope_heads(self) -> CharModelFields:
        check_rope_heads(self.n_heads, *self.rope_widths())
        return self
