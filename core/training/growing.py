"""Stage driver for report 004's growing experiments (Exp 6 greedy layer-wise, Exp 7 progressive).

One *stage* = a fresh AdamW over the trainable parameters, epochs of :func:`core.training.loop.train_epoch`
(clip 1.0) until early stopping (strict improvement, ``patience``), val PPL after every epoch. The
published variant keeps the last weights (quirk B12); the corrected one restores the best.

Data: ``published`` uses pipeline B (toy-fox, quirk B11) with val PPL = exp(mean of batch-mean CEs);
``corrected`` uses real WikiText-2 characters (pipeline A loaders) with val PPL = exp(token-mean CE).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from core.runtime import Emitter, resolve_device
from core.models.growable import GrowableCharLM, layer_losses, lm_loss
from core.training.loop import EarlyStopping, train_epoch

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class GrowingData:
    train: Batches
    val: Batches
    vocab_size: int
    source: str
    token_weighted: bool
    """True: val PPL = exp(Σ token CE / #tokens); False: exp(mean of batch means) (pipeline B, spec 4.5)."""
    info: dict[str, Any]


def load_data(config: Any) -> GrowingData:
    """Pipeline B for ``published``; WikiText-2 characters (``config.data`` source) for ``corrected``."""
    if config.variant == "published":
        from core.data.toy import DATA_SOURCE, toy_fox_batches

        batches = toy_fox_batches(config.seq_len, config.batch_size)
        return GrowingData(
            batches.train, batches.val, batches.vocab_size, DATA_SOURCE, token_weighted=False,
            info={"vocab_size": batches.vocab_size, "train_batches": len(batches.train), "val_batches": len(batches.val)},
        )
    from core.data.wikitext import VOCAB_SIZE, wikitext_char_batches

    loaders = wikitext_char_batches(
        seq_len=config.seq_len, batch_size=config.batch_size, source=config.data, data_dir=config.data_dir
    )
    return GrowingData(
        loaders.train, loaders.val, VOCAB_SIZE, loaders.source, token_weighted=True,
        info={"vocab_size": VOCAB_SIZE, "train_windows": loaders.n_train, "val_windows": loaders.n_val,
              "val_oov": loaders.val_oov},
    )


@torch.no_grad()
def evaluate(model: GrowableCharLM, batches: Batches, *, device: str, token_weighted: bool) -> tuple[float, float]:
    """(val loss, val PPL) of the last block's logits."""
    model.eval()
    total, weight = 0.0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        loss = lm_loss(model(x), y).item()
        n = y.numel() if token_weighted else 1
        total += loss * n
        weight += n
    mean = total / max(weight, 1)
    return mean, math.exp(mean)


@dataclass
class StageResult:
    best_val_ppl: float
    best_epoch: int
    epochs: int
    final_val_ppl: float
    """Val PPL of the weights the stage hands on (last epoch's; when restored, re-measured after the restore)."""
    params: int
    trainable_params: int

    def metrics(self) -> dict[str, float]:
        """The stage's summary numbers, as emitted per stage and reused by the run-level summary."""
        return {"best_val_ppl": self.best_val_ppl, "best_epoch": float(self.best_epoch), "epochs": float(self.epochs),
                "final_val_ppl": self.final_val_ppl, "params": float(self.params),
                "trainable_params": float(self.trainable_params)}


def train_stage(
    model: GrowableCharLM,
    data: GrowingData,
    emit: Emitter,
    *,
    stage: int,
    lr: float,
    weight_decay: float,
    clip: float,
    max_epochs: int,
    patience: int,
    lpt: bool,
    restore_best: bool,
    device: str,
) -> StageResult:
    """Train ``model`` for one stage; emits per-epoch metrics, per-layer training CEs and the stage summary."""
    params, trainable = model.param_counts()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )
    stopper = EarlyStopping(patience=patience, keep_best_state=restore_best)
    n_layers = model.n_layers

    def loss_fn(m, x, y):
        loss, values = layer_losses(m, x, y, lpt=lpt)
        return loss, {f"layer_{i}": v for i, v in enumerate(values, start=1)}

    val_ppl = math.inf
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        metrics = train_epoch(model, data.train, optimizer, loss_fn, clip=clip or None, device=device)
        val_loss, val_ppl = evaluate(model, data.val, device=device, token_weighted=data.token_weighted)
        stopper.update(epoch, val_ppl, model)
        emit.epoch(
            epoch,
            {"train_loss": metrics["train_loss"], "train_last_loss": metrics[f"layer_{n_layers}"],
             "val_loss": val_loss, "val_ppl": val_ppl},
            stage=stage, total=max_epochs,
        )
        emit.layers(epoch, {i: {"loss": metrics[f"layer_{i}"]} for i in range(1, n_layers + 1)}, stage=stage)
        if stopper.should_stop:
            break
    final = val_ppl
    if restore_best:
        stopper.restore(model)
        _, final = evaluate(model, data.val, device=device, token_weighted=data.token_weighted)
    result = StageResult(stopper.best, stopper.best_epoch, epoch, final, params, trainable)
    emit.summary(result.metrics(), stage=stage)
    return result


def setup_torch(config: Any) -> str:
    """Resolve the device and, on CPU, set the intra-op thread count (the report's runs used 2)."""
    device = resolve_device(config.device)
    if device == "cpu" and config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    return device
