"""Config fields shared by report 004's Exp 10 (``confidence-routing``) and Exp 11 (``lpt-routing``).

Not an experiment itself (no ``EXPERIMENT``). Only pydantic and the experiment API are imported here;
the training code lives in :mod:`core.training.routing` and is imported inside the run functions. Early
stopping here watches the routed val PPL at ``--threshold``; the digits match at 1 and 2 CPU threads.

Variants (spec 5 F6, 6 B11/B12):

- ``published``: the toy "fox" text (pipeline B, quirk B11) and the threshold table on the LAST weights
  (5 epochs past the best, quirk B12), exactly what produced the report's tables; per-batch-mean metrics.
- ``corrected``: real WikiText-2 characters (pipeline A text, 97-symbol vocabulary, shuffled train
  batches) and the threshold table on the restored BEST weights; token-weighted val metrics.

``--data`` and ``--weights`` override either half of that choice on their own (same names and meaning as
the Exp 5/8/9 configs in :mod:`core.experiments.toy_char_common`).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from core.experiments.fields import CharModelFields, EarlyStoppingFields, OptimizerFields
from core.experiments.toy_char_common import CharVariantConfig


class RoutingConfig(CharModelFields, OptimizerFields, EarlyStoppingFields, CharVariantConfig):
    """Data, model, optimiser and routing settings of Exp 10/11; defaults = report 004's."""

    n_layers: int = Field(4, ge=2, le=48, description="blocks of the deep path (the deep exit is the last block)")
    shallow_exit: int = Field(2, ge=1, le=47, description="block whose output gives the shallow logits")
    threshold: float = Field(
        0.8, gt=0.0, le=1.0, description="routing threshold: a token exits shallow when max softmax ≥ this"
    )
    thresholds: tuple[float, ...] = Field(
        (0.5, 0.6, 0.7, 0.8, 0.9),
        min_length=0,
        max_length=64,
        description="thresholds of the post-training sweep table (each in (0, 1])",
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not (0.0 < t <= 1.0) for t in value):
            raise ValueError("every threshold must lie in (0, 1]")
        return value

    @model_validator(mode="after")
    def _shape(self) -> RoutingConfig:
        if self.shallow_exit >= self.n_layers:
            raise ValueError("shallow_exit must be below n_layers")
        return self
