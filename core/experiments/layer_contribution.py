"""``layer-contribution``: report 004 Exp 8, per-layer loss and residual norm by token difficulty.

Train a 4-block char LM (init I-B, last-block loss, early stopping), then on every val token:
CE of the shared head on each block output (the head was only trained on the last one), residual
norm ‖h_l − h_{l−1}‖₂ (h_0 = embedding). Difficulty = final-layer CE: Easy ≤ its 25th percentile,
Hard ≥ its 75th (numpy linear percentiles), Medium the rest. Also (L1 − L_N)/L1 per class and the
Pearson correlation of each layer's norm with the final CE.

Published (toy-fox, last epoch-7 weights): counts 1,025 / 2,041 / 1,030, thresholds 0.04 / 6.38,
Easy losses 0.18/0.15/0.10/0.03, Hard 6.01/6.06/6.14/6.95, improvement +85.4 % / −15.8 %.
"""

from __future__ import annotations

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.toy_char_common import ToyCharConfig

CLASSES = ("Easy", "Medium", "Hard")


class LayerContributionConfig(ToyCharConfig):
    n_layers: int = Field(4, ge=1, le=64, description="transformer blocks")
    easy_percentile: float = Field(25.0, gt=0.0, lt=100.0, description="Easy: final CE <= this percentile")
    hard_percentile: float = Field(75.0, gt=0.0, lt=100.0, description="Hard: final CE >= this percentile")


def analyse(outputs: dict, easy_pct: float = 25.0, hard_pct: float = 75.0) -> dict:
    """The Exp 8 tables from :func:`collect_val_outputs` arrays (pure numpy; usable on saved outputs)."""
    import numpy as np

    ce, norm = outputs["ce"], outputs["norm"]
    n_layers = ce.shape[0]
    final = ce[-1]
    easy_threshold = float(np.percentile(final, easy_pct))
    hard_threshold = float(np.percentile(final, hard_pct))
    easy = final <= easy_threshold
    hard = final >= hard_threshold
    masks = {"Easy": easy, "Medium": ~easy & ~hard, "Hard": hard}
    by_layer = []
    for name in CLASSES:
        mask = masks[name]
        for layer in range(n_layers):
            by_layer.append(
                {
                    "class": name,
                    "layer": layer + 1,
                    "loss": float(ce[layer][mask].mean()) if mask.any() else float("nan"),
                    "residual_norm": float(norm[layer][mask].mean()) if mask.any() else float("nan"),
                }
            )
    classes = [
        {
            "class": "Easy",
            "tokens": int(easy.sum()),
            "rule": f"final CE <= p{easy_pct:g}",
            "threshold": easy_threshold,
        },
        {"class": "Medium", "tokens": int(masks["Medium"].sum()), "rule": "the rest", "threshold": float("nan")},
        {
            "class": "Hard",
            "tokens": int(hard.sum()),
            "rule": f"final CE >= p{hard_pct:g}",
            "threshold": hard_threshold,
        },
    ]
    improvement = []
    for name in CLASSES:
        first = next(r["loss"] for r in by_layer if r["class"] == name and r["layer"] == 1)
        last = next(r["loss"] for r in by_layer if r["class"] == name and r["layer"] == n_layers)
        improvement.append(
            {"class": name, "first_layer_loss": first, "last_layer_loss": last,
             "improvement_pct": 100.0 * (first - last) / first}
        )
    correlation = [
        {"layer": layer + 1, "pearson_r": float(np.corrcoef(norm[layer], final)[0, 1])} for layer in range(n_layers)
    ]
    per_layer = {
        layer + 1: {
            "loss": float(ce[layer].mean()),
            "residual_norm": float(norm[layer].mean()),
            "norm_final_ce_corr": correlation[layer]["pearson_r"],
            **{f"loss_{n.lower()}": by_layer[i * n_layers + layer]["loss"] for i, n in enumerate(CLASSES)},
            **{f"residual_norm_{n.lower()}": by_layer[i * n_layers + layer]["residual_norm"] for i, n in enumerate(CLASSES)},
        }
        for layer in range(n_layers)
    }
    return {
        "difficulty_classes": classes,
        "difficulty_by_layer": by_layer,
        "loss_improvement": improvement,
        "norm_loss_correlation": correlation,
        "per_layer": per_layer,
        "tokens": int(final.size),
    }


def run(config: LayerContributionConfig, emit: Emitter) -> None:
    from core.experiments.toy_char_common import analysis_summary, collect_val_outputs, train_analysis_model

    if config.easy_percentile >= config.hard_percentile:
        raise ValueError("easy_percentile must be below hard_percentile")
    model, data, result, device = train_analysis_model(config, emit, config.n_layers)
    tables = analyse(collect_val_outputs(model, data.val, device), config.easy_percentile, config.hard_percentile)
    emit.layers(None, tables["per_layer"])
    for name in ("difficulty_classes", "difficulty_by_layer", "loss_improvement", "norm_loss_correlation"):
        emit.table(name, tables[name])
    improvement = {r["class"]: r["improvement_pct"] for r in tables["loss_improvement"]}
    emit.summary(
        {
            **analysis_summary(config, model, result, tables["tokens"]),
            "easy_improvement_pct": improvement["Easy"],
            "hard_improvement_pct": improvement["Hard"],
        }
    )


EXPERIMENT = Experiment(
    name="layer-contribution",
    description="Exp 8: per-layer loss and residual norm of a 4-block char LM by token difficulty",
    config_cls=LayerContributionConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
