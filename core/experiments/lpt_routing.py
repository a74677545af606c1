"""``lpt-routing``: report 004 Exp 11, LPT (layer-wise losses) combined with confidence routing.

The routed 4-block model of Exp 10 (same init order, so ``--loss standard`` reproduces Exp 10's routed run
bit for bit), trained with one of three objectives through the shared head:

- standard: 0.5·CE_2 + 0.5·CE_4 (Exp 10);
- full-lpt: CE_1 + CE_2 + CE_3 + CE_4 (sum, unnormalised);
- lpt-ra (routing-aware): 0.5·CE_1 + 1.0·CE_2 + 0.5·CE_3 + 1.0·CE_4 (unnormalised).

``--normalize-loss`` divides by the sum of the weights (what the upstream ``_fixed`` script did: /4, /3).
Report (published, best epoch 1): Std 12.98 / 50.4 % / 47.7 % / 76.2 %; Full LPT 13.59 / 51.1 % / 47.3 % /
76.4 %; LPT+RA 13.42 / 50.9 % / 47.6 % / 76.2 %; threshold tables on the final (epoch-6) weights.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.routing_common import RoutingConfig

LOSS_SCHEMES = ("standard", "full-lpt", "lpt-ra")


class LPTRoutingConfig(RoutingConfig):
    loss: Literal["standard", "full-lpt", "lpt-ra"] = Field(
        "standard",
        description=(
            "standard: 0.5·CE_2 + 0.5·CE_4; full-lpt: CE_1 + CE_2 + CE_3 + CE_4; "
            "lpt-ra: 0.5·CE_1 + CE_2 + 0.5·CE_3 + CE_4 (exits at the shallow and the last block weigh 1)"
        ),
    )
    normalize_loss: bool = Field(False, description="divide the objective by the sum of its weights (upstream _fixed)")
    thresholds: tuple[float, ...] = Field(
        (0.5, 0.7, 0.8, 0.9),
        min_length=0,
        max_length=64,
        description="thresholds of the post-training sweep table (each in (0, 1]); the report's Exp 11 rows",
    )


def loss_weights(loss: str, n_layers: int, shallow_exit: int, normalize: bool = False) -> dict[int, float]:
    """Exit → weight of its CE in the objective (exits 1-based)."""
    if loss == "standard":
        weights = {shallow_exit: 0.5, n_layers: 0.5}
    elif loss == "full-lpt":
        weights = {e: 1.0 for e in range(1, n_layers + 1)}
    elif loss == "lpt-ra":
        weights = {e: (1.0 if e in (shallow_exit, n_layers) else 0.5) for e in range(1, n_layers + 1)}
    else:
        raise ValueError(f"unknown loss scheme {loss!r} ({', '.join(LOSS_SCHEMES)})")
    if normalize:
        total = sum(weights.values())
        weights = {e: w / total for e, w in weights.items()}
    return weights


def run(config: LPTRoutingConfig, emit: Emitter) -> None:
    from core.training.routing import RoutingPlan, run_routing

    plan = RoutingPlan(
        n_layers=config.n_layers,
        loss_weights=loss_weights(config.loss, config.n_layers, config.shallow_exit, config.normalize_loss),
        routed=True,
        shallow_exit=config.shallow_exit,
        reference_layers=config.n_layers,
        info={"model": "routed", "loss": config.loss},
    )
    run_routing(config, emit, plan)


EXPERIMENT = Experiment(
    name="lpt-routing",
    description="Report 004 Exp 11: confidence-routed transformer trained with standard / full-LPT / LPT-RA losses",
    config_cls=LPTRoutingConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
