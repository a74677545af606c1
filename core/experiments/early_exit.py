"""``early-exit``: report 004 Exp 9, can layer-1 confidence decide an early exit? (spec 2, Exp 9).

Train a 4-block char LM (init I-B, last-block loss, early stopping), then on every val token compare
the shared head on block 1 with the last block: confidence = max softmax of the layer-1 logits.
For each threshold τ a token "exits" at layer 1 when confidence ≥ τ:

- exit rate = #exit / N; accuracies of layer 1 and of the last layer on the exited tokens;
- ``agreement_pct`` ("L1==L4"): exited tokens whose layer-1 *correctness* equals the last layer's
  (both right or both wrong), not prediction equality (spec F8);
- adaptive accuracy = (correct at layer 1 among exited + correct at the last layer among the rest) / N;
- compute % = (n_exit · 1/L + n_continue) / N (an exit is charged 1 of L layers).

The adaptive strategy's τ is the *first strict* maximum of adaptive accuracy over the scanned thresholds.
Published (toy-fox, last epoch-7 weights): corr 0.9549; confidence 0.76 vs 0.52; exit 65.9/63.5/58.0/8.3 %
at 0.5/0.7/0.8/0.9; Always-L1 44.2 % @25 %, Always-L4 48.2 %, Adaptive(0.80) 48.2 % @56.5 %; 91.7 %.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from core.experiments.base import Emitter, Experiment
from core.experiments.toy_char_common import ToyCharConfig

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


class EarlyExitConfig(ToyCharConfig):
    n_layers: int = Field(4, ge=2, le=64, description="transformer blocks (exit after block 1 or run all)")
    thresholds: tuple[float, ...] = Field(
        DEFAULT_THRESHOLDS,
        min_length=1,
        max_length=64,
        description="layer-1 confidence thresholds to scan, each in (0, 1]; the adaptive strategy takes the "
        "first that maximises accuracy",
    )

    @field_validator("thresholds")
    @classmethod
    def _in_unit_interval(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < t <= 1.0 for t in value):
            raise ValueError("every threshold must lie in (0, 1]")
        return value


def analyse(outputs: dict, thresholds=DEFAULT_THRESHOLDS) -> dict:
    """The Exp 9 tables from :func:`collect_val_outputs` arrays (pure numpy)."""
    import numpy as np

    ce, correct, conf = outputs["ce"], outputs["correct"], outputs["conf1"]
    n_layers, n = ce.shape
    first_ok, last_ok = correct[0], correct[-1]
    exit_cost = 1.0 / n_layers

    def pct(num: float, den: float) -> float:
        return 100.0 * num / den if den else float("nan")

    sweep = []
    for tau in thresholds:
        exits = conf >= tau
        n_exit = int(exits.sum())
        adaptive_correct = int(first_ok[exits].sum()) + int(last_ok[~exits].sum())
        sweep.append(
            {
                "threshold": float(tau),
                "exit_tokens": n_exit,
                "exit_rate_pct": pct(n_exit, n),
                "l1_acc_exited_pct": pct(int(first_ok[exits].sum()), n_exit),
                "last_acc_exited_pct": pct(int(last_ok[exits].sum()), n_exit),
                "agreement_pct": pct(int((first_ok[exits] == last_ok[exits]).sum()), n_exit),
                "adaptive_acc_pct": pct(adaptive_correct, n),
                "compute_pct": pct(n_exit * exit_cost + (n - n_exit), n),
            }
        )
    best = sweep[0]
    for row in sweep[1:]:
        if row["adaptive_acc_pct"] > best["adaptive_acc_pct"]:
            best = row
    strategies = [
        {"strategy": "Always L1", "threshold": float("nan"), "acc_pct": pct(int(first_ok.sum()), n),
         "compute_pct": 100.0 * exit_cost},
        {"strategy": f"Always L{n_layers}", "threshold": float("nan"), "acc_pct": pct(int(last_ok.sum()), n),
         "compute_pct": 100.0},
        {"strategy": f"Adaptive ({best['threshold']:.2f})", "threshold": best["threshold"],
         "acc_pct": best["adaptive_acc_pct"], "compute_pct": best["compute_pct"]},
    ]
    confidence = [
        {"last_layer": "correct", "tokens": int(last_ok.sum()), "mean_l1_confidence": float(conf[last_ok].mean()),
         "mean_l1_entropy": float(outputs["entropy1"][last_ok].mean())},
        {"last_layer": "wrong", "tokens": int((~last_ok).sum()), "mean_l1_confidence": float(conf[~last_ok].mean()),
         "mean_l1_entropy": float(outputs["entropy1"][~last_ok].mean())},
    ]
    return {
        "threshold_sweep": sweep,
        "strategies": strategies,
        "confidence_by_outcome": confidence,
        "best": best,
        "ce_corr": float(np.corrcoef(ce[0], ce[-1])[0, 1]),
        "l1_right_of_last_right_pct": pct(int((first_ok & last_ok).sum()), int(last_ok.sum())),
        "tokens": n,
        "per_layer": {
            layer + 1: {"loss": float(ce[layer].mean()), "acc_pct": pct(int(correct[layer].sum()), n)}
            for layer in range(n_layers)
        },
    }


def run(config: EarlyExitConfig, emit: Emitter) -> None:
    from core.experiments.toy_char_common import analysis_summary, collect_val_outputs, train_analysis_model

    model, data, result, device = train_analysis_model(config, emit, config.n_layers)
    tables = analyse(collect_val_outputs(model, data.val, device), config.thresholds)
    emit.layers(None, tables["per_layer"])
    for name in ("threshold_sweep", "strategies", "confidence_by_outcome"):
        emit.table(name, tables[name])
    conf = {r["last_layer"]: r["mean_l1_confidence"] for r in tables["confidence_by_outcome"]}
    emit.summary(
        {
            **analysis_summary(config, model, result, tables["tokens"]),
            "l1_last_ce_corr": tables["ce_corr"],
            "l1_conf_last_correct": conf["correct"],
            "l1_conf_last_wrong": conf["wrong"],
            "always_l1_acc_pct": tables["strategies"][0]["acc_pct"],
            "always_last_acc_pct": tables["strategies"][1]["acc_pct"],
            "adaptive_threshold": tables["best"]["threshold"],
            "adaptive_acc_pct": tables["best"]["adaptive_acc_pct"],
            "adaptive_compute_pct": tables["best"]["compute_pct"],
            "l1_right_of_last_right_pct": tables["l1_right_of_last_right_pct"],
        }
    )


EXPERIMENT = Experiment(
    name="early-exit",
    description="Exp 9: does layer-1 confidence of a 4-block char LM predict safe early exits?",
    config_cls=EarlyExitConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
