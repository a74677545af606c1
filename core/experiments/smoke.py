"""``smoke``: a seconds-long synthetic run that exercises the whole pipeline.

It trains nothing: it emits a decaying loss curve and per-layer losses so that the registry,
scheduler, worker, CLI and TUI can be checked end to end without torch. Options let tests
make it slow, noisy (stray prints) or fail on purpose.
"""

from __future__ import annotations

import math
import sys
import time

from pydantic import Field

from core.experiments.base import Emitter, Experiment, ExperimentConfig


class SmokeConfig(ExperimentConfig):
    epochs: int = Field(3, ge=1, le=10_000, description="number of epochs to emit")
    layers: int = Field(4, ge=0, le=64, description="per-layer rows per epoch")
    stages: int = Field(1, ge=1, le=16, description="stages (more than one makes a staged run)")
    sleep: float = Field(0.0, ge=0.0, le=60.0, description="seconds to wait per epoch")
    fail_at_epoch: int = Field(0, ge=0, description="raise an error at this epoch (0: never)")
    noisy: bool = Field(False, description="print stray lines to stdout and stderr")


def run(config: SmokeConfig, emit: Emitter) -> None:
    emit.info(params=1000 * config.layers, data_source="synthetic", quirks=[])
    best = math.inf
    for stage in range(1, config.stages + 1):
        stage_id = stage if config.stages > 1 else 0
        if config.stages > 1:
            emit.stage(stage, f"stage {stage}", epochs=config.epochs)
        for epoch in range(1, config.epochs + 1):
            if config.noisy:
                print(f"stray print {{not json}} epoch {epoch}")
                print("stray stderr line", file=sys.stderr)
            if config.fail_at_epoch == epoch:
                raise RuntimeError(f"smoke failure requested at epoch {epoch}")
            loss = 2.0 + 3.0 * math.exp(-0.5 * epoch) + 0.1 * stage
            val_ppl = math.exp(loss + 0.05)
            best = min(best, val_ppl)
            emit.epoch(
                epoch, {"train_loss": loss, "val_loss": loss + 0.05, "val_ppl": val_ppl},
                stage=stage_id, total=config.epochs,
                layers={i: {"loss": loss + 0.3 * (config.layers - i)} for i in range(1, config.layers + 1)},
            )
            if config.sleep:
                time.sleep(config.sleep)
    emit.summary({"best_val_ppl": best, "params": 1000.0 * config.layers})


EXPERIMENT = Experiment(
    name="smoke",
    description="Synthetic metrics in seconds: checks the registry, scheduler and dashboard",
    config_cls=SmokeConfig,
    run=run,
)
