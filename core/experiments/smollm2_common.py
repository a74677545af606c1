"""Config fields shared by the SmolLM2 experiments (``saturation``, ``hard-tokens``, ``cascade``): the base
model and where the Alpaca records come from.

Not an experiment itself (no ``EXPERIMENT``). Only pydantic and the experiment API are imported here, so
listing the catalog does not import torch or transformers.
"""

from __future__ import annotations

from pydantic import Field

from core.experiments.base import ExperimentConfig

#: The reports' base model (the same id as ``core.smollm2.model.DEFAULT_MODEL_ID``).
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


class SmolLM2Config(ExperimentConfig):
    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=1000,
                       description="hub id, local model directory, or .gguf file of the frozen base model")
    data_file: str = Field("", max_length=1000,
                           description="Alpaca JSON list (instruction/input/output); empty: $HRM_ALPACA_FILE, then the hub")
    data_seed: int = Field(42, ge=0, le=2**31 - 1, description="seed of the pipeline C sample permutation")
