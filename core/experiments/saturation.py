"""``saturation`` (report 003): per-layer cos_sim(h[i-1], h[i]) distribution of SmolLM2-135M.

Alpaca pipeline C (n=500, batch 8, seq 128, val_ratio 0 → 43,008 tokens with the hub data), one
batched pass of the frozen base model with ``output_hidden_states=True``; "Layer i" = cos of hidden
state i-1 and i (Layer 1 = embeddings vs layer-1 output, Layer 30 = layer-29 output vs the
final-normed output). Per layer: mean, std, min, p10, p50, p90, max, % negative, % < 0.5; plus
the hard-ratio threshold recommendations (quantiles of one layer, default 29).

published: the base runs in fp16 on CUDA and the cos arithmetic is fp16 (quirk B18: maxima above
1.0); on CPU the model stays fp32 and only the cos arithmetic is fp16. corrected: fp32 throughout.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from core.experiments.base import Emitter, Experiment
from core.experiments.smollm2_common import SmolLM2Config



class SaturationConfig(SmolLM2Config):
    num_samples: int = Field(500, ge=1, le=52_002, description="Alpaca samples (pipeline C: shuffle(data_seed), first n)")
    extract: Literal["exact", "fast"] = Field(
        "exact", description="fast: bf16 autocast + compiled decoder layers for the base pass on CUDA "
        "(~0.7 M tokens/s on an H100; cos changes in the 3rd-4th decimal); exact: the variant's own precision")
    batch_size: int = Field(8, ge=1, le=1024, description="windows per batch (the incomplete last batch is dropped)")
    seq_len: int = Field(128, ge=2, le=8192, description="tokens per window")
    threshold_layer: int = Field(29, ge=1, le=256, description="layer whose cos quantiles become the thresholds")
    hard_ratios: str = Field("0.3,0.5,0.7", min_length=1, max_length=200,
                             description="comma-separated hard ratios in (0, 1) for the threshold table")
    cos_precision: Literal["auto", "fp16", "fp32"] = Field(
        "auto", description="cos arithmetic: auto = fp16 for published (B18), fp32 for corrected")

    @field_validator("hard_ratios")
    @classmethod
    def _ratios(cls, v: str) -> str:
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if not parts or not all(re.fullmatch(r"\d*\.?\d+", p) and 0 < float(p) < 1 for p in parts):
            raise ValueError("hard_ratios must be comma-separated numbers strictly between 0 and 1")
        return ",".join(parts)


def run(config: SaturationConfig, emit: Emitter) -> None:
    import torch

    from core.experiments.base import resolve_device, seed_everything
    from core.smollm2.alpaca import load_records, pipeline_c
    from core.smollm2.model import EXPECTED_BASE_PARAMS, count_params, load_base
    from core.smollm2.ops import STAT_KEYS, cos_stats, quantile, run_frozen

    seed_everything(config.seed)
    device = resolve_device(config.device)
    published = config.variant == "published"
    cuda = device.startswith("cuda")
    model_dtype = torch.float16 if (published and cuda) else torch.float32
    fp16_cos = config.cos_precision == "fp16" or (config.cos_precision == "auto" and published)
    cos_dtype = torch.float16 if fp16_cos else torch.float32

    lm, tok, spec = load_base(config.model, device=device, dtype=model_dtype)
    records = load_records(config.data_file)
    data = pipeline_c(tok, records, num_samples=config.num_samples, seq_len=config.seq_len,
                      batch_size=config.batch_size, val_ratio=0.0, seed=config.data_seed)
    n_layers = lm.config.num_hidden_layers
    if config.threshold_layer > n_layers:
        raise ValueError(f"threshold_layer {config.threshold_layer} > the model's {n_layers} layers")
    params = count_params(lm)
    info = dict(
        params=params, trainable_params=0, data_source=data.description, model_source=spec.source,
        quirks=["B18"] if fp16_cos else [], device=device, model_dtype=str(model_dtype).replace("torch.", ""),
        cos_dtype=str(cos_dtype).replace("torch.", ""),
    )
    if n_layers == 30 and lm.config.hidden_size == 576:
        info["params_expected"] = EXPECTED_BASE_PARAMS
        if params != EXPECTED_BASE_PARAMS:
            emit.log(f"WARNING: base model has {params} parameters, report 003 expects {EXPECTED_BASE_PARAMS}")
    emit.info(**info)
    if data.train.shape[0] == 0:
        raise ValueError("no complete batch of windows: raise num_samples or lower batch_size/seq_len")
    x, y = data.train[:, :-1], data.train[:, 1:]
    fast = config.extract == "fast" and cuda  # the compiled bf16 path is for GPUs; on CPU it stays exact
    if fast:
        emit.info(extract="fast: bf16 autocast + compiled layers")
    bp = run_frozen(lm, input_ids=x, labels=y, rule="penultimate", batch_size=config.batch_size,
                    cos_dtype=cos_dtype, layer_cos=True, layer_cos_dtype=cos_dtype, store_device="cpu",
                    autocast=torch.bfloat16 if fast else None, compiled=fast)
    assert bp.layer_cos is not None
    tokens = int(x.numel())
    emit.log(f"{tokens} tokens, {x.shape[0]} windows, {n_layers} layers; extraction {bp.tokens_per_s:.0f} tokens/s")

    per_layer: dict[int, dict[str, float]] = {}
    rows = []
    for i in range(n_layers):
        st = cos_stats(bp.layer_cos[i])
        per_layer[i + 1] = st
        rows.append({"layer": i + 1, **st})
    emit.layers(None, per_layer)
    emit.table("saturation", rows)

    ratios = [float(r) for r in config.hard_ratios.split(",")]
    chosen = bp.layer_cos[config.threshold_layer - 1].reshape(-1)
    th_rows = []
    summary: dict[str, float] = {}
    for r in ratios:
        tau = quantile(chosen, r)
        frac = 100.0 * float((chosen < tau).sum()) / chosen.numel()
        th_rows.append({"hard_ratio": r, "layer": config.threshold_layer, "threshold": tau, "hard_pct_strict": frac})
        summary[f"threshold_{round(r * 100)}pct"] = tau
    emit.table("thresholds", th_rows)

    means = [per_layer[i]["cos_mean"] for i in range(1, n_layers + 1)]
    inner = list(range(3, n_layers))  # the "middle": without layers 1-2 (input transition) and the last one
    most_active = min(inner, key=lambda i: means[i - 1]) if inner else 1
    summary.update({
        "tokens": float(tokens),
        "layers": float(n_layers),
        "exit_layer_cos_mean": per_layer[config.threshold_layer]["cos_mean"],
        "exit_layer_cos_std": per_layer[config.threshold_layer]["cos_std"],
        "first_layer_cos_mean": means[0],
        "last_layer_cos_mean": means[-1],
        "most_active_mid_layer": float(most_active),
        "most_active_mid_layer_cos_mean": means[most_active - 1],
        "extract_tokens_per_s": bp.tokens_per_s,
        "extract_seconds": bp.seconds,
        "params": float(params),
    })
    assert set(STAT_KEYS) <= set(per_layer[1])
    emit.summary(summary)


EXPERIMENT = Experiment(
    name="saturation",
    description="SmolLM2-135M per-layer cos_sim of consecutive hidden states, and exit thresholds (report 003)",
    config_cls=SaturationConfig,
    run=run,
    report="003",
    headline="exit_layer_cos_mean",
    lower_is_better=False,
)
