"""Stage training loops of the SmolLM2 experiments.

Two shapes of data:
- :func:`train_sequences`: [S, T, D] input hidden states with [S, T] labels and a [S, T] loss mask
  (real causal context, loss only on selected positions: the corrected variants; with an all-true
  mask on re-packed sequences it is also the published 000 path, B3).
- :func:`train_tokens`: [M, D] independent token vectors with [M] labels (the published 001
  length-1 sequences, B7, and the 002 linear probe, B10).

Both log per epoch train_loss (token-weighted mean), val_loss (token mean), val_ppl, seconds and
tokens/s; early stopping on val loss strictly improving; ``restore_best`` picks best vs last weights (B8).

On CUDA, with the data on the GPU and a constant lr, the training steps run as one replayed CUDA graph
(:class:`GraphedSteps`): the same kernels in the same order, so the same numbers up to float noise
(the last, short batch is padded and masked instead of run short), without the per-kernel launch
cost that dominated both step shapes (~600 kernels of a few microseconds each for a 32-token
length-1 step). On CPU, or with ``cuda_graph=False``, the original eager loop runs unchanged.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
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
    step_mode: str = "eager"  # "eager", "cuda-graph", or "eager (graph capture failed: ...)"

    @property
    def best_val_ppl(self) -> float:
        return ppl(self.best_val_loss)


def _optimizer(params: list[torch.nn.Parameter], spec: OptimSpec, total_steps: int, device: torch.device,
               *, capturable: bool = False):
    """AdamW, fused on CUDA (one multi-tensor kernel, no per-parameter launches); ``capturable``
    keeps its step counters on the GPU so :class:`GraphedSteps` can capture it (same arithmetic)."""
    kw: dict[str, Any] = {}
    if device.type == "cuda":
        kw["fused"] = True
        if capturable:
            kw["capturable"] = True
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
#: ``static_loss(idx [B] on the GPU, -1 = padding) -> (mean loss over valid tokens, valid-token count tensor)``
StaticLoss = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _bucket_key(name: str) -> str:
    """Decoder layer of a parameter ("model.layers.3.mlp.up_proj.weight" -> "3"), "top" for the rest."""
    if ".layers." in name:
        return name.split(".layers.", 1)[1].split(".", 1)[0]
    return "top"


#: Overlap AdamW with backward in graphed steps (see :class:`BucketedAdamW`); a switch for benchmarks.
OVERLAP_OPTIMIZER = True


class BucketedAdamW:
    """Fused AdamW in buckets (one per decoder layer, one for the rest) stepped on a side stream as soon
    as backward has accumulated a bucket's grads.

    Why: the update is bandwidth-bound (53 M fp32 parameters x 28 bytes = 1.5 GB, ~0.55 ms a step on an
    H100) while the backward of a 32-token step is latency-bound GEMMs that leave most of the GPU idle;
    run after backward the update was a quarter of the published 001 step, beside it about a third of
    it is hidden (measured: 2.07 -> 1.89 ms a step). Fused AdamW is elementwise, so per parameter the
    arithmetic is that of one AdamW over all of them (same losses to 5 decimals on the GPU). The head's
    bucket starts first (its grad is the first one ready); a layer's weights are updated only once
    backward has finished using them. Buckets wait for as many grads as the first step produced
    (parameters unused by the forward, e.g. q/k projections on length-1 sequences, get none and are
    skipped, exactly as AdamW skips them). Needs no gradient clipping (that needs all grads first).
    """

    def __init__(self, named_params: list[tuple[str, torch.nn.Parameter]], spec: OptimSpec, device: torch.device) -> None:
        groups: dict[str, list[torch.nn.Parameter]] = {}
        for name, prm in named_params:
            groups.setdefault(_bucket_key(name), []).append(prm)
        self.buckets = list(groups.values())
        self.params = [prm for b in self.buckets for prm in b]
        self.opts = [torch.optim.AdamW(b, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay,
                                       fused=True, capturable=True) for b in self.buckets]
        self.param_groups = self.opts[0].param_groups
        self.stream = torch.cuda.Stream(device)
        self.expected: list[int] | None = None
        self.left: list[int] = []
        self.stepped: list[bool] = []
        self.handles = [prm.register_post_accumulate_grad_hook(self._hook(i))
                        for i, b in enumerate(self.buckets) for prm in b]

    def _hook(self, i: int) -> Callable[[torch.Tensor], None]:
        def hook(_p: torch.Tensor) -> None:
            if self.expected is None:
                return
            self.left[i] -= 1
            if self.left[i] == 0:
                self._step(i)
        return hook

    def _step(self, i: int) -> None:
        self.stepped[i] = True
        self.stream.wait_stream(torch.cuda.current_stream())  # the bucket's grads (and last uses) are done
        with torch.cuda.stream(self.stream):
            self.opts[i].step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for prm in self.params:
            prm.grad = None

    def before_backward(self) -> None:
        self.stepped = [False] * len(self.buckets)
        if self.expected is not None:
            self.left = list(self.expected)

    def after_backward(self) -> None:
        if self.expected is None:  # first step: learn how many grads each bucket gets
            self.expected = [sum(prm.grad is not None for prm in b) for b in self.buckets]
        for i, done in enumerate(self.stepped):
            if not done and self.expected[i] > 0:
                self._step(i)
        torch.cuda.current_stream().wait_stream(self.stream)  # the next forward sees updated weights

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


class GraphedSteps:
    """Training steps replayed from one CUDA graph: gather, forward, loss, backward, clip, AdamW, loss sums.

    Why: both stage shapes are launch-bound. A 32-token length-1 step of an 8-layer add-on is ~650
    kernels of a few microseconds; launched one by one from Python the GPU mostly waits (published
    001 on an H100: ~14 ms a step for ~3 ms of GPU work; the corrected step syncs on its masked
    loss). Captured once, a step is one graph launch and the CPU runs thousands of steps ahead;
    nothing in a step reads back to the host (H100: 2.6 ms a published step, 1.9 ms with the
    compiled length-1 forward; corrected epoch 1.6 -> 0.48 s).

    Every step has the same shape: the last batch of an epoch is padded with index -1, which
    ``static_loss`` gives zero weight, so one graph serves the whole stage. The first ``warmup`` steps
    run eagerly (real steps) on a side stream, as capture requires (lazy initialisation, compilation,
    AdamW state). If capture fails, the steps stay eager and ``mode`` says why.
    """

    def __init__(self, static_loss: StaticLoss, *, module: torch.nn.Module, optim: OptimSpec, batch_size: int,
                 device: torch.device, warmup: int = 2) -> None:
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.static_loss, self.params, self.clip = static_loss, [p for _, p in named], optim.clip
        self.opt: Any
        if optim.clip is None and OVERLAP_OPTIMIZER:
            self.opt = BucketedAdamW(named, optim, device)
        else:
            self.opt = _optimizer(self.params, optim, 1, device, capturable=True)[0]
        self.idx = torch.full((batch_size,), -1, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self.warmup, self.done = warmup, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.mode = "cuda-graph" + (" + overlapped AdamW" if isinstance(self.opt, BucketedAdamW) else "")
        self._side = torch.cuda.Stream(device)

    def _body(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss, k = self.static_loss(self.idx)
        if isinstance(self.opt, BucketedAdamW):
            self.opt.before_backward()
            loss.backward()
            self.opt.after_backward()
        else:
            loss.backward()
            if self.clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            self.opt.step()
        self.loss_sum += loss.detach().double() * k
        self.count += k

    def _eager(self) -> None:
        self._side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side):
            self._body()
        torch.cuda.current_stream().wait_stream(self._side)

    def _capture(self) -> None:
        self.opt.zero_grad(set_to_none=True)  # grads get re-allocated in the graph's pool and stay put
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._body()
        except Exception as exc:  # noqa: BLE001 - fall back to eager steps, say why
            torch.cuda.synchronize()
            self.mode = f"eager (graph capture failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            warnings.warn(f"CUDA graph capture of the training step failed; running eagerly: {exc}", stacklevel=2)
            self.warmup = math.inf  # type: ignore[assignment]
            self._eager()
            return
        self.graph = graph
        graph.replay()

    def step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif self.done < self.warmup:
            self.done += 1
            self._eager()
        else:
            self._capture()

    def run_epoch(self, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All steps of one epoch over ``perm`` (a device permutation); returns (loss sum, token count) tensors."""
        self.loss_sum.zero_()
        self.count.zero_()
        b = self.idx.numel()
        pad = (-perm.numel()) % b
        if pad:
            perm = torch.cat([perm, perm.new_full((pad,), -1)])
        for s in range(0, perm.numel(), b):
            self.idx.copy_(perm[s:s + b], non_blocking=True)
            self.step()
        return self.loss_sum, self.count

    def release(self) -> None:
        """Drop the graph, the grads living in its memory pool and the optimizer's hooks."""
        self.graph = None
        self.opt.zero_grad(set_to_none=True)
        if isinstance(self.opt, BucketedAdamW):
            self.opt.remove()


def _use_graph(cuda_graph: bool | None, static_loss: StaticLoss | None, optim: OptimSpec, device: torch.device,
               data: list[torch.Tensor]) -> bool:
    """Graphs need CUDA, a capturable loss, a constant lr (a float lr is baked into the graph) and the
    training data already on the GPU (no host copies inside a step). ``cuda_graph=None``: when possible."""
    possible = (device.type == "cuda" and static_loss is not None and optim.schedule == "constant"
                and all(t.device == device for t in data))
    if cuda_graph and not possible:
        raise ValueError("cuda_graph=True needs CUDA, a constant lr and the training data on the GPU")
    return possible if cuda_graph is None else bool(cuda_graph)


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
    static_loss: StaticLoss | None = None,
) -> StageResult:
    steps_per_epoch = math.ceil(n_items / batch_size)
    graphed: GraphedSteps | None = None
    if static_loss is not None:
        graphed = GraphedSteps(static_loss, module=module, optim=optim, batch_size=batch_size, device=device)
        opt, sched = graphed.opt, None
    else:
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
        if graphed is not None:
            loss_sum_t, count_t = graphed.run_epoch(perm)
            loss_sum, count = float(loss_sum_t), int(count_t)  # the epoch's only host sync
        else:
            loss_sum_e = torch.zeros((), device=device, dtype=torch.float64)
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
                loss_sum_e += loss.detach().double() * k
                count += k
            loss_sum = float(loss_sum_e)
        _sync(device)
        t_train = time.perf_counter() - t0
        module.eval()
        val_loss = evaluate()
        secs = time.perf_counter() - t0
        train_loss = loss_sum / max(count, 1)
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
    if graphed is not None:
        res.step_mode = graphed.mode
        graphed.release()
    if restore_best and best_state is not None:
        module.load_state_dict(best_state)
    res.seconds = time.perf_counter() - t_stage
    res.train_tokens_per_s = trained_tokens / train_secs if train_secs > 0 else math.nan
    return res


# --- static-shape losses (CUDA graphs): index -1 = padding, zero weight -------------------------------

def _graph_autocast(device_type: str, dtype: torch.dtype | None) -> Any:
    # autocast's weight-cast cache must not outlive a graph capture: cast at each use (once a step anyway)
    return torch.autocast(device_type, dtype=dtype, cache_enabled=False) if dtype else null_ctx()


def static_token_loss(forward: Callable[[torch.Tensor], torch.Tensor], x_train: torch.Tensor, y_train: torch.Tensor,
                      autocast: torch.dtype | None) -> StaticLoss:
    """Mean CE of ``forward(x_train[idx])`` over the valid (>= 0) indices of a padded batch, and their count.

    = ``cross_entropy(forward(x[idx]), y[idx])`` of the eager step for an unpadded batch; padded rows
    get label -100 (ignored). Static shapes, no host sync: capturable.
    """
    def loss(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = idx >= 0
        j = idx.clamp(min=0)
        y = torch.where(valid, y_train[j], torch.full_like(j, -100))
        with _graph_autocast(x_train.device.type, autocast):
            logits = forward(x_train[j])
        k = valid.sum()
        return F.cross_entropy(logits.float(), y, ignore_index=-100, reduction="sum") / k, k
    return loss


def static_window_ce(addon: Any, autocast: torch.dtype | None) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``ce(h [B, T, D], y [B, T], m [B, T]) -> (sum of CE over the positions in m, their count)``.

    Logits at every position, unselected ones ignored (label -100): the masked loss of the eager
    path (``out[m]``) without its data-dependent shape and host sync.
    """
    def ce(h: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _graph_autocast(h.device.type, autocast):
            out = addon.model(inputs_embeds=h, use_cache=False).last_hidden_state
            logits = addon.lm_head(out)
        tgt = torch.where(m, y, torch.full_like(y, -100))
        v = logits.shape[-1]
        total = F.cross_entropy(logits.float().reshape(-1, v), tgt.reshape(-1), ignore_index=-100, reduction="sum")
        return total, m.sum()
    return ce


def static_window_loss(window_ce: Callable[..., tuple[torch.Tensor, torch.Tensor]], keep: torch.Tensor,
                       h_train: torch.Tensor, y_train: torch.Tensor, m_train: torch.Tensor) -> StaticLoss:
    """Token-mean masked CE of the windows ``keep[idx]`` (padding -1: a window with an all-false mask)."""
    def loss(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = idx >= 0
        rows = keep[idx.clamp(min=0)]
        total, k = window_ce(h_train[rows], y_train[rows], m_train[rows] & valid[:, None])
        return total / k, k
    return loss


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
    eval_before: bool = False, eval_batch_size: int = 32, cuda_graph: bool | None = None,
) -> StageResult:
    """Train ``addon`` on sequences of hidden states with a causal context and a loss mask.

    Sequences with no selected position are skipped (they carry no loss). Val loss = token-mean CE
    over ``m_val`` positions. Eager path (CPU, or ``cuda_graph=False``): logits only at the selected
    positions (``out[m]``, a data-dependent shape, hence a host sync per step). Graph path (CUDA,
    see :class:`GraphedSteps`): logits at every position, unselected ones ignored by the loss; the
    same loss with static shapes (the head costs at most 1/mask-ratio more, nothing syncs).
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

    static_ce_sum = static_window_ce(addon, autocast)
    static_loss = static_window_loss(static_ce_sum, keep, h_train, y_train, m_train)
    graph = _use_graph(cuda_graph, static_loss, optim, device, [h_train, y_train, m_train, keep])
    on_gpu = graph and all(t.device == device for t in (h_val, y_val, m_val))

    @torch.no_grad()
    def evaluate() -> float:
        tot = torch.zeros((), device=device, dtype=torch.float64)
        if on_gpu:  # static shapes, one sync at the end
            cnt_t = torch.zeros((), device=device, dtype=torch.long)
            for s in range(0, h_val.shape[0], eval_batch_size):
                sl = slice(s, s + eval_batch_size)
                ce, k = static_ce_sum(h_val[sl], y_val[sl], m_val[sl])
                tot += ce.double()
                cnt_t += k
            cnt = int(cnt_t)
            return float(tot) / cnt if cnt else math.nan
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
        eval_before=eval_before, static_loss=static_loss if graph else None,
    )


def train_tokens(
    module: torch.nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
    optim: OptimSpec, epochs: int, patience: int | None, batch_size: int, restore_best: bool,
    seed: int = 42, autocast: torch.dtype | None = None, on_epoch: EpochHook | None = None,
    eval_batch_size: int = 4096, eval_before: bool = False, cuda_graph: bool | None = None,
    step_forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> StageResult:
    """Train on independent token vectors: ``forward(x [B, D]) -> logits [B, V]``.

    ``step_forward``: the forward of the training steps only (default ``forward``), e.g. a compiled
    one (:func:`core.smollm2.ops.length1_forward`): steps have one fixed shape, validation batches
    others, and a compiled function recompiles for each shape and for no-grad mode.
    """
    device = next(module.parameters()).device
    ctx: Callable[[], Any] = (lambda: torch.autocast(device.type, dtype=autocast)) if autocast else null_ctx
    fwd_step = step_forward or forward

    def step_loss(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        idx_d = idx.to(x_train.device)
        x = x_train[idx_d].to(device, non_blocking=True)
        y = y_train[idx_d].to(device, non_blocking=True)
        with ctx():
            logits = fwd_step(x)
        return F.cross_entropy(logits.float(), y), int(y.numel())

    static_loss = static_token_loss(fwd_step, x_train, y_train, autocast)

    @torch.no_grad()
    def evaluate() -> float:
        tot = torch.zeros((), device=device, dtype=torch.float64)
        for s in range(0, x_val.shape[0], eval_batch_size):
            with ctx():
                logits = forward(x_val[s:s + eval_batch_size].to(device))
            tot += F.cross_entropy(logits.float(), y_val[s:s + eval_batch_size].to(device), reduction="sum").double()
        return float(tot) / max(1, x_val.shape[0])

    graph = _use_graph(cuda_graph, static_loss, optim, device, [x_train, y_train])
    return _fit(
        params=[p for p in module.parameters() if p.requires_grad], module=module, n_items=int(x_train.shape[0]),
        batch_size=batch_size, step_loss=step_loss, evaluate=evaluate, optim=optim, epochs=epochs,
        patience=patience, restore_best=restore_best, seed=seed, device=device, on_epoch=on_epoch,
        eval_before=eval_before, static_loss=static_loss if graph else None,
    )


def clone_module(m: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(m)
