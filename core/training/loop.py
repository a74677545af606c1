"""Training-loop pieces shared by the character-level experiments (spec 1.4).

Step functions return metric dicts; the experiment decides what to emit (nanoGPT/HRM style).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, Mapping[str, float]]"]
"""(model, x, y) → (loss to backpropagate, extra scalars to average, e.g. per-layer losses)."""


@dataclass
class EarlyStopping:
    """Stop when val PPL has not strictly improved for ``patience`` epochs (spec 1.4, B20).

    It only watches; restoring the best weights is the caller's choice (the published variant
    never did, quirk B12), so it can keep a copy of the best state on request.
    """

    patience: int
    keep_best_state: bool = False
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, epoch: int, value: float, model: nn.Module | None = None) -> bool:
        """Record an epoch's value; returns True when it is a new best."""
        if value < self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.keep_best_state and model is not None:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best state back into ``model`` (the corrected variant's behaviour)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    clip: float | None = 1.0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """One pass: forward, backward, clip the global grad norm, step. Returns batch-mean scalars."""
    model.train()
    totals: dict[str, float] = {}
    n_batches = 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss, extras = loss_fn(model, x, y)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
        optimizer.step()
        totals["train_loss"] = totals.get("train_loss", 0.0) + loss.item()
        for key, value in extras.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        n_batches += 1
    return {k: v / max(n_batches, 1) for k, v in totals.items()}


def perplexity(mean_loss: float, cap: float | None = None) -> float:
    """exp(mean CE), optionally capping the loss first (pipeline A caps at 100, quirk B19)."""
    if cap is not None:
        mean_loss = min(mean_loss, cap)
    return math.exp(mean_loss)
