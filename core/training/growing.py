"""Stage driver for report 004's growing experiments (Exp 6 greedy layer-wise, Exp 7 progressive).

One *stage* = a fresh AdamW over the trainable parameters, epochs of :func:`core.training.loop.train_epoch`
(clip 1.0) until early stopping (strict improvement, ``patience``), val PPL after every epoch. The
published variant keeps the last weights (quirk B12); the corrected one restores the best.

Data: ``published`` uses pipeline B (toy-fox, quirk B11) with val PPL = exp(mean of batch-mean CEs);
``corrected`` uses real WikiText-2 characters (pipeline A loaders) with val PPL = exp(token-mean CE).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from core.checkpoint import checkpoints_for
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


class StageCheckpoints:
    """Checkpoints of a staged (growing) run: after every epoch and at every stage's end.

    A resumed run asks :meth:`finished` for each stage: stages that ended before the checkpoint
    are not trained again (their results come from the checkpoint, and at the last of them the
    model and the RNGs are put back, before the next stage grows the model); the stage the
    checkpoint was taken in continues inside :func:`train_stage` from the epoch after it.
    """

    def __init__(self, emit: Emitter) -> None:
        self.checkpoints = checkpoints_for(emit)
        self.point = self.checkpoints.resume_point()
        done = self.point.state["done"] if self.point is not None else []
        self.done: dict[int, StageResult] = {int(k): StageResult(**v) for k, v in done}

    def finished(self, stage: int, model: GrowableCharLM) -> StageResult | None:
        """The result of ``stage`` if it ended before the resume point (restoring the model after the last one)."""
        point = self.point
        if point is None or (stage, True) > (point.stage, point.stage_done):
            return None
        if stage == point.stage:  # the checkpoint was taken at this stage's end: continue right after it
            model.load_state_dict(point.state["model"])
            point.restore_rng()
        return self.done[stage]

    def mid_stage(self, stage: int):
        """The checkpoint to continue ``stage`` from, when it was taken during that stage."""
        point = self.point
        return point if point is not None and point.stage == stage and not point.stage_done else None

    def save(self, stage: int, epoch: int, state: dict[str, Any], *, stage_done: bool, score: float) -> None:
        done = [[k, dataclasses.asdict(r)] for k, r in sorted(self.done.items())]
        self.checkpoints.save({**state, "done": done}, stage=stage, epoch=epoch, stage_done=stage_done, score=score)


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
    progress: StageCheckpoints | None = None,
) -> StageResult:
    """Train ``model`` for one stage; emits per-epoch metrics, per-layer training CEs and the stage summary.

    With ``progress``, a checkpoint is saved after every epoch and at the stage's end, and a stage
    interrupted mid-way continues from its checkpoint."""
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
    point = progress.mid_stage(stage) if progress is not None else None
    if point is not None:  # weights, optimizer and counters of the interrupted epoch, then the RNGs
        model.load_state_dict(point.state["model"])
        optimizer.load_state_dict(point.state["optimizer"])
        stopper.load_state_dict(point.state["stopper"])
        epoch, val_ppl = point.epoch, point.state["val_ppl"]
        point.restore_rng()
    for epoch in range(epoch + 1, max_epochs + 1):
        if stopper.should_stop:  # the checkpoint was taken on the epoch that stopped the stage
            epoch -= 1
            break
        metrics = train_epoch(model, data.train, optimizer, loss_fn, clip=clip or None, device=device)
        val_loss, val_ppl = evaluate(model, data.val, device=device, token_weighted=data.token_weighted)
        stopper.update(epoch, val_ppl, model)
        emit.epoch(
            epoch,
            {"train_loss": metrics["train_loss"], "train_last_loss": metrics[f"layer_{n_layers}"],
             "val_loss": val_loss, "val_ppl": val_ppl},
            stage=stage, total=max_epochs,
            layers={i: {"loss": metrics[f"layer_{i}"]} for i in range(1, n_layers + 1)},
        )
        if progress is not None:
            progress.save(stage, epoch, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "stopper": stopper.state_dict(), "val_ppl": val_ppl},
                          stage_done=False, score=val_ppl)
        if stopper.should_stop:
            break
    final = val_ppl
    if restore_best:
        stopper.restore(model)
        _, final = evaluate(model, data.val, device=device, token_weighted=data.token_weighted)
    result = StageResult(stopper.best, stopper.best_epoch, epoch, final, params, trainable)
    emit.summary(result.metrics(), stage=stage)
    if progress is not None:
        progress.done[stage] = result
        progress.save(stage, epoch, {"model": model.state_dict()}, stage_done=True, score=result.best_val_ppl)
    return result


def setup_torch(config: Any) -> str:
    """Resolve the device and, on CPU, set the intra-op thread count (the report's runs used 2)."""
    device = resolve_device(config.device)
    if device == "cpu" and config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    return device
