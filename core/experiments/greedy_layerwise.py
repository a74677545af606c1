"""``greedy-layerwise``: report 004 Exp 6, greedy layer-wise training vs a 4-layer model from scratch.

``--method greedy`` (default): start with zero blocks (init I-C); for L = 1..n_layers add a block, freeze
every existing block (head trainable), train a new AdamW over the trainable parameters until early
stopping: stages 1..n. Then unfreeze everything and fine-tune at ``--finetune-lr``: stage n+1.
``--method scratch``: the baseline, n blocks added at once and trained together (one unstaged run).

Report (published variant, toy text, CPU): layer 1: 69,504 params / 67,584 trainable 10.82 @3;
2: 135,168 / 67,584 24.81 @1; 3: 200,832 / 67,584 81.43 @1; 4: 266,496 / 67,584 218.48 @1;
Greedy + fine-tune 423.65 (best *within* the fine-tune stage, which starts from stage 4's last weights:
F9); 4-layer scratch 9.92. Published quirks: B11 toy text, B12 last weights carried on, B13 the first
added block also freezes the embedding (it stays random). The run's headline ``best_val_ppl`` is the final
stage's (fine-tune when on); ``greedy_best_val_ppl`` is the last greedy stage's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.growing_common import GrowingConfig


class GreedyLayerwiseConfig(GrowingConfig):
    method: Literal["greedy", "scratch"] = Field(
        "greedy",
        description="greedy: add and train one block at a time, earlier blocks frozen, then fine-tune; "
        "scratch: all blocks trained together from the start",
    )
    finetune: bool = Field(True, description="greedy: unfreeze everything and fine-tune after the last block")
    finetune_lr: float = Field(1e-4, gt=0.0, le=1.0, description="AdamW learning rate of the fine-tune stage")


def _layers(n: int) -> str:
    return f"{n} layer" if n == 1 else f"{n} layers"


def run(config: GreedyLayerwiseConfig, emit: Emitter) -> None:
    from core.experiments.base import seed_everything
    from core.models.growable import GrowableCharLM
    from core.training.growing import StageCheckpoints, load_data, setup_torch, train_stage

    device = setup_torch(config)
    published = config.variant == "published"
    quirks = ["B11", "B12", "B13"] if published and config.method == "greedy" else (["B11", "B12"] if published else [])
    data = load_data(config)
    emit.info(
        method=config.method, data_source=data.source, quirks=quirks, weights="last" if published else "best",
        init="I-C", **data.info,
    )

    seed_everything(config.seed)
    model = GrowableCharLM(data.vocab_size, config.d_model, config.n_heads, config.init_std).to(device)
    progress = StageCheckpoints(emit)  # a checkpoint every epoch and stage; a resumed run continues
    common = dict(
        weight_decay=config.weight_decay, clip=config.clip, max_epochs=config.max_epochs,
        patience=config.patience, lpt=False, restore_best=not published, device=device,
        progress=progress,
    )

    if config.method == "scratch":
        for _ in range(config.n_layers):
            model.add_block()
        params, trainable = model.param_counts()
        emit.info(params=params, trainable_params=trainable)
        result = progress.finished(0, model) or train_stage(model, data, emit, stage=0, lr=config.lr, **common)
        emit.log(f"scratch {_layers(config.n_layers)}: best val PPL {result.best_val_ppl:.2f} @{result.best_epoch}")
        return

    result = None
    for k in range(1, config.n_layers + 1):
        model.add_block(freeze_existing=True, freeze_embedding=published and k == 1)
        params, trainable = model.param_counts()
        emit.info(params=params, trainable_params=trainable)
        result = progress.finished(k, model)  # a resumed run skips the stages it had finished
        if result is None:
            emit.stage(k, _layers(k), epochs=config.max_epochs)
            result = train_stage(model, data, emit, stage=k, lr=config.lr, **common)
        emit.log(
            f"greedy {_layers(k)}: {params:,} params / {trainable:,} trainable, "
            f"best val PPL {result.best_val_ppl:.2f} @{result.best_epoch} (stopped @{result.epochs})"
        )
    assert result is not None
    greedy = result
    if config.finetune:
        model.unfreeze_all()
        params, trainable = model.param_counts()
        emit.info(params=params, trainable_params=trainable)
        result = progress.finished(config.n_layers + 1, model)
        if result is None:
            emit.stage(config.n_layers + 1, "fine-tune", epochs=config.max_epochs)
            result = train_stage(model, data, emit, stage=config.n_layers + 1, lr=config.finetune_lr, **common)
        emit.log(f"greedy + fine-tune: best val PPL {result.best_val_ppl:.2f} @{result.best_epoch}")
    emit.summary({k: v for k, v in result.metrics().items() if k != "epochs"} | {
        "greedy_best_val_ppl": greedy.best_val_ppl,
    })


EXPERIMENT = Experiment(
    name="greedy-layerwise",
    description="Report 004 Exp 6: greedy layer-wise growth (earlier blocks frozen) + fine-tune, or 4 layers from scratch",
    config_cls=GreedyLayerwiseConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
