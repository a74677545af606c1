"""``lpt``: report 004 Exp 4, training methods at 4 layers: Standard vs IRT vs LPT (sum / weighted).

d 64, 4 blocks, 4 heads, init I-A, data pipeline A (WikiText-2 characters), AdamW 1e-3 wd 0.01, clip 1,
batch 16, seq 64, max 30 epochs, patience 5. Report: Standard 275K 10.90 @6; IRT 279K 11.84 @5;
LPT(sum) 275K 10.27 @10; LPT(weighted) 275K 10.43 @7 (trained on train.txt[:20000]).

Every epoch emits train_loss (the optimised objective: Σ of per-layer CEs for lpt-sum), train_final_loss
(last block's CE, comparable across methods), val_loss, val_ppl, and per-layer *training* CEs L1…L4 via
``emit.layers`` (for standard / irt the shared head is scored on each block's output without being
trained on it). Parameters: 275,072 (IRT 279,168).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.wikitext_common import WikiTextCharConfig


class LPTConfig(WikiTextCharConfig):
    method: Literal["standard", "irt", "lpt-sum", "lpt-weighted"] = Field(
        "lpt-sum",
        description=(
            "standard: loss on the last block; irt: iterative refinement over segments; lpt-sum: Σ of every "
            "block's CE through the shared head; lpt-weighted: Σ l·CE_l"
        ),
    )
    n_layers: int = Field(4, ge=1, le=48, description="transformer blocks")
    segments: int = Field(2, ge=1, le=16, description="IRT segments per batch (method irt only)")


def run(config: LPTConfig, emit: Emitter) -> None:
    from core.models.irt import IRTCharLM, StackedCharLM
    from core.training.charlm import CharLMPlan, run_char_lm

    if config.method == "irt":
        def build():
            return IRTCharLM(97, config.d_model, config.n_layers, config.n_heads, config.seq_len)
    else:
        def build():
            return StackedCharLM(97, config.d_model, config.n_layers, config.n_heads)

    weighting = {"standard": "last", "irt": "last", "lpt-sum": "sum", "lpt-weighted": "weighted"}[config.method]
    run_char_lm(
        config,
        emit,
        CharLMPlan(
            build=build,
            segments=config.segments if config.method == "irt" else 1,
            weighting=weighting,
            log_layers=True,
            quirks=["B19"],
            info={"model": config.method, "method": config.method},
        ),
    )


EXPERIMENT = Experiment(
    name="lpt",
    description="Report 004 Exp 4: 4-layer char LM on WikiText-2, Standard vs IRT vs LPT, per-layer losses",
    config_cls=LPTConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
