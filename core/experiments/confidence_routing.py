"""``confidence-routing``: report 004 Exp 10, the confidence-routed transformer and its plain baselines.

routed: embedding → blocks 1–2 → shallow logits = Head(h_2) → blocks 3–4 → deep logits = Head(h_4), one
shared head, init I-A; loss 0.5·CE(shallow) + 0.5·CE(deep); at eval each token takes the shallow logits when
their max softmax ≥ τ (0.8), else the deep ones; early stopping (patience 5) on that routed val PPL.
std4 / std2: plain 4- and 2-block models (init I-A), last-block loss, same loop. A comparison is three runs.

Report (published variant, toy text): Routed 266K 12.98, acc 50.4 %, compute 76.2 % (best epoch 1, shallow
47.7 %); Std-4 266K 16.87, 46.9 %; Std-2 135K 15.39, 49.2 %, 50 %. Threshold table τ = 0.5…0.9 on the final
(epoch-6) weights: PPL 40.63/40.45/40.07/40.31/40.31, shallow 91.1/87.0/83.7/80.4/76.4 % (spec F6).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.experiments.base import Emitter, Experiment
from core.experiments.routing_common import RoutingConfig


class ConfidenceRoutingConfig(RoutingConfig):
    model: Literal["routed", "std4", "std2"] = Field(
        "routed",
        description=(
            "routed: shallow exit at --shallow-exit, deep exit at --n-layers, loss weights below; "
            "std4: plain --n-layers-block model; std2: plain --shallow-exit-block model (last-block loss)"
        ),
    )
    shallow_loss_weight: float = Field(
        0.5, ge=0.0, le=100.0, description="routed: weight of CE(shallow) in the training loss"
    )
    deep_loss_weight: float = Field(
        0.5, ge=0.0, le=100.0, description="routed: weight of CE(deep) in the training loss"
    )

    @model_validator(mode="after")
    def _some_loss(self) -> ConfidenceRoutingConfig:
        if self.shallow_loss_weight == 0 and self.deep_loss_weight == 0:
            raise ValueError("at least one of the shallow and deep loss weights must be positive")
        return self


def run(config: ConfidenceRoutingConfig, emit: Emitter) -> None:
    from core.training.routing import RoutingPlan, run_routing

    if config.model == "routed":
        weights = {config.shallow_exit: config.shallow_loss_weight, config.n_layers: config.deep_loss_weight}
        plan = RoutingPlan(
            n_layers=config.n_layers, loss_weights={e: w for e, w in weights.items() if w > 0},
            routed=True, shallow_exit=config.shallow_exit, reference_layers=config.n_layers,
            info={"model": "routed"},
        )
    else:
        n_layers = config.n_layers if config.model == "std4" else config.shallow_exit
        plan = RoutingPlan(
            n_layers=n_layers, loss_weights={n_layers: 1.0}, routed=False,
            reference_layers=config.n_layers, info={"model": config.model},
        )
    run_routing(config, emit, plan)


EXPERIMENT = Experiment(
    name="confidence-routing",
    description="Report 004 Exp 10: confidence-routed 2/4-block transformer vs plain Std-4 / Std-2, threshold sweep",
    config_cls=ConfidenceRoutingConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
