"""Stage training loops of the SmolLM2 experiments.

Two shapes of data:
- :func:`train_sequences`: [S, T, D] input hidden states with [S, T] labels and a [S, T] loss mask
  (real causal context, loss only on selected positions: the corrected variants; with an all-true
  mask on re-packed sequences it is also the published 000 path, B3).
- :func:`train_tokens`: [M, D] independent token vectors with [M] labels (the published 001
  length-1 sequences, B7, and the 002 linear probe, B10).

Both log per epoch train_loss (token-weighted mean), val_loss (token mean), val_ppl, seconds and
tokens/s; early stopping on val loss strictly improving; ``restore_best`` picks best vs last weights (B8).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from core.smollm2.ops import null_ctx, ppl


@dataclass
class OptimSpec:
    lr: float = 1e-4
    weight_decay: float = 0.01
    clip: float | None = None
    schedule: str = "constant"  # "constant" | "linear" (HF Trainer default: linear decay to 0, no warm-up)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclass
class StageResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float = math.inf
    best_epoch: int = 0
    last_val_loss: float = math.nan
    stopped_epoch: int = 0
    seconds: float = 0.0
    train_tokens_per_s: float = math.nan
    before_val_loss: float = math.nan
    restored: str = "last"

    @property
    def best_val_ppl(self) -> float:
        return ppl(self.best_val_loss)


def _optimizer(params: list[torch.nn.Parameter], spec: OptimSpec, total_steps: int, device: torch.device):
    kw: dict[str, Any] = {}
    if device.type == "cuda":
        kw["fused"] = True
    opt = torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay, **kw)
    if spec.schedule == "linear":
        total = max(1, total_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (total - s) / total))
    else:
        sched = None
    return opt, sched


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


EpochHook = Callable[[int, dict[str, float]], None]


def _fit(
    *,
    params: list[torch.nn.Parameter],
    module: torch.nn.Module,
    n_items: int,
    batch_size: int,
    step_loss: Callable[[torch.Tensor], tuple[torch.Tensor, int]],
    evaluate: Callable[[], float],
    optim: OptimSpec,
    epochs: int,
    patience: int | None,
    restore_best: bool,
    seed: int,
    device: torch.device,
    on_epoch: EpochHook | None,
    eval_before: bool,
) -> StageResult:
    steps_per_epoch = math.ceil(n_items / batch_size)
    opt, sched = _optimizer(params, optim, steps_per_epoch * epochs, device)
    gen = torch.Generator().manual_seed(seed)
    res = StageResult(restored="best" if restore_best else "last")
    if eval_before:
        module.eval()
        res.before_val_loss = evaluate()
    best_state: dict[str, torch.Tensor] | None = None
    bad = 0
    t_stage = time.perf_counter()
    trained_tokens = 0
    train_secs = 0.0
    for epoch in range(1, epochs + 1):
        module.train()
        _sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n_items, generator=gen).to(device)  # one copy per epoch, none per step
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        count = 0
        for s in range(0, n_items, batch_size):
            idx = perm[s:s + batch_size]
            loss, k = step_loss(idx)
            if k == 0:
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if optim.clip is not None:
                torch.nn.utils.clip_grad_norm_(params, optim.clip)
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += loss.detach().double() * k
            count += k
        _sync(device)
        t_train = time.perf_counter() - t0
        module.eval()
        val_loss = evaluate()
        secs = time.perf_counter() - t0
        train_loss = float(loss_sum) / max(count, 1)
        trained_tokens += count
        train_secs += t_train
        row = {"train_loss": train_loss, "val_loss": val_loss, "val_ppl": ppl(val_loss), "seconds": secs,
               "train_tokens_per_s": count / t_train if t_train > 0 else math.nan,
               "lr": opt.param_groups[0]["lr"]}
        res.history.append(row)
        res.last_val_loss = val_loss
        res.stopped_epoch = epoch
        if on_epoch is not None:
            on_epoch(epoch, row)
        if val_loss < res.best_val_loss:
            res.best_val_loss, res.best_epoch, bad = val_loss, epoch, 0
            if restore_best:
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            bad += 1
            if patience is not None and bad >= patience:
                break
    if restore_best and best_state is not None:
        module.load_state_dict(best_state)
    res.seconds = time.perf_counter() - t_stage
    res.train_tokens_per_s = trained_tokens / train_secs if train_secs > 0 else math.nan
    return res


def addon_states(addon: Any, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Hidden states of an add-on LlamaForCausalLM fed [B, T, D] ``inputs_embeds``."""
    return addon.model(inputs_embeds=h, output_hidden_states=True, use_cache=False).hidden_states


def train_sequences(
    addon: Any,
    *,
    h_train: torch.Tensor, y_train: torch.Tensor, m_train: torch.Tensor,
    h_val: torch.Tensor, y_val: torch.Tensor, m_val: torch.Tensor,
    optim: OptimSpec, epochs: int, patience: int | None, batch_size: int, restore_best: bool,
    seed: int = 42, autocast: torch.dtype | None = None, on_epoch: EpochHook | None = None,
    eval_before: bool = False, eval_batch_size: int = 32,
) -> StageResult:
    """Train ``addon`` on sequences of hidden states with a causal context and a loss mask.

    Sequences with no selected position are skipped (they carry no loss). Logits are computed only at
    selected positions (saves the 49k-vocab projection elsewhere). Val loss = token-mean CE over
    ``m_val`` positions.
    """
    device = next(addon.parameters()).device
    keep = m_train.reshape(m_train.shape[0], -1).any(dim=1).nonzero().reshape(-1).to(h_train.device)
    ctx: Callable[[], Any] = (lambda: torch.autocast(device.type, dtype=autocast)) if autocast else null_ctx

    def masked_ce(h: torch.Tensor, y: torch.Tensor, m: torch.Tensor, reduction: str) -> tuple[torch.Tensor, int]:
        with ctx():
            out = addon.model(inputs_embeds=h, use_cache=False).last_hidden_state
            sel = out[m]
            logits = addon.lm_head(sel)
        k = int(sel.shape[0])
        return F.cross_entropy(logits.float(), y[m], reduction=reduction), k

    def step_loss(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        rows = keep[idx.to(keep.device)]
        h = h_train[rows].to(device, non_blocking=True)
        y = y_train[rows].to(device, non_blocking=True)
        m = m_train[rows].to(device, non_blocking=True)
        return masked_ce(h, y, m, "mean")

    @torch.no_grad()
    def evaluate() -> float:
        tot = torch.zeros((), device=device, dtype=torch.float64)
        cnt = 0
        for s in range(0, h_val.shape[0], eval_batch_size):
            m = m_val[s:s + eval_batch_size].to(device)
            if not bool(m.any()):
                continue
            loss, k = masked_ce(h_val[s:s + eval_batch_size].to(device), y_val[s:s + eval_batch_size].to(device), m, "sum")
            tot += loss.double()
            cnt += k
        return float(tot) / cnt if cnt else math.nan

    return _fit(
        params=[p for p in addon.parameters() if p.requires_grad], module=addon, n_items=int(keep.numel()),
        batch_size=batch_size, step_loss=step_loss, evaluate=evaluate, optim=optim, epochs=epochs,
        patience=patience, restore_best=restore_best, seed=seed, device=device, on_epoch=on_epoch,
        eval_before=eval_before,
    )


def train_tokens(
    module: torch.nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
    optim: OptimSpec, epochs: int, patience: int | None, batch_size: int, restore_best: bool,
    seed: int = 42, autocast: torch.dtype | None = None, on_epoch: EpochHook | None = None,
    eval_batch_size: int = 4096, eval_before: bool = False,
) -> StageResult:
    """Train on independent token vectors: ``forward(x [B, D]) -> logits [B, V]``."""
    device = next(module.parameters()).device
    ctx: Callable[[], Any] = (lambda: torch.autocast(device.type, dtype=autocast)) if autocast else null_ctx

    def step_loss(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        idx_d = idx.to(x_train.device)
        x = x_train[idx_d].to(device, non_blocking=True)
        y = y_train[idx_d].to(device, non_blocking=True)
        with ctx():
            logits = forward(x)
        return F.cross_entropy(logits.float(), y), int(y.numel())

    @torch.no_grad()
    def evaluate() -> float:
        tot = torch.zeros((), device=device, dtype=torch.float64)
        for s in range(0, x_val.shape[0], eval_batch_size):
            with ctx():
                logits = forward(x_val[s:s + eval_batch_size].to(device))
            tot += F.cross_entropy(logits.float(), y_val[s:s + eval_batch_size].to(device), reduction="sum").double()
        return float(tot) / max(1, x_val.shape[0])

    return _fit(
        params=[p for p in module.parameters() if p.requires_grad], module=module, n_items=int(x_train.shape[0]),
        batch_size=batch_size, step_loss=step_loss, evaluate=evaluate, optim=optim, epochs=epochs,
        patience=patience, restore_best=restore_best, seed=seed, device=device, on_epoch=on_epoch,
        eval_before=eval_before,
    )


def clone_module(m: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(m)
