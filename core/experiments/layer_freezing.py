"""``layer-freezing``: report 004 Exp 5, growing a trained 3-block model to 4 blocks (spec 2, Exp 5).

Stages (fixed ids, so runs that do a subset still compare stage by stage):

1. ``3-layer (base)``: seed, build a 3-block model (init I-B), train.
2. ``4-layer (frozen)``: re-seed, rebuild the 3-block model, load the stage-1 weights (last or best),
   append a 4th block (default init, then truncated normal 0.02), freeze the embedding and blocks 1–3
   (the head stays trainable), train a fresh AdamW over the trainable parameters.
3. ``4-layer (full)``: as stage 2 without freezing.
4. ``4-layer (scratch)``: re-seed, a fresh 4-block model, train.

Published numbers (toy-fox, last weights): 9.98 @3, 25.08 @1 (67,584 trainable), 24.62 @1, 9.88 @2.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.toy_char_common import ToyCharConfig

STAGES = {1: "3-layer (base)", 2: "4-layer (frozen)", 3: "4-layer (full)", 4: "4-layer (scratch)"}
_STAGE_KEYS = {1: "base", 2: "frozen", 3: "full", 4: "scratch"}
_PHASES = {"all": (1, 2, 3, 4), "grow": (1, 2, 3), "scratch": (4,)}


class LayerFreezingConfig(ToyCharConfig):
    initial_layers: int = Field(3, ge=1, le=64, description="blocks of the base model (stage 1)")
    added_layers: int = Field(1, ge=1, le=64, description="blocks appended in the frozen/full stages")
    phase: Literal["all", "grow", "scratch"] = Field(
        "all", description="stages to run: all (1-4), grow (base, frozen, full), scratch (4 only)"
    )


def run(config: LayerFreezingConfig, emit: Emitter) -> None:
    import torch

    from core.experiments.base import seed_everything
    from core.experiments.toy_char_common import load_data, setup, train_phase, weights_note
    from core.models.char_lm import CharLM, char_lm_params, count_params

    device = setup(config)
    data = load_data(config)
    final_layers = config.initial_layers + config.added_layers
    stages = _PHASES[config.phase]

    def build(n_layers: int) -> CharLM:
        seed_everything(config.seed)
        return CharLM(data.vocab_size, config.d_model, config.n_heads, n_layers, init="I-B").to(device)

    emit.info(
        params=char_lm_params(data.vocab_size, config.d_model, final_layers),
        trainable_params=char_lm_params(data.vocab_size, config.d_model, final_layers),
        data_source=data.source,
        quirks=config.quirks(),
        weights=config.resolved_weights(),
        vocab_size=data.vocab_size,
        train_batches=data.n_train_batches,
        val_batches=data.n_val_batches,
        stages=[STAGES[s] for s in stages],
    )

    results: dict[int, float] = {}
    base_state: dict[str, torch.Tensor] | None = None
    for stage in stages:
        emit.stage(stage, STAGES[stage], epochs=config.max_epochs)
        if stage == 1:
            model = build(config.initial_layers)
        elif stage in (2, 3):
            assert base_state is not None
            model = build(config.initial_layers)  # same RNG draws as stage 1, then the new blocks' draws
            model.load_state_dict(base_state)
            for _ in range(config.added_layers):
                model.add_block(init_std=0.02)
            if stage == 2:
                model.freeze(embedding=True, blocks=range(config.initial_layers))
        else:
            model = build(final_layers)
        params, trainable = count_params(model), count_params(model, trainable_only=True)
        emit.log(f"{STAGES[stage]}: {params:,} parameters, {trainable:,} trainable")
        result = train_phase(model, data, config, emit, device, stage=stage)
        if stage == 1:
            base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            emit.log(f"stage 2-3 start from the base model's {weights_note(result, config)}")
        results[stage] = result.best_val_ppl
        emit.summary(
            {
                "best_val_ppl": result.best_val_ppl,
                "best_epoch": float(result.best_epoch),
                "epochs_run": float(result.epochs_run),
                "params": float(params),
                "trainable_params": float(trainable),
                "layers": float(len(model.blocks)),
            },
            stage=stage,
        )

    summary = {f"{_STAGE_KEYS[s]}_ppl": ppl for s, ppl in results.items()}
    summary["best_val_ppl"] = min(results.values())
    if 1 in results and 3 in results:
        summary["full_vs_base_pct"] = 100.0 * (results[3] - results[1]) / results[1]
    if 2 in results and 3 in results:
        summary["frozen_vs_full_pct"] = 100.0 * (results[2] - results[3]) / results[3]
    emit.summary(summary)


EXPERIMENT = Experiment(
    name="layer-freezing",
    description="Exp 5: grow a trained 3-block char LM to 4 blocks (frozen / full) vs 4 blocks from scratch",
    config_cls=LayerFreezingConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
