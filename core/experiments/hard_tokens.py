"""``hard-tokens`` (report 002): train the next stage on hard tokens vs the same number of all tokens.

Both conditions are evaluated on the same hard val tokens. With ``--condition both`` (default) one
run trains both, as stage 1 ("hard") and stage 2 ("all"), each from the same seeded initialisation.

published (B10, report 002's code path): pipeline C with 1,000 + 200 samples, windows of 128; per
token the frozen base's final-normed hidden state (fp16 model on CUDA, features in fp32) and the
"Layer 29" cos(h[-3], h[-2]) in fp16; hard = cos < 0.934 (a fixed threshold that was the 10 %
quantile of a *different* cos definition, the Layer 28-29 average of report 000); the "next stage"
is a single bias-free Linear(576 → 49,152) from PyTorch's default init, trained on independent tokens
(no context) with AdamW 1e-4, wd 0.01, batch 32, exactly 10 epochs; "all" = the first N train
tokens; the reported val loss is the minimum over the 10 epochs.

corrected (default): the next stage is a real LLM: a 2-layer Llama add-on whose tied embedding/head
is initialised from the base model's head (so it starts at the base's predictions), fed the base's
final-normed hidden states of whole 128-token windows (causal context), with the loss masked to the
selected positions (hard positions, or the first N positions of the train stream for "all"). The
threshold is the train set's ``hard_ratio`` quantile of the Layer 28-29 average (the definition the
0.934 came from) and the same threshold selects the val hard tokens; best weights are restored (equal
to the minimum val loss). The base's own hard-token PPL (its head, original context) is reported beside.
Every choice can be overridden field by field (``auto`` = the variant's choice).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.smollm2_common import SmolLM2Config



class HardTokensConfig(SmolLM2Config):
    num_samples: int = Field(1000, ge=1, le=52_002, description="train samples (pipeline C; val follows in the same stream)")
    val_samples: int = Field(200, ge=1, le=52_002, description="val samples: val_ratio = val / (train + val) of the token stream")
    seq_len: int = Field(128, ge=2, le=8192, description="tokens per window")
    condition: Literal["both", "hard", "all"] = Field(
        "both", description="train on hard tokens, on the same number of leading tokens, or both (two stages)")
    threshold_rule: Literal["auto", "fixed", "quantile"] = Field(
        "auto", description="hard selection: fixed --threshold (published) or the train --hard-ratio quantile (corrected)")
    threshold: float = Field(0.934, ge=-1.0, le=1.0, description="fixed cos threshold (hard = cos < threshold)")
    hard_ratio: float = Field(0.1, gt=0.0, lt=1.0, description="quantile of train cos used as threshold (quantile rule)")
    cos_rule: Literal["auto", "penultimate", "last2avg", "final", "whole"] = Field(
        "auto", description="cos definition: auto = penultimate ('Layer 29') for published, last2avg for corrected")
    next_stage: Literal["auto", "probe", "addon"] = Field(
        "auto", description="model trained: linear probe (published, B10) or a Llama add-on with context (corrected)")
    head_init: Literal["auto", "random", "base"] = Field(
        "auto", description="probe/add-on head init: random (published) or copied from the base head (corrected)")
    addon_layers: int = Field(2, ge=1, le=64, description="layers of the add-on next stage")
    epochs: int = Field(10, ge=1, le=1000, description="training epochs per condition (no early stopping)")
    lr: float = Field(1e-4, gt=0.0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay")
    batch_size: int = Field(32, ge=1, le=65_536, description="tokens per step (probe)")
    addon_batch_size: int = Field(8, ge=1, le=4096, description="windows per step (add-on)")
    amp: Literal["auto", "off", "bf16"] = Field(
        "auto", description="autocast for the add-on: auto = bf16 on CUDA for corrected, off otherwise")

    def resolved(self) -> HardTokensConfig:
        """This config with every variant-dependent ``auto`` filled in (``amp`` stays: it depends on the device).

        published: fixed threshold, "Layer 29" cos, a random-init linear probe (B10); corrected: the train
        quantile of the Layer 28-29 average and a Llama add-on whose head starts from the base's.
        """
        published = self.variant == "published"
        choices = {
            "cos_rule": "penultimate" if published else "last2avg",
            "threshold_rule": "fixed" if published else "quantile",
            "next_stage": "probe" if published else "addon",
            "head_init": "random" if published else "base",
        }
        return self.model_copy(update={k: v for k, v in choices.items() if getattr(self, k) == "auto"})


def run(config: HardTokensConfig, emit: Emitter) -> None:
    import math

    import torch

    from core.experiments.base import resolve_device, seed_everything
    from core.smollm2.alpaca import load_records, pipeline_c
    from core.smollm2.model import count_params, load_base, make_addon
    from core.smollm2.ops import hard_mask, ppl, quantile, run_frozen
    from core.smollm2.train import OptimSpec, train_sequences, train_tokens

    seed_everything(config.seed)
    config = config.resolved()
    device = resolve_device(config.device)
    published = config.variant == "published"
    cuda = device.startswith("cuda")
    rule, th_rule, nxt, head_init = config.cos_rule, config.threshold_rule, config.next_stage, config.head_init
    amp = torch.bfloat16 if (config.amp == "bf16" or (config.amp == "auto" and cuda and not published)) else None
    model_dtype = torch.float16 if (published and cuda) else torch.float32
    cos_dtype = torch.float16 if published else torch.float32

    lm, tok, spec = load_base(config.model, device=device, dtype=model_dtype)
    records = load_records(config.data_file)
    n = config.num_samples + config.val_samples
    data = pipeline_c(tok, records, num_samples=n, seq_len=config.seq_len, batch_size=1,
                      val_ratio=config.val_samples / n, seed=config.data_seed)
    if data.train.shape[0] == 0 or data.val.shape[0] == 0:
        raise ValueError("not enough tokens for one train and one val window")
    quirks = []
    if published:
        quirks.append("B10")
    if cos_dtype == torch.float16:
        quirks.append("B18")
    emit.info(
        params=count_params(lm), data_source=data.description, model_source=spec.source, quirks=quirks,
        device=device, next_stage=nxt, head_init=head_init, cos_rule=rule, threshold_rule=th_rule,
        condition=config.condition, amp=str(amp).replace("torch.", "") if amp else "off",
    )

    xt, yt = data.train[:, :-1], data.train[:, 1:]
    xv, yv = data.val[:, :-1], data.val[:, 1:]
    store = device  # features stay on the accelerator
    bt = run_frozen(lm, input_ids=xt, labels=yt, rule=rule, batch_size=16, cos_dtype=cos_dtype,
                    keep_hidden=True, store_device=store)
    bv = run_frozen(lm, input_ids=xv, labels=yv, rule=rule, batch_size=16, cos_dtype=cos_dtype,
                    keep_hidden=True, store_device=store)
    assert bt.h_out is not None and bv.h_out is not None
    tau = config.threshold if th_rule == "fixed" else quantile(bt.cos, config.hard_ratio)
    mt = hard_mask(bt.cos, tau, inclusive=False)
    mv = hard_mask(bv.cos, tau, inclusive=False)
    n_tr, n_va = int(yt.numel()), int(yv.numel())
    n_hard, n_vhard = int(mt.sum()), int(mv.sum())
    if n_hard == 0 or n_vhard == 0:
        raise ValueError(f"threshold {tau:.4f} selects {n_hard} train / {n_vhard} val hard tokens: nothing to train on")
    base_val_ppl = ppl(float(bv.ce.double().mean()))
    base_hard_val_ppl = ppl(float(bv.ce[mv].double().mean()))
    extract_tps = (bt.tokens + bv.tokens) / (bt.seconds + bv.seconds)
    emit.table("token_counts", [
        {"split": "train", "tokens": n_tr, "hard_tokens": n_hard, "hard_pct": 100.0 * n_hard / n_tr},
        {"split": "val", "tokens": n_va, "hard_tokens": n_vhard, "hard_pct": 100.0 * n_vhard / n_va},
    ])
    emit.log(f"threshold {tau:.4f} ({th_rule}, {rule}); hard train {n_hard}/{n_tr}, val {n_vhard}/{n_va}; "
             f"base PPL all val {base_val_ppl:.2f}, hard val {base_hard_val_ppl:.2f}")

    yt_d, yv_d = yt.to(device), yv.to(device)
    conditions = ["hard", "all"] if config.condition == "both" else [config.condition]
    results: dict[str, dict[str, float]] = {}
    for k, cond in enumerate(conditions, start=1):
        if cond == "hard":
            sel = mt
            label = f"hard tokens ({n_hard})"
        else:
            flat = torch.zeros(mt.numel(), dtype=torch.bool, device=mt.device)
            flat[:n_hard] = True
            sel = flat.view_as(mt)
            label = f"all tokens, first {n_hard}"
        emit.stage(k, label, epochs=config.epochs)
        seed_everything(config.seed)
        optim = OptimSpec(lr=config.lr, weight_decay=config.weight_decay)

        def on_epoch(epoch: int, row: dict[str, float], _k: int = k) -> None:
            emit.epoch(epoch, row, stage=_k, total=config.epochs)

        if nxt == "probe":
            probe = torch.nn.Linear(lm.config.hidden_size, lm.config.vocab_size, bias=False)
            if head_init == "base":
                with torch.no_grad():
                    probe.weight.copy_(lm.get_output_embeddings().weight.float().cpu())
            probe = probe.to(device)
            model: torch.nn.Module = probe
            res = train_tokens(
                probe, probe, x_train=bt.h_out[sel], y_train=yt_d[sel], x_val=bv.h_out[mv], y_val=yv_d[mv],
                optim=optim, epochs=config.epochs, patience=None, batch_size=config.batch_size,
                restore_best=not published, seed=config.seed, on_epoch=on_epoch, eval_before=True,
            )
        else:
            addon = make_addon(lm.config, config.addon_layers, init_head_from=lm if head_init == "base" else None).to(device)
            model = addon
            res = train_sequences(
                addon, h_train=bt.h_out, y_train=yt_d, m_train=sel, h_val=bv.h_out, y_val=yv_d, m_val=mv,
                optim=optim, epochs=config.epochs, patience=None, batch_size=config.addon_batch_size,
                restore_best=True, seed=config.seed, autocast=amp, on_epoch=on_epoch, eval_before=True,
            )
        stage_sum = {
            "train_tokens": float(n_hard), "best_val_loss": res.best_val_loss, "best_val_ppl": res.best_val_ppl,
            "best_epoch": float(res.best_epoch), "before_val_ppl": ppl(res.before_val_loss),
            "last_val_ppl": ppl(res.last_val_loss), "seconds": res.seconds,
            "train_tokens_per_s": res.train_tokens_per_s,
            "params": float(count_params(model)), "trainable_params": float(count_params(model, trainable_only=True)),
            "threshold": tau,
        }
        emit.summary(stage_sum, stage=k)
        results[cond] = stage_sum
        del model

    summary: dict[str, float] = {
        "threshold": tau, "train_tokens_total": float(n_tr), "train_hard_tokens": float(n_hard),
        "train_hard_pct": 100.0 * n_hard / n_tr, "val_tokens_total": float(n_va), "val_hard_tokens": float(n_vhard),
        "val_hard_pct": 100.0 * n_vhard / n_va, "data_reduction_pct": 100.0 * (1 - n_hard / n_tr),
        "base_val_ppl": base_val_ppl, "base_hard_val_ppl": base_hard_val_ppl, "extract_tokens_per_s": extract_tps,
    }
    for cond, r in results.items():
        summary[f"{cond}_val_loss"] = r["best_val_loss"]
        summary[f"{cond}_val_ppl"] = r["best_val_ppl"]
        summary[f"{cond}_seconds"] = r["seconds"]
    if "hard" in results and "all" in results:
        summary["ppl_diff"] = results["hard"]["best_val_ppl"] - results["all"]["best_val_ppl"]
        summary["ppl_ratio"] = results["hard"]["best_val_ppl"] / results["all"]["best_val_ppl"]
    else:
        summary["ppl_ratio"] = math.nan
    summary["best_val_ppl"] = min(r["best_val_ppl"] for r in results.values())
    emit.table("conditions", [{"condition": c, **r} for c, r in results.items()])
    emit.summary(summary)


EXPERIMENT = Experiment(
    name="hard-tokens",
    description="Next stage trained on hard tokens vs as many leading tokens, scored on hard val tokens (report 002)",
    config_cls=HardTokensConfig,
    run=run,
    report="002",
    headline="ppl_ratio",
)
