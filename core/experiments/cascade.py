"""``cascade`` (reports 000 and 001): a frozen SmolLM2 plus add-on LLMs trained stage by stage on hard tokens.

Each stage selects the hard tokens of the current LLM by a cos_sim rule (low cos = large change =
hard; threshold = the ``hard_ratio`` quantile of the current train tokens), trains a fresh add-on
Llama on them, and hands its final-normed outputs to the next stage. The run ends with a TRUE
early-exit evaluation on val: every LLM lets its easy tokens exit (scored with its own logits) and
passes the rest on; the last LLM scores everything left. Compute % = sum_k(input_k * layers_k) /
(tokens * sum_k layers_k).

``--recipe`` picks the report's settings (every field left unset takes the recipe's value):

| | 000 (report 000) | 001 (report 001) |
|---|---|---|
| data | pipeline C, 2,500 samples, val 10 %, batch 16 | pipeline D, 1,000 + 100 chunks of 129, batch 32 |
| stages × layers | 1 × 2 | 5 × 8 |
| hard ratio, rule | 0.1, strict `<`, Layer 28-29 average | 0.9, inclusive `<=`, cos(h[0], h[-1]) |
| training | AdamW wd 0, linear decay to 0, clip 1.0, lr 1e-4 (× 0.5 per LLM, B6), patience 2 | AdamW wd 0.01, constant lr 1e-4, no clip, patience 1 |

``--variant published`` runs the reports' code paths with their quirks:
- 000: fp16 base on CUDA, fp16 cos; hard tokens of all sequences re-packed into fake 128-token
  sequences, remainder dropped (B3); LLM 0's "hard PPL" = LLM 0 run again on its own outputs (B1);
  LLM 1 validated on all val tokens (B5); lr × 0.5 (B6); val hard set by val's own quantile (B9);
  early exit with LLM 0 applied twice (B2), dropped tokens counted but never scored (B4).
- 001: every token an independent length-1 sequence (B7) for training, validation and hand-off;
  the last epoch's weights are kept (B8); val hard sets by val's own quantile (B9). The early-exit
  table (not in report 001) uses those same val sets.

``--variant corrected`` (default): the base runs once in fp32; hard-token PPLs use each LLM's own
head in the original context; add-ons see whole windows (the previous LLM's final-normed states
at every position, real causal context) with the loss masked to the hard positions; val hard
tokens use the train threshold; best weights are restored; early exit evaluates each LLM once and
scores every token. Its table adds ``context_tokens``: what a later LLM must really process to give
its hard tokens their context (positions up to the last hard one of each window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.smollm2_common import SmolLM2Config


RECIPES: dict[str, dict[str, object]] = {
    "000": dict(pipeline="C", num_samples=2500, val_samples=0, val_ratio=0.1, batch_size=16, stages=1,
                stage_layers=2, hard_ratio=0.1, epochs=10, patience=2, lr=1e-4, lr_decay=0.5,
                weight_decay=0.0, schedule="linear", grad_clip=1.0, cos_rule="last2avg", selection="strict"),
    "001": dict(pipeline="D", num_samples=1000, val_samples=100, val_ratio=0.0, batch_size=32, stages=5,
                stage_layers=8, hard_ratio=0.9, epochs=10, patience=1, lr=1e-4, lr_decay=1.0,
                weight_decay=0.01, schedule="constant", grad_clip=0.0, cos_rule="whole", selection="inclusive"),
}


class CascadeConfig(SmolLM2Config):
    recipe: Literal["000", "001"] = Field("000", description="report whose settings fill every unset field")
    pipeline: Literal["auto", "C", "D"] = Field("auto", description="Alpaca pipeline (000: C, 001: D)")
    num_samples: int | None = Field(None, ge=1, le=52_002,
                                    description="C: Alpaca samples (000: 2500); D: train chunks (001: 1000)")
    val_samples: int | None = Field(None, ge=1, le=52_002, description="D: val chunks (001: 100)")
    val_ratio: float | None = Field(None, gt=0.0, lt=1.0, description="C: val share of the token stream (000: 0.1)")
    seq_len: int = Field(128, ge=2, le=8192, description="tokens per window")
    batch_size: int | None = Field(None, ge=1, le=65_536,
                                   description="windows per step (000: 16, 001: 32 tokens as length-1 sequences)")
    stages: int | None = Field(None, ge=1, le=16, description="add-on LLMs trained one after another (000: 1, 001: 5)")
    stage_layers: int | None = Field(None, ge=1, le=64, description="layers per add-on (000: 2, 001: 8)")
    hard_ratio: float | None = Field(None, gt=0.0, lt=1.0, description="share of the current tokens passed on as hard (000: 0.1, 001: 0.9)")
    epochs: int | None = Field(None, ge=1, le=1000, description="max epochs per stage (10)")
    patience: int | None = Field(None, ge=1, le=1000, description="stop after this many epochs without a strictly lower val loss (000: 2, 001: 1)")
    lr: float | None = Field(None, gt=0.0, le=1.0, description="AdamW learning rate (1e-4)")
    lr_decay: float | None = Field(None, gt=0.0, le=1.0,
                                   description="lr of LLM k = lr * lr_decay**k (published 000: 0.5, B6; else 1)")
    weight_decay: float | None = Field(None, ge=0.0, le=1.0, description="AdamW weight decay (000: 0, 001: 0.01)")
    schedule: Literal["auto", "constant", "linear"] = Field("auto", description="lr schedule (000: linear to 0, 001: constant)")
    grad_clip: float | None = Field(None, ge=0.0, le=1000.0, description="gradient-norm clip, 0 = off (000: 1.0, 001: off)")
    cos_rule: Literal["auto", "last2avg", "penultimate", "final", "whole"] = Field(
        "auto", description="exit score (000: last2avg = Layer 28-29 average, 001: whole = cos(h[0], h[-1]))")
    selection: Literal["auto", "strict", "inclusive"] = Field(
        "auto", description="hard = cos < threshold (strict, 000) or <= (inclusive, 001)")
    addon_init: Literal["random", "base"] = Field(
        "random", description="add-on tied embedding/head: random (reports) or copied from the base head")
    amp: Literal["auto", "off", "bf16"] = Field(
        "auto", description="autocast while training: auto = bf16 on CUDA for corrected, off for published")
    layer_stats: bool = Field(False, description="also emit the base model's per-layer cos statistics (train tokens)")
    extract: Literal["exact", "fast"] = Field(
        "exact", description="fast: bf16 autocast + compiled decoder layers for the frozen base pass on CUDA "
        "(~0.6 M tokens/s on an H100, cos changes in the 4th decimal); exact: the variant's own precision")
    compile: bool = Field(False, description="torch.compile the per-token training step of published 001 (fused kernels; "
                                             "the step is CUDA-graphed on GPU either way)")

    def resolved(self) -> CascadeConfig:
        """This config with every ``None``/``auto`` taken from the recipe: the settings the run really uses.

        Fields set by the user were validated at submit; the rest come from :data:`RECIPES` with the field's
        own type (``hard_ratio`` is a float in (0, 1) from the shell to the quantile; a recipe's 0 marks a
        field its pipeline does not use). The corrected variant never halves the lr per LLM unless asked (B6).
        """
        recipe = RECIPES[self.recipe]
        values: dict[str, object] = {}
        for key in _RECIPE_NUMBERS:
            if getattr(self, key) is None:
                values[key] = recipe[key]
        for key in _RECIPE_CHOICES:
            if getattr(self, key) == "auto":
                values[key] = recipe[key]
        if self.variant == "corrected" and self.lr_decay is None:
            values["lr_decay"] = 1.0
        return self.model_copy(update=values)

    def effective(self) -> dict[str, object]:
        """The recipe's keys (and ``seq_len``) with the values this config resolves to, as recorded in ``info``."""
        resolved = self.resolved()
        return {**{key: getattr(resolved, key) for key in RECIPES[self.recipe]}, "seq_len": self.seq_len}


_RECIPE_NUMBERS = ("num_samples", "val_samples", "val_ratio", "batch_size", "stages", "stage_layers", "hard_ratio",
                   "epochs", "patience", "lr", "lr_decay", "weight_decay", "grad_clip")
_RECIPE_CHOICES = ("pipeline", "schedule", "cos_rule", "selection")


@dataclass(frozen=True)
class BasePass:
    """What every code path starts from: the resolved config, the frozen base model and its pass over the data.

    ``bt``/``bv`` are the base's outputs (cos scores, final-normed states, CE, correctness) on the train and
    val windows; ``x*``/``y*`` the windows' inputs and next-token labels.
    """

    config: CascadeConfig
    emit: Emitter
    lm: Any
    bt: Any
    bv: Any
    xt: Any
    yt: Any
    xv: Any
    yv: Any
    device: str
    amp: Any
    cos_dtype: Any
    base_layers: int


def run(config: CascadeConfig, emit: Emitter) -> None:
    import torch

    from core.experiments.base import resolve_device, seed_everything
    from core.smollm2.alpaca import load_records, pipeline_c, pipeline_d
    from core.smollm2.model import EXPECTED_ADDON_PARAMS, EXPECTED_BASE_PARAMS, count_params, load_base
    from core.smollm2.ops import cos_stats, ppl, run_frozen
    from core.smollm2.progress import TokenProgress

    seed_everything(config.seed)
    effective = config.effective()
    config = config.resolved()
    device = resolve_device(config.device)
    cuda = device.startswith("cuda")
    published = config.variant == "published"
    path = ("repack" if config.recipe == "000" else "length1") if published else "context"
    model_dtype = torch.float16 if (published and config.recipe == "000" and cuda) else torch.float32
    cos_dtype = torch.float16 if (published and config.recipe == "000") else torch.float32
    amp = torch.bfloat16 if (config.amp == "bf16" or (config.amp == "auto" and cuda and not published)) else None

    lm, tok, spec = load_base(config.model, device=device, dtype=model_dtype)
    records = load_records(config.data_file)
    if config.pipeline == "C":
        data = pipeline_c(tok, records, num_samples=config.num_samples, seq_len=config.seq_len,
                          batch_size=config.batch_size, val_ratio=config.val_ratio, seed=config.data_seed)
    else:
        data = pipeline_d(tok, records, seq_len=config.seq_len, num_train=config.num_samples,
                          num_val=config.val_samples)
    if data.train.shape[0] == 0 or data.val.shape[0] == 0:
        raise ValueError("not enough tokens for one train and one val batch: raise num_samples")

    quirks: list[str] = []
    if path == "repack":
        quirks += ["B1", "B2", "B3", "B4", "B5", "B6", "B9"]
    elif path == "length1":
        quirks += ["B7", "B8", "B9"]
    if cos_dtype == torch.float16:
        quirks.append("B18")
    base_params = count_params(lm)
    base_layers = lm.config.num_hidden_layers
    real_shape = base_layers == 30 and lm.config.hidden_size == 576
    if real_shape and base_params != EXPECTED_BASE_PARAMS:
        emit.log(f"WARNING: base has {base_params} parameters, the reports say {EXPECTED_BASE_PARAMS}")
    emit.info(
        params=base_params, trainable_params=0, data_source=data.description, model_source=spec.source,
        quirks=quirks, device=device, recipe=config.recipe, code_path=path,
        effective=effective, model_dtype=str(model_dtype).replace("torch.", ""),
        amp=str(amp).replace("torch.", "") if amp else "off",
    )

    xt, yt = data.train[:, :-1], data.train[:, 1:]
    xv, yv = data.val[:, :-1], data.val[:, 1:]
    ebs = 16 if cuda else 8
    fast = {"autocast": torch.bfloat16, "compiled": True} if (config.extract == "fast" and cuda) else {}
    # Minutes on a CPU before the first epoch: tokens done / total, rate and ETA go to info.progress and the log.
    progress = TokenProgress(emit, "frozen base pass", int(yt.numel() + yv.numel()))
    emit.log(f"frozen base pass over {progress.total:,} tokens on {device}")
    bt = run_frozen(lm, input_ids=xt, labels=yt, rule=config.cos_rule, batch_size=ebs, cos_dtype=cos_dtype,
                    keep_hidden=True, layer_cos=config.layer_stats, layer_cos_dtype=cos_dtype,
                    on_batch=progress.part(0), **fast)
    bv = run_frozen(lm, input_ids=xv, labels=yv, rule=config.cos_rule, batch_size=ebs, cos_dtype=cos_dtype,
                    keep_hidden=True, on_batch=progress.part(int(yt.numel())), **fast)
    extract_tps = (bt.tokens + bv.tokens) / (bt.seconds + bv.seconds)
    base_val_ppl = ppl(float(bv.ce.double().mean()))
    base_val_acc = 100.0 * float(bv.correct.double().mean())
    emit.log(f"base pass: {bt.tokens} train + {bv.tokens} val tokens at {extract_tps:.0f} tokens/s; "
             f"base val PPL {base_val_ppl:.2f}, accuracy {base_val_acc:.2f} %")
    if config.layer_stats and bt.layer_cos is not None:
        emit.layers(None, {i + 1: cos_stats(bt.layer_cos[i]) for i in range(bt.layer_cos.shape[0])})
        bt.layer_cos = None

    base = BasePass(config=config, emit=emit, lm=lm, bt=bt, bv=bv, xt=xt, yt=yt, xv=xv, yv=yv, device=device,
                    amp=amp, cos_dtype=cos_dtype, base_layers=base_layers)
    if path == "repack":
        out = _run_repack(base)
    elif path == "length1":
        out = _run_length1(base)
    else:
        out = _run_context(base)

    stage_sums, exit_rows, extra = out
    n_val = int(yv.numel())
    ce_sum = sum(row.pop("_ce_sum") for row in exit_rows)
    correct = sum(row.pop("_correct") for row in exit_rows)
    compute = 100.0 * sum(row["input_tokens"] * row["layers"] for row in exit_rows) / (
        n_val * sum(row["layers"] for row in exit_rows))
    for row in exit_rows:
        row["exit_pct"] = 100.0 * row["exit_tokens"] / row["input_tokens"] if row["input_tokens"] else 0.0
    emit.table("early_exit", exit_rows)
    addon_params = [s["params"] for s in stage_sums]
    if real_shape:
        for s in stage_sums:
            want = EXPECTED_ADDON_PARAMS.get(config.stage_layers)
            if want is not None and int(s["params"]) != want:
                emit.log(f"WARNING: add-on has {int(s['params'])} parameters, expected {want}")
    summary: dict[str, float] = {
        "base_val_ppl": base_val_ppl, "base_val_acc_pct": base_val_acc,
        "threshold": stage_sums[0]["threshold"],
        "best_val_ppl": stage_sums[0]["best_val_ppl"],
        "final_stage_best_val_ppl": stage_sums[-1]["best_val_ppl"],
        "stages_trained": float(len(stage_sums)),
        "accuracy_pct": 100.0 * correct / n_val, "ppl": ppl(ce_sum / n_val), "compute_pct": compute,
        "saved_pct": 100.0 - compute,
        "exit_pct_llm0": exit_rows[0]["exit_pct"],
        "val_tokens": float(n_val), "train_tokens": float(yt.numel()),
        "params": float(base_params), "total_params": float(base_params + sum(addon_params)),
        "trainable_params": float(sum(addon_params)),
        "extract_tokens_per_s": extract_tps,
        "train_tokens_per_s": stage_sums[0].get("train_tokens_per_s", float("nan")),
        "seconds": sum(s["seconds"] for s in stage_sums),
    }
    summary.update(extra)
    emit.summary(summary)


# --- shared helpers ---------------------------------------------------------------------------------

def _optim(config: CascadeConfig, k: int):
    from core.smollm2.train import OptimSpec

    clip = config.grad_clip
    return OptimSpec(lr=config.lr * config.lr_decay ** k, weight_decay=config.weight_decay,
                     clip=clip if clip > 0 else None, schedule=config.schedule)


def _stage_addon(lm, config: CascadeConfig, k: int, device: str, sums_done: list, addons_done: dict, emit):
    """Stage ``k``'s add-on and whether it is replayed: a stage the checkpoint had finished comes back with
    its saved weights (its numbers are re-derived, it is not trained again); any other starts fresh."""
    addon = _new_addon(lm, config, k, device)
    replayed = k <= len(sums_done)
    if replayed:
        addon.load_state_dict(addons_done[k])
        emit.log(f"stage {k}: finished before the resume point, replayed from the checkpoint (not trained)")
    return addon, replayed


def _select(scores, tau: float, config: CascadeConfig):
    from core.smollm2.ops import hard_mask

    return hard_mask(scores, tau, inclusive=config.selection == "inclusive")


def _exit_row(llm: int, inputs: int, exits: int, layers: int, ce_sum: float, correct: int, **extra) -> dict:
    return {"llm": llm, "input_tokens": inputs, "exit_tokens": exits, "layers": layers,
            "_ce_sum": ce_sum, "_correct": correct, **extra}


def _new_addon(lm, config: CascadeConfig, k: int, device: str):
    from core.experiments.base import seed_everything
    from core.smollm2.model import make_addon

    seed_everything(config.seed + k - 1)
    return make_addon(lm.config, config.stage_layers,
                      init_head_from=lm if config.addon_init == "base" else None).to(device)


def _epoch_hook(emit, k: int, total: int):
    def hook(epoch: int, row: dict) -> None:
        emit.epoch(epoch, row, stage=k, total=total)
    return hook


def _stage_summary(res, *, k: int, tau: float, n_hard: int, n_vhard: int, params: int, lr: float, n_in: int,
                   config: CascadeConfig, n_val_in: int | None = None, **extra) -> dict:
    """A stage's summary. ``n_val_in``: the val tokens whose own quantile chose the val hard set (B9), if so."""
    from core.smollm2.ops import expected_hard_count, ppl

    if n_val_in is not None:
        extra = {"val_tokens_in": float(n_val_in), "val_hard_expected": float(expected_hard_count(
            n_val_in, config.hard_ratio, inclusive=config.selection == "inclusive")), **extra}
    return {
        "threshold": tau, "train_hard_tokens": float(n_hard), "val_hard_tokens": float(n_vhard),
        "train_tokens_in": float(n_in),
        "train_hard_expected": float(expected_hard_count(n_in, config.hard_ratio,
                                                         inclusive=config.selection == "inclusive")),
        "best_val_ppl": res.best_val_ppl, "best_epoch": float(res.best_epoch), "last_val_ppl": ppl(res.last_val_loss),
        "stopped_epoch": float(res.stopped_epoch), "params": float(params), "seconds": res.seconds,
        "train_tokens_per_s": res.train_tokens_per_s, "lr": lr,
        "final_train_loss": res.history[-1]["train_loss"] if res.history else float("nan"),
        **extra,
    }


# --- corrected: real context, masked loss, best weights -----------------------------------------------

def _run_context(base: BasePass):
    import torch

    from core.smollm2.model import count_params
    from core.smollm2.ops import ppl, quantile, run_frozen
    from core.checkpoint import checkpoints_for
    from core.smollm2.train import train_sequences

    config, emit, lm, bt, bv, yt, yv = base.config, base.emit, base.lm, base.bt, base.bv, base.yt, base.yv
    device, amp, base_layers = base.device, base.amp, base.base_layers
    yt_d, yv_d = yt.to(device), yv.to(device)
    # A checkpoint at each stage's end holds every trained add-on and the stage summaries. A resumed run
    # replays the finished stages without training them (load the add-on, hand its states on), then trains on.
    checkpoints = checkpoints_for(emit)
    point = checkpoints.resume_point()
    addons_done: dict[int, Any] = dict(point.state["addons"]) if point is not None else {}
    sums_done: list[dict[str, float]] = list(point.state["stage_sums"]) if point is not None else []
    cur_t, cur_v = bt, bv
    in_t = torch.ones_like(bt.cos, dtype=torch.bool)
    in_v = torch.ones_like(bv.cos, dtype=torch.bool)
    layers = [base_layers]
    masks_v = [in_v]
    ces_v = [bv.ce]
    oks_v = [bv.correct]
    stage_sums = []
    extra: dict[str, float] = {}
    cumulative = count_params(lm)
    K = config.stages
    for k in range(1, K + 1):
        tau = quantile(cur_t.cos[in_t], config.hard_ratio)
        hard_t = in_t & _select(cur_t.cos, tau, config)
        hard_v = in_v & _select(cur_v.cos, tau, config)
        n_hard, n_vhard = int(hard_t.sum()), int(hard_v.sum())
        if n_hard == 0 or n_vhard == 0:
            emit.log(f"stage {k}: no hard tokens left (train {n_hard}, val {n_vhard}); stopping")
            break
        in_hard_ppl = ppl(float(cur_v.ce[hard_v].double().mean()))
        addon, replayed = _stage_addon(lm, config, k, device, sums_done, addons_done, emit)
        opt = _optim(config, k)
        if not replayed:
            emit.stage(k, f"LLM {k}: {config.stage_layers}-layer add-on on {n_hard} hard tokens (context)",
                       epochs=config.epochs)
            res = train_sequences(
                addon, h_train=cur_t.h_out, y_train=yt_d, m_train=hard_t, h_val=cur_v.h_out, y_val=yv_d, m_val=hard_v,
                optim=opt, epochs=config.epochs, patience=config.patience, batch_size=config.batch_size,
                restore_best=True, seed=config.seed + k, autocast=amp, on_epoch=_epoch_hook(emit, k, config.epochs),
                eval_before=True,
            )
            emit.log(f"stage {k}: training steps ran as {res.step_mode}; {res.train_tokens_per_s:,.0f} train tokens/s")
        addon.eval()
        for p in addon.parameters():
            p.requires_grad_(False)
        ebs = 16 if device.startswith("cuda") else 8
        nt = run_frozen(addon, inputs_embeds=cur_t.h_out, labels=yt, rule=config.cos_rule, batch_size=ebs,
                        keep_hidden=k < K)
        nv = run_frozen(addon, inputs_embeds=cur_v.h_out, labels=yv, rule=config.cos_rule, batch_size=ebs,
                        keep_hidden=k < K)
        out_hard_ppl = ppl(float(nv.ce[hard_v].double().mean()))
        if replayed:
            s = sums_done[k - 1]
        else:
            s = _stage_summary(
                res, k=k, tau=tau, n_hard=n_hard, n_vhard=n_vhard, params=count_params(addon), lr=opt.lr,
                n_in=int(in_t.sum()), config=config, val_threshold=tau, input_hard_val_ppl=in_hard_ppl,
                cumulative_params=float(cumulative + count_params(addon)),
                hard_val_ppl_before=ppl(res.before_val_loss), hard_val_ppl_after=out_hard_ppl,
                improvement_pct=100.0 * (in_hard_ppl - out_hard_ppl) / in_hard_ppl,
            )
            emit.summary(s, stage=k)
        stage_sums.append(s)
        if checkpoints.enabled and not replayed:
            addons_done[k] = {name: t.detach().cpu() for name, t in addon.state_dict().items()}
            checkpoints.save({"addons": addons_done, "stage_sums": stage_sums}, stage=k, epoch=int(s["stopped_epoch"]),
                             stage_done=True, score=s["best_val_ppl"])
        cumulative = int(s["cumulative_params"])
        if k == 1:
            extra["llm0_hard_val_ppl"] = in_hard_ppl
            extra["llm1_hard_val_ppl"] = out_hard_ppl
            extra["improvement_pct"] = s["improvement_pct"]
        layers.append(config.stage_layers)
        masks_v.append(hard_v)
        ces_v.append(nv.ce)
        oks_v.append(nv.correct)
        cur_t, cur_v, in_t, in_v = nt, nv, hard_t, hard_v
        del addon
    # early exit: LLM j scores masks_v[j] \ masks_v[j+1]; the last scores all of its input.
    rows = []
    T = yv.shape[1]
    pos = torch.arange(T, device=masks_v[0].device)
    for j, m in enumerate(masks_v):
        exit_m = m & ~masks_v[j + 1] if j + 1 < len(masks_v) else m
        last = torch.where(m, pos, torch.full_like(pos, -1)).max(dim=1).values + 1
        rows.append(_exit_row(j, int(m.sum()), int(exit_m.sum()), layers[j], float(ces_v[j][exit_m].double().sum()),
                              int(oks_v[j][exit_m].sum()), context_tokens=int(last.sum())))
    n_val = int(yv.numel())
    denom = n_val * sum(layers)
    extra["compute_ctx_pct"] = 100.0 * sum(row["context_tokens"] * row["layers"] for row in rows) / denom
    return stage_sums, rows, extra


# --- published 000: re-packed hard tokens, double passes -------------------------------------------

def _run_repack(base: BasePass):
    import torch

    from core.smollm2.model import count_params
    from core.smollm2.ops import ppl, quantile, repack, run_frozen
    from core.smollm2.train import train_sequences

    config, emit, lm, bt, bv, yt, yv = base.config, base.emit, base.lm, base.bt, base.bv, base.yt, base.yv
    device, amp, cos_dtype, base_layers = base.device, base.amp, base.cos_dtype, base.base_layers
    T = config.seq_len
    D = bt.h_out.shape[-1]
    ebs = 16 if device.startswith("cuda") else 8
    hr = config.hard_ratio
    rule = config.cos_rule
    K = config.stages
    # Current LLM's outputs: train as flat tokens (selection set), val as sequences (all tokens, B5).
    cur_cos_t = bt.cos.reshape(-1)
    cur_h_t = bt.h_out.reshape(-1, D)
    cur_y_t = yt.reshape(-1).to(device)
    cur_cos_v = bv.cos.reshape(-1)
    cur_h_v_seq, cur_y_v_seq = bv.h_out, yv.to(device)
    cur_llm = lm
    taus: list[float] = []
    addons = []
    stage_sums = []
    extra: dict[str, float] = {}
    for k in range(1, K + 1):
        tau = quantile(cur_cos_t, hr)
        hard = _select(cur_cos_t, tau, config)
        n_hard = int(hard.sum())
        h_pack, y_pack, dropped = repack(cur_h_t[hard], cur_y_t[hard], T)
        # B9: val hard set by val's own quantile; B1: PPL of the current LLM re-run on its re-packed outputs.
        tau_v = quantile(cur_cos_v, hr)
        hard_v = _select(cur_cos_v, tau_v, config)
        hv_pack, yv_pack, v_dropped = repack(cur_h_v_seq.reshape(-1, D)[hard_v], cur_y_v_seq.reshape(-1)[hard_v], T)
        if h_pack.shape[0] == 0:
            emit.log(f"stage {k}: fewer than {T} hard tokens ({n_hard}); stopping")
            break
        if hv_pack.shape[0]:
            dp = run_frozen(cur_llm, inputs_embeds=hv_pack, labels=yv_pack.cpu(), rule=rule, batch_size=ebs,
                            cos_dtype=cos_dtype if k == 1 else None)
            in_hard_ppl = ppl(float(dp.ce.double().mean()))
        else:
            in_hard_ppl = float("nan")
        emit.stage(k, f"LLM {k}: {config.stage_layers}-layer add-on on {h_pack.shape[0]} re-packed sequences",
                   epochs=config.epochs)
        emit.log(f"stage {k}: threshold {tau:.4f} (val {tau_v:.4f}); hard train {n_hard} → {y_pack.numel()} packed "
                 f"({dropped} dropped); val hard {int(hard_v.sum())} → {yv_pack.numel()} packed; "
                 f"LLM {k - 1} hard val PPL (double pass, B1) {in_hard_ppl:.2f}")
        addon = _new_addon(lm, config, k, device)
        opt = _optim(config, k)
        emit.log(f"stage {k}: effective lr {opt.lr:g} (lr × {config.lr_decay}^{k}, B6), schedule {opt.schedule}")
        full_t = torch.ones(y_pack.shape, dtype=torch.bool, device=device)
        full_v = torch.ones(cur_y_v_seq.shape, dtype=torch.bool, device=device)
        res = train_sequences(
            addon, h_train=h_pack, y_train=y_pack, m_train=full_t, h_val=cur_h_v_seq, y_val=cur_y_v_seq,
            m_val=full_v, optim=opt, epochs=config.epochs, patience=config.patience,
            batch_size=config.batch_size, restore_best=False, seed=config.seed + k, autocast=amp,
            on_epoch=_epoch_hook(emit, k, config.epochs), eval_before=True, eval_batch_size=config.batch_size,
        )
        addon.eval()
        emit.log(f"stage {k}: training steps ran as {res.step_mode}; {res.train_tokens_per_s:,.0f} train tokens/s")
        for p in addon.parameters():
            p.requires_grad_(False)
        after = ppl(res.last_val_loss)
        before = ppl(res.before_val_loss)
        s = _stage_summary(
            res, k=k, tau=tau, n_hard=n_hard, n_vhard=int(hard_v.sum()), params=count_params(addon), lr=opt.lr,
            n_in=int(cur_cos_t.numel()), config=config, n_val_in=int(cur_cos_v.numel()), val_threshold=tau_v,
            cumulative_params=float(count_params(lm) + sum(count_params(a) for a in addons) + count_params(addon)),
            train_hard_tokens_packed=float(y_pack.numel()),
            train_hard_dropped=float(dropped),
            val_hard_tokens_packed=float(yv_pack.numel()), input_hard_val_ppl=in_hard_ppl,
            val_ppl_before=before, val_ppl_after=after,
            improvement_pct=100.0 * (in_hard_ppl - after) / in_hard_ppl,
            training_improvement_pct=100.0 * (before - after) / before,
        )
        emit.summary(s, stage=k)
        stage_sums.append(s)
        if k == 1:
            extra.update(llm0_hard_val_ppl=in_hard_ppl, llm1_val_ppl_before=before, llm1_val_ppl_after=after,
                         improvement_pct=s["improvement_pct"], llm1_improvement_pct=s["training_improvement_pct"],
                         train_hard_tokens=float(n_hard), train_hard_tokens_packed=float(y_pack.numel()),
                         val_hard_tokens_packed=float(yv_pack.numel()))
        taus.append(tau)
        addons.append(addon)
        if k < K:  # hand-off: the new LLM's outputs on its re-packed train set and on all val sequences
            nt = run_frozen(addon, inputs_embeds=h_pack, labels=y_pack, rule=rule, batch_size=ebs, keep_hidden=True)
            nv = run_frozen(addon, inputs_embeds=cur_h_v_seq, labels=cur_y_v_seq, rule=rule, batch_size=ebs,
                            keep_hidden=True)
            cur_cos_t, cur_h_t, cur_y_t = nt.cos.reshape(-1), nt.h_out.reshape(-1, D), y_pack.reshape(-1)
            cur_cos_v, cur_h_v_seq = nv.cos.reshape(-1), nv.h_out
            cur_llm = addon

    # TRUE early exit (B2): LLM 0 on ids, then LLM 0 again on its own outputs for exit decision and logits.
    rows = []
    llms = [lm] + addons
    layer_counts = [base_layers] + [config.stage_layers] * len(addons)
    cur_in = bv.h_out  # the first pass of LLM 0 on the val ids is the base pass already made
    cur_lab = yv.to(device)
    dropped_total = 0
    for j, llm in enumerate(llms):
        n_in = int(cur_lab.numel())
        if n_in == 0:
            rows.append(_exit_row(j, 0, 0, layer_counts[j], 0.0, 0))
            continue
        p = run_frozen(llm, inputs_embeds=cur_in, labels=cur_lab, rule=rule, batch_size=ebs,
                       cos_dtype=cos_dtype if j == 0 else None, keep_hidden=True)
        last = j == len(llms) - 1
        if last:
            ex = torch.ones_like(p.cos, dtype=torch.bool)
        else:
            ex = ~_select(p.cos, taus[j], config)  # exit: cos >= tau (strict) / cos > tau (inclusive)
        rows.append(_exit_row(j, n_in, int(ex.sum()), layer_counts[j], float(p.ce[ex].double().sum()),
                              int(p.correct[ex].sum())))
        if not last:
            cont = ~ex
            cur_in, cur_lab, d = repack(p.h_out[cont], cur_lab[cont], T)
            dropped_total += d
    extra["exit_dropped_tokens"] = float(dropped_total)
    return stage_sums, rows, extra


# --- published 001: independent length-1 sequences, last weights ------------------------------------

def _run_length1(base: BasePass):
    import torch
    import torch.nn.functional as F

    from core.smollm2.model import count_params
    from core.smollm2.ops import cos_rule, length1_forward, length1_states, quantile
    from core.checkpoint import checkpoints_for
    from core.smollm2.train import train_tokens

    config, emit, lm, bt, bv, yt, yv = base.config, base.emit, base.lm, base.bt, base.bv, base.yt, base.yv
    device, amp, base_layers = base.device, base.amp, base.base_layers
    checkpoints = checkpoints_for(emit)  # one at each stage's end; finished stages are replayed on resume
    point = checkpoints.resume_point()
    addons_done: dict[int, Any] = dict(point.state["addons"]) if point is not None else {}
    sums_done: list[dict[str, float]] = list(point.state["stage_sums"]) if point is not None else []
    D = bt.h_out.shape[-1]
    hr = config.hard_ratio
    rule = config.cos_rule
    K = config.stages
    x_t, y_t, c_t = bt.h_out.reshape(-1, D), yt.reshape(-1).to(device), bt.cos.reshape(-1)
    x_v, y_v, c_v = bv.h_out.reshape(-1, D), yv.reshape(-1).to(device), bv.cos.reshape(-1)
    ce_v, ok_v = bv.ce.reshape(-1), bv.correct.reshape(-1)
    # Early-exit bookkeeping on val: the tokens each LLM receives, as indices into the flat val set.
    idx_v = torch.arange(y_v.numel(), device=device)
    exit_rows = []
    stage_sums = []
    extra: dict[str, float] = {}
    cumulative = count_params(lm)
    for k in range(1, K + 1):
        tau = quantile(c_t, hr)
        tau_v = quantile(c_v, hr)  # B9
        hard_t = _select(c_t, tau, config)
        hard_v = _select(c_v, tau_v, config)
        n_hard, n_vhard = int(hard_t.sum()), int(hard_v.sum())
        prev_layers = base_layers if k == 1 else config.stage_layers
        exit_rows.append(_exit_row(k - 1, int(idx_v.numel()), int((~hard_v).sum()), prev_layers,
                                   float(ce_v[~hard_v].double().sum()), int(ok_v[~hard_v].sum())))
        if n_hard == 0 or n_vhard == 0:
            emit.log(f"stage {k}: no hard tokens; stopping")
            exit_rows[-1] = _exit_row(k - 1, int(idx_v.numel()), int(idx_v.numel()), prev_layers,
                                      float(ce_v.double().sum()), int(ok_v.sum()))
            return stage_sums, exit_rows, extra
        addon, replayed = _stage_addon(lm, config, k, device, sums_done, addons_done, emit)
        llama, head = addon.model, addon.lm_head
        x_hard, y_hard = x_t[hard_t], y_t[hard_t]
        opt = _optim(config, k)
        if not replayed:
            emit.stage(k, f"LLM {k}: {config.stage_layers}-layer add-on on {n_hard} tokens as length-1 sequences",
                       epochs=config.epochs)
            # Eager forward for validation; the training steps (CUDA-graphed on GPU) may use the compiled one.
            fwd = length1_forward(addon)
            step_fwd = length1_forward(addon, compiled=config.compile)
            res = train_tokens(
                addon, fwd, step_forward=step_fwd, x_train=x_hard, y_train=y_hard, x_val=x_v[hard_v], y_val=y_v[hard_v],
                optim=opt, epochs=config.epochs, patience=config.patience, batch_size=config.batch_size,
                restore_best=False, seed=config.seed + k, autocast=amp, on_epoch=_epoch_hook(emit, k, config.epochs),
            )
            emit.log(f"stage {k}: training steps ran as {res.step_mode}; {res.train_tokens_per_s:,.0f} train tokens/s")
        addon.eval()
        params = count_params(addon)
        cumulative += params
        if replayed:
            s = sums_done[k - 1]
        else:
            s = _stage_summary(res, k=k, tau=tau, n_hard=n_hard, n_vhard=n_vhard, params=params, lr=opt.lr,
                               n_in=int(c_t.numel()), config=config, n_val_in=int(c_v.numel()), val_threshold=tau_v,
                               cumulative_params=float(cumulative))
            emit.summary(s, stage=k)
        stage_sums.append(s)
        if checkpoints.enabled and not replayed:
            addons_done[k] = {name: t.detach().cpu() for name, t in addon.state_dict().items()}
            checkpoints.save({"addons": addons_done, "stage_sums": stage_sums}, stage=k, epoch=int(s["stopped_epoch"]),
                             stage_done=True, score=s["best_val_ppl"])
        # Hand-off (length-1): the stage's final-normed outputs on its hard tokens; next cos = cos(input, output).
        with torch.inference_mode():
            outs_t, cos_t2 = [], []
            for s0 in range(0, n_hard, 8192):
                xb = x_hard[s0:s0 + 8192]
                st = length1_states(llama, xb, all_states=rule != "whole")
                outs_t.append(st[-1].float())
                cos_t2.append(cos_rule(st, rule))
            xv_h = x_v[hard_v]
            outs_v, cos_v2, ce_v2, ok_v2 = [], [], [], []
            yv_h = y_v[hard_v]
            for s0 in range(0, n_vhard, 8192):
                st = length1_states(llama, xv_h[s0:s0 + 8192], all_states=rule != "whole")
                outs_v.append(st[-1].float())
                cos_v2.append(cos_rule(st, rule))
                logits = head(st[-1]).float()
                ce_v2.append(F.cross_entropy(logits, yv_h[s0:s0 + 8192], reduction="none"))
                ok_v2.append(logits.argmax(-1) == yv_h[s0:s0 + 8192])
        x_t, y_t, c_t = torch.cat(outs_t), y_t[hard_t], torch.cat(cos_t2)
        x_v, y_v, c_v = torch.cat(outs_v), yv_h, torch.cat(cos_v2)
        ce_v, ok_v = torch.cat(ce_v2), torch.cat(ok_v2)
        idx_v = idx_v[hard_v]
        del addon
    # The last LLM scores everything it received.
    exit_rows.append(_exit_row(K, int(idx_v.numel()), int(idx_v.numel()), config.stage_layers,
                               float(ce_v.double().sum()), int(ok_v.sum())))
    return stage_sums, exit_rows, extra


EXPERIMENT = Experiment(
    name="cascade",
    description="Frozen SmolLM2 + add-on LLMs trained stage by stage on hard tokens, with TRUE early exit (reports 000, 001)",
    config_cls=CascadeConfig,
    run=run,
    report="000",
    headline="best_val_ppl",
)
