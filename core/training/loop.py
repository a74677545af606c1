"""Training-loop pieces shared by the character-level experiments (spec 1.4).

Step functions return metric dicts; the experiment decides what to emit (nanoGPT/HRM style).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
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

    def state_dict(self) -> dict[str, object]:
        """Counters and best weights, for a checkpoint (PyTorch's ``state_dict`` convention)."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Continue from a checkpoint's counters and best weights."""
        self.best, self.best_epoch, self.bad_epochs = float(state["best"]), int(state["best_epoch"]), int(state["bad_epochs"])
        self.best_state = state.get("best_state")  # type: ignore[assignment]


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


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Standard training: token-mean cross-entropy of the model's (last-block) logits. A :data:`LossFn`."""
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), {}


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device = "cpu",
) -> float:
    """Validation CE of ``model(x)``: the mean of batch-mean CEs when all batches have the same number of
    targets (pipeline B's definition, bit for bit), otherwise the token-weighted mean (pipeline A)."""
    model.eval()
    means: list[float] = []
    counts: list[int] = []
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        means.append(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item())
        counts.append(y.numel())
    if not means:
        return math.nan
    if len(set(counts)) == 1:
        return sum(means) / len(means)
    return sum(m * c for m, c in zip(means, counts)) / sum(counts)


@dataclass
class FitResult:
    """What :func:`fit` did: the best epoch/PPL, how many epochs ran, and the per-epoch metric rows."""

    best_val_ppl: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]
    stopper: EarlyStopping


def fit(
    model: nn.Module,
    train_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    val_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    max_epochs: int,
    patience: int,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    clip: float | None = 1.0,
    device: str | torch.device = "cpu",
    loss_fn: LossFn = lm_loss,
    keep_best_state: bool = False,
    restore_best: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Spec 1.4: a fresh AdamW over the trainable parameters, ``train_epoch`` + validation every epoch,
    early stopping on val PPL (strict improvement, ``patience``). ``on_epoch(epoch, metrics)`` gets
    ``train_loss``, ``val_loss``, ``val_ppl`` (and the loss function's extras) after each epoch.

    The model ends with its *last* weights unless ``restore_best`` (which implies keeping the best state).
    ``train_batches`` may be a list (same order every epoch) or a DataLoader (re-shuffled each epoch).
    """
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )
    stopper = EarlyStopping(patience=patience, keep_best_state=keep_best_state or restore_best)
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        metrics = train_epoch(model, train_batches, optimizer, loss_fn, clip=clip, device=device)
        val_loss = evaluate_loss(model, val_batches, device=device)
        metrics.update(val_loss=val_loss, val_ppl=perplexity(val_loss))
        history.append(metrics)
        stopper.update(epoch, metrics["val_ppl"], model)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if stopper.should_stop:
            break
    if restore_best:
        stopper.restore(model)
    return FitResult(
        best_val_ppl=stopper.best, best_epoch=stopper.best_epoch, epochs_run=epoch, history=history, stopper=stopper
    )
