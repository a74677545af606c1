"""Training and evaluation of report 004's confidence-routed models (Exp 10 and 11; spec section 2).

Both experiments run :func:`run_routing` with a :class:`RoutingPlan`: which blocks the model has, which
exits carry a training loss with which weight, and whether evaluation routes between a shallow and a deep
exit or scores a plain model at its last block.

Evaluation (spec Exp 10 "Definitions"): per token, the shallow logits are used when their max softmax
probability is ≥ τ, else the deep logits ("fake" early exit: both paths are always computed).
shallow % = share of tokens that exit shallow; compute % = (s·n_shallow + L·n_deep) / (L·tokens) with s the
shallow exit block and L the deep one (2 and 4 → (2·shallow + 4·deep)/(4·tokens)). Plain models: shallow 0 %,
compute = their blocks / the routed model's blocks (Std-2: 50 %). The published variant averages per-batch
means over the val batches (upstream), the corrected one weights by tokens (equal here: 4 × 1,024 tokens).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from core.runtime import Emitter, resolve_device, seed_everything, torch_threads
from core.models.routed import ExitStackLM, build_exit_stack, route
from core.training.loop import EarlyStopping

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class RoutingPlan:
    """What one run trains and how it is scored."""

    n_layers: int
    """Blocks of the model (routed: the deep exit; plain: its only exit)."""
    loss_weights: Mapping[int, float]
    """Training objective Σ w_e · CE(exit e), exits 1-based; summed in ascending exit order, unnormalised."""
    routed: bool
    """Route between ``shallow_exit`` and the last block at eval time (else: score the last block)."""
    shallow_exit: int = 2
    reference_layers: int = 4
    """Blocks of the full-depth path, the 100 % of compute % (plain models: their blocks / this)."""
    info: Mapping[str, Any] = field(default_factory=dict)
    """Extra run metadata for ``emit.info`` (model name, loss scheme...)."""


def per_exit_ce(logits: Mapping[int, torch.Tensor], y: torch.Tensor) -> dict[int, torch.Tensor]:
    return {e: F.cross_entropy(lg.reshape(-1, lg.size(-1)), y.reshape(-1)) for e, lg in sorted(logits.items())}


def train_epoch(
    model: ExitStackLM, batches: Batches, optimizer: torch.optim.Optimizer, plan: RoutingPlan,
    clip: float, device: str,
) -> tuple[float, dict[int, float]]:
    """One pass over ``batches``; returns (mean objective, {exit: mean CE}) over batches."""
    model.train()
    exits = tuple(sorted(e for e, w in plan.loss_weights.items()))
    total, per_exit, n_batches = 0.0, {e: 0.0 for e in exits}, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        ces = per_exit_ce(model(x, exits), y)
        loss = sum(plan.loss_weights[e] * ces[e] for e in exits)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        total += loss.item()
        for e in exits:
            per_exit[e] += ces[e].item()
        n_batches += 1
    n = max(n_batches, 1)
    return total / n, {e: v / n for e, v in per_exit.items()}


@torch.no_grad()
def evaluate(
    model: ExitStackLM, batches: Batches, plan: RoutingPlan, threshold: float, *,
    token_weighted: bool, device: str,
) -> dict[str, float]:
    """Routed (or plain) val metrics: val_loss, val_ppl, val_acc_pct, shallow_pct, compute_pct."""
    model.eval()
    deep = plan.n_layers
    batch_rows: list[tuple[float, float, float, float]] = []  # per batch: CE, acc, shallow share, compute share
    sums = {"ce": 0.0, "correct": 0.0, "shallow": 0.0, "tokens": 0.0}
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        if plan.routed:
            out = model(x, (plan.shallow_exit, deep))
            logits, mask = route(out[plan.shallow_exit], out[deep], threshold)
            n_shallow = float(mask.sum().item())
        else:
            logits = model(x, (deep,))[deep]
            n_shallow = 0.0
        tokens = float(y.numel())
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        correct = float((logits.argmax(-1) == y).sum().item())
        shallow_share = n_shallow / tokens
        if plan.routed:
            compute_share = (plan.shallow_exit * n_shallow + deep * (tokens - n_shallow)) / (deep * tokens)
        else:
            compute_share = deep / plan.reference_layers
        batch_rows.append((ce.item(), correct / tokens, shallow_share, compute_share))
        sums["ce"] += ce.item() * tokens
        sums["correct"] += correct
        sums["shallow"] += n_shallow
        sums["tokens"] += tokens
    if not batch_rows:
        raise ValueError("no validation batches")
    if token_weighted:
        n = sums["tokens"]
        loss, acc, shallow = sums["ce"] / n, sums["correct"] / n, sums["shallow"] / n
        compute = (
            (plan.shallow_exit * sums["shallow"] + deep * (n - sums["shallow"])) / (deep * n)
            if plan.routed else deep / plan.reference_layers
        )
    else:
        k = len(batch_rows)
        loss, acc, shallow, compute = (sum(r[i] for r in batch_rows) / k for i in range(4))
    return {
        "val_loss": loss,
        "val_ppl": math.exp(loss),
        "val_acc_pct": 100.0 * acc,
        "shallow_pct": 100.0 * shallow,
        "compute_pct": 100.0 * compute,
    }


def _load_data(config: Any, emit: Emitter) -> tuple[Batches, Batches, int, str, bool]:
    """(train, val, vocab size, data_source, is_toy) for the config's resolved data choice."""
    from core.data.char_data import char_batches

    data = char_batches(config.resolved_data(), seq_len=config.seq_len, batch_size=config.batch_size,
                        wikitext_source=config.wikitext_source, data_dir=config.data_dir)
    if not data.is_toy:
        emit.log(data.note)
    return data.train, data.val, data.vocab_size, data.source, data.is_toy


def run_routing(config: Any, emit: Emitter, plan: RoutingPlan) -> None:
    """Train with early stopping on the routed val PPL at ``config.threshold``, then the threshold sweep.

    On CPU, ``config.cpu_threads`` (>0) sets torch's intra-op thread count for the run and restores it after.
    """
    device = resolve_device(config.device)
    with torch_threads(config.cpu_threads if device == "cpu" else 0):
        _run(config, emit, plan, device)


def _run(config: Any, emit: Emitter, plan: RoutingPlan, device: str) -> None:
    published = config.variant == "published"
    token_weighted = not published

    train, val, vocab_size, data_source, is_toy = _load_data(config, emit)
    table_weights = config.resolved_weights()

    seed_everything(config.seed)  # upstream set_seed(42) right before building each model
    model = build_exit_stack(vocab_size, config.d_model, plan.n_layers, config.n_heads).to(device)
    params = sum(p.numel() for p in model.parameters())
    quirks = (["B11"] if is_toy else []) + (["B12"] if table_weights == "last" and plan.routed else [])
    emit.info(
        params=params,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        data_source=data_source,
        vocab_size=vocab_size,
        quirks=quirks,
        weights=table_weights,
        init="I-A (trunc-normal 1/sqrt(d) Linears, 0.02 embedding; PyTorch-2.11 sampler)",
        early_exit="simulated: both paths computed for every token" if plan.routed else "none",
        loss_weights={str(k): v for k, v in sorted(plan.loss_weights.items())},
        metric_averaging="token-weighted" if token_weighted else "mean of per-batch means",
        **dict(plan.info),
    )

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    stopper = EarlyStopping(patience=config.patience, keep_best_state=True)
    best_metrics: dict[str, float] = {}
    last: dict[str, float] = {}
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        train_loss, exit_losses = train_epoch(model, train, optimizer, plan, config.clip, device)
        last = evaluate(model, val, plan, config.threshold, token_weighted=token_weighted, device=device)
        metrics = {"train_loss": train_loss, **last}
        if plan.routed:
            metrics["train_shallow_loss"] = exit_losses.get(plan.shallow_exit, math.nan)
            metrics["train_deep_loss"] = exit_losses.get(plan.n_layers, math.nan)
        emit.epoch(epoch, metrics, total=config.max_epochs,
                   layers={e: {"train_loss": v} for e, v in exit_losses.items()})
        if stopper.update(epoch, last["val_ppl"], model):
            best_metrics = dict(last)
        if stopper.should_stop:
            emit.log(f"early stop at epoch {epoch}: best routed val PPL {stopper.best:.2f} at epoch {stopper.best_epoch}")
            break

    if plan.routed and config.thresholds:
        if table_weights == "best":
            stopper.restore(model)
        analysed_epoch = stopper.best_epoch if table_weights == "best" else epoch
        rows = []
        for tau in config.thresholds:
            m = evaluate(model, val, plan, tau, token_weighted=token_weighted, device=device)
            rows.append({"threshold": tau, **{k: m[k] for k in ("val_ppl", "val_acc_pct", "shallow_pct", "compute_pct")}})
        emit.log(f"threshold table on the {table_weights} weights (epoch {analysed_epoch})")
        emit.table("thresholds", rows)

    emit.summary({
        "best_val_ppl": stopper.best,
        "best_epoch": float(stopper.best_epoch),
        "val_acc_pct": best_metrics.get("val_acc_pct", math.nan),
        "shallow_pct": best_metrics.get("shallow_pct", math.nan),
        "compute_pct": best_metrics.get("compute_pct", math.nan),
        "params": float(params),
        "stopped_epoch": float(epoch),
        "final_val_ppl": last.get("val_ppl", math.nan),
    })
