"""Training driver of report 004's Experiments 1–4 on data pipeline A (spec 1.1, 1.4, 1.5, 4.5).

Two training procedures:

- **single pass** (Standard, LPT): one forward per batch, loss = Σ_l w_l·CE(Head(h_l), y) (w = 0,…,0,1 for
  standard training), one backward, clip 1.0, one AdamW step. The per-layer training CE of every block is
  logged (the head is scored on blocks with weight 0 without being trained on them).
- **segmented** (IRT, HRM, Infini-HRM: "Iterative Refinement Training"): per batch ``segments`` times:
  forward from the previous (detached) state, CE, zero_grad, backward, clip, optimizer step. Logged train
  loss = mean over segments × batches.

Evaluation: all segments (states carried), only the last segment's logits are scored; val PPL =
exp(min(100, Σ token CE / #tokens)) (cap: quirk B19). Early stopping on val PPL (strict improvement,
``patience``). ``published`` keeps the last weights (upstream never restored the best);
``corrected`` restores the best weights at the end and uses bf16 autocast on CUDA.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.runtime import Emitter, resolve_device, seed_everything, torch_threads
from core.checkpoint import checkpoints_for
from core.models.char_transformer import count_params
from core.models.lpt import LayerWeighting, layer_weights, per_layer_losses
from core.training.loop import EarlyStopping, perplexity

PPL_LOSS_CAP = 100.0


@dataclass
class CharLMPlan:
    """What an experiment module decides; the driver does the rest."""

    build: Callable[[], nn.Module]
    """Builds the model (called right after re-seeding, as upstream)."""
    segments: int = 1
    """>1: segmented (IRT-style) training and evaluation; the model must have ``segmented = True``."""
    weighting: LayerWeighting = "last"
    """Single-pass models: how the per-layer CEs are combined (``last`` = standard training)."""
    log_layers: bool = False
    """Emit per-layer training losses every epoch (``emit.layers``)."""
    train_ppl: bool = False
    """Exp 1: a full extra eval pass over the train loader every epoch, and initial PPLs before training."""
    quirks: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """Extra ``emit.info`` fields (model name, method...)."""


def _detach(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(_detach(s) for s in state)
    return state


def _autocast(device: str, enabled: bool):
    if enabled and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _ce(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), y.reshape(-1), reduction=reduction)


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, segments: int, device: str, amp: bool = False) -> tuple[float, float]:
    """(mean token CE, capped PPL) over every target of ``loader``; segmented models score the last segment."""
    model.eval()
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with _autocast(device, amp):
            if segments > 1:
                state = model.start_batch(x.shape[0], False) if hasattr(model, "start_batch") else None
                for _ in range(segments):
                    logits, state, _ = model(x, state)
            else:
                logits, _, _ = model(x)
        total += _ce(logits, y, reduction="sum").item()
        count += y.numel()
    mean = total / max(count, 1)
    return mean, perplexity(mean, cap=PPL_LOSS_CAP)


def _note_reached(model: nn.Module, reached: set[str] | None) -> None:
    if reached is not None:
        reached.update(n for n, p in model.named_parameters() if p.grad is not None)


def _clip(model: nn.Module, clip: float) -> None:
    if clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)


def train_epoch_single(
    model: nn.Module, loader, optimizer, *, weighting: LayerWeighting, clip: float, device: str, amp: bool,
    reached: set[str] | None = None,
) -> dict[str, Any]:
    """One epoch of standard / LPT training. Returns train_loss (the optimised objective), the last layer's
    CE (``train_final_loss``) and the per-layer CEs averaged over batches (``layers``)."""
    model.train()
    weights = layer_weights(model.n_layers, weighting)
    loss_sum, n_batches = 0.0, 0
    layer_sums = [0.0] * model.n_layers
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with _autocast(device, amp):
            _, _, hidden = model(x, return_hidden=True)
            loss, values = per_layer_losses(model.head, hidden, y, weights)
        optimizer.zero_grad()
        loss.backward()
        _note_reached(model, reached)
        _clip(model, clip)
        optimizer.step()
        loss_sum += loss.item()
        layer_sums = [a + b for a, b in zip(layer_sums, values)]
        n_batches += 1
    n = max(n_batches, 1)
    layers = [s / n for s in layer_sums]
    return {"train_loss": loss_sum / n, "train_final_loss": layers[-1], "layers": layers}


def train_epoch_segmented(
    model: nn.Module, loader, optimizer, *, segments: int, clip: float, device: str, amp: bool, log_layers: bool,
    reached: set[str] | None = None,
) -> dict[str, Any]:
    """One epoch of segmented training: an optimizer step after every segment, states detached between."""
    model.train()
    loss_sum, n_losses = 0.0, 0
    n_layers = getattr(model, "n_layers", 0) if log_layers else 0
    layer_sums = [0.0] * n_layers
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        state = model.start_batch(x.shape[0], True) if hasattr(model, "start_batch") else None
        for _ in range(segments):
            with _autocast(device, amp):
                logits, state, hidden = model(x, state, return_hidden=bool(n_layers))
                loss = _ce(logits, y)
                if n_layers:
                    with torch.no_grad():
                        for i, h in enumerate(hidden[:-1]):
                            layer_sums[i] += _ce(model.head(h), y).item()
                    layer_sums[-1] += loss.item()
            optimizer.zero_grad()
            loss.backward()
            _note_reached(model, reached)
            _clip(model, clip)
            optimizer.step()
            state = _detach(state)
            loss_sum += loss.item()
            n_losses += 1
        if hasattr(model, "end_batch"):
            model.end_batch(state, True)
    n = max(n_losses, 1)
    out: dict[str, Any] = {"train_loss": loss_sum / n, "train_final_loss": loss_sum / n}
    if n_layers:
        out["layers"] = [s / n for s in layer_sums]
    return out


def run_char_lm(config: Any, emit: Emitter, plan: CharLMPlan) -> dict[str, float]:
    """The whole run: data, seeding, model, training with early stopping, emitted records. Returns the summary.

    On CPU, ``config.cpu_threads`` (>0) sets torch's intra-op thread count for the run and restores it after.
    """
    device = resolve_device(config.device)
    with torch_threads(getattr(config, "cpu_threads", 0) if device == "cpu" else 0):
        return _run(config, emit, plan, device)


def _run(config: Any, emit: Emitter, plan: CharLMPlan, device: str) -> dict[str, float]:
    from core.data.wikitext import wikitext_char_batches

    corrected = config.variant == "corrected"
    amp = corrected and device.startswith("cuda")

    seed_everything(config.seed)
    loaders = wikitext_char_batches(
        seq_len=config.seq_len,
        batch_size=config.batch_size,
        source=config.data,
        data_dir=config.data_dir or None,
        train_chars=config.train_chars,
        val_chars=config.val_chars,
    )
    seed_everything(config.seed)  # upstream re-seeds immediately before building each model
    model = plan.build().to(device)
    params = count_params(model)
    emit.info(
        params=params,
        trainable_params=count_params(model, trainable_only=True),
        data_source=loaders.source,
        train_windows=loaders.n_train,
        val_windows=loaders.n_val,
        val_targets=loaders.val_targets,
        val_oov_chars=loaders.val_oov,
        quirks=list(plan.quirks),
        weights="best" if corrected else "last",
        device=device,
        cpu_threads=torch.get_num_threads() if device == "cpu" else None,
        autocast="bf16" if amp else "off",
        **plan.info,
    )
    emit.log(f"data: {loaders.source}")
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    segments = plan.segments if getattr(model, "segmented", False) else 1
    stopper = EarlyStopping(patience=config.patience, keep_best_state=corrected)

    if plan.train_ppl:
        _, init_train_ppl = evaluate(model, loaders.train, segments=segments, device=device, amp=amp)
        _, init_val_ppl = evaluate(model, loaders.val, segments=segments, device=device, amp=amp)
        emit.info(initial_train_ppl=init_train_ppl, initial_val_ppl=init_val_ppl)
        emit.log(f"initial train PPL {init_train_ppl:.2f}, val PPL {init_val_ppl:.2f}")

    epochs_run, start = 0, 1
    val_ppl = math.nan
    checkpoints = checkpoints_for(emit)
    resumed = checkpoints.resume_point()
    if resumed is not None:  # continue a dead attempt: weights, optimizer, counters, then the RNGs last
        model.load_state_dict(resumed.state["model"])
        optimizer.load_state_dict(resumed.state["optimizer"])
        stopper.load_state_dict(resumed.state["stopper"])
        epochs_run, val_ppl, start = resumed.epoch, resumed.state["val_ppl"], resumed.epoch + 1
        resumed.restore_rng()
        emit.log(f"resumed from the checkpoint of epoch {resumed.epoch}")
    for epoch in range(start, config.max_epochs + 1):
        if stopper.should_stop:  # the checkpoint was saved on the epoch that stopped training
            break
        started = time.perf_counter()
        reached: set[str] | None = set() if epoch == 1 else None
        if hasattr(model, "reset_memory"):
            model.reset_memory()  # Infini "carry": memory travels from batch to batch within an epoch
        if segments > 1:
            stats = train_epoch_segmented(
                model, loaders.train, optimizer, segments=segments, clip=config.clip, device=device, amp=amp,
                log_layers=plan.log_layers, reached=reached,
            )
        else:
            stats = train_epoch_single(
                model, loaders.train, optimizer, weighting=plan.weighting, clip=config.clip, device=device, amp=amp,
                reached=reached,
            )
        metrics: dict[str, float] = {"train_loss": stats["train_loss"]}
        if plan.weighting != "last" or segments > 1:
            metrics["train_final_loss"] = stats["train_final_loss"]
        if plan.train_ppl:
            _, metrics["train_ppl"] = evaluate(model, loaders.train, segments=segments, device=device, amp=amp)
        val_loss, val_ppl = evaluate(model, loaders.val, segments=segments, device=device, amp=amp)
        metrics["val_loss"], metrics["val_ppl"] = val_loss, val_ppl
        improved = stopper.update(epoch, val_ppl, model)
        metrics["improved"] = 1.0 if improved else 0.0
        metrics["epoch_time_s"] = time.perf_counter() - started
        per_layer = ({i + 1: {"loss": v} for i, v in enumerate(stats["layers"])}
                     if plan.log_layers and "layers" in stats else None)
        emit.epoch(epoch, metrics, total=config.max_epochs, layers=per_layer)
        epochs_run = epoch
        if reached is not None:
            # Parameters no backward pass of the first epoch reached: the unused Q-head (B15), z_L's initial
            # state (it only feeds HRM's no-grad first step), and under the parallel rule (B14) block L too,
            # because the final H update reads the no-grad step-0 L state.
            no_grad = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n not in reached)
            emit.info(params_without_gradient=no_grad)
        checkpoints.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "stopper": stopper.state_dict(), "val_ppl": val_ppl}, epoch=epoch, score=val_ppl)
        if stopper.should_stop:
            emit.log(f"early stop at epoch {epoch}: no improvement for {config.patience} epoch(s)")
            break

    final_ppl = val_ppl
    if corrected and stopper.best_state is not None:
        stopper.restore(model)
        _, final_ppl = evaluate(model, loaders.val, segments=segments, device=device, amp=amp)
        emit.log(f"restored the best weights (epoch {stopper.best_epoch})")
    summary = {
        "best_val_ppl": stopper.best,
        "best_epoch": float(stopper.best_epoch),
        "params": float(params),
        "epochs_run": float(epochs_run),
        "final_val_ppl": final_ppl,
    }
    emit.summary(summary)
    return summary
