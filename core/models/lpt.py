"""LPT, Layer-wise Progressive Training (report 004 Exp 4): a loss, not an architecture.

After every block l the one shared output head gives logits_l = Head(h_l) (no auxiliary heads) and
loss_l = CE(logits_l, y). ``sum``: total = Σ_l loss_l; ``weighted``: total = Σ_l l·loss_l (both
unnormalised, as upstream). One backward per batch. Evaluation uses only the last block's logits.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LayerWeighting = Literal["sum", "weighted", "last"]


def layer_weights(n_layers: int, weighting: LayerWeighting) -> list[float]:
    """``sum`` → 1,…,1; ``weighted`` → 1,2,…,n; ``last`` (standard training) → 0,…,0,1."""
    if weighting == "sum":
        return [1.0] * n_layers
    if weighting == "weighted":
        return [float(i) for i in range(1, n_layers + 1)]
    return [0.0] * (n_layers - 1) + [1.0]


def per_layer_losses(
    head: nn.Module, hidden: list[torch.Tensor], y: torch.Tensor, weights: list[float]
) -> tuple[torch.Tensor, list[float]]:
    """(Σ_l w_l·CE(Head(h_l), y), [CE_1, …, CE_n] as floats).

    Layers with weight 0 are still scored (for the per-layer log), under ``no_grad`` so that the head
    is not trained on them.
    """
    total: torch.Tensor | None = None
    values: list[float] = []
    targets = y.reshape(-1)
    for h, w in zip(hidden, weights):
        if w == 0.0:
            with torch.no_grad():
                loss = F.cross_entropy(head(h).flatten(0, 1).float(), targets)
        else:
            loss = F.cross_entropy(head(h).flatten(0, 1).float(), targets)
            total = w * loss if total is None else total + w * loss
        values.append(loss.item())
    assert total is not None, "at least one layer needs a non-zero weight"
    return total, values
