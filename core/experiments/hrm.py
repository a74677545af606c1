"""``hrm``: report 004 Exp 1, the original two-module HRM on WikiText-2 characters.

d 64, 4 heads, one block per level, N 1, T 2, 2 segments per batch (an optimizer step after each, states
detached between), 1-step gradient, unused Q-head (quirk B15); 152,064 params. ``--update sequential``
(default) is the original 1b8b9ec rule (H sees the fresh L state, not the embedding);
``parallel`` is the 8ab75a3 generalisation used from Exp 2 on (quirk B14). Data pipeline A, AdamW 1e-3
wd 0.01, clip 1, batch 16, max 100 epochs, **patience 1**. Every epoch also logs train_ppl (a full eval
pass over the train loader); the initial train/val PPLs are recorded before training.
Report: HRM 11.31 @7 (trained on train.txt[:20000]). The LCT+OACD rows have no code upstream.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.fields import MaxEpochs, Patience
from core.experiments.wikitext_common import WikiTextCharConfig


class HRMConfig(WikiTextCharConfig):
    update: Literal["sequential", "parallel"] = Field(
        "sequential",
        description="sequential: original rule (Exp 1); parallel: generalised rule of Exp 2/3 (quirk B14)",
    )
    segments: int = Field(2, ge=1, le=16, description="segments per batch (optimizer step after each)")
    hrm_cycles: int = Field(1, ge=1, le=16, description="high-level cycles N")
    hrm_t: int = Field(2, ge=1, le=16, description="low-level steps per cycle T (H updates every T steps)")

    max_epochs: MaxEpochs = 100
    patience: Patience = 1


def run(config: HRMConfig, emit: Emitter) -> None:
    from core.models.hrm import HRM
    from core.training.charlm import CharLMPlan, run_char_lm

    def build():
        return HRM(
            97, config.d_model, config.n_heads, config.seq_len, config.hrm_cycles, config.hrm_t, update=config.update
        )

    quirks = (["B14"] if config.update == "parallel" else []) + ["B15", "B19"]
    run_char_lm(
        config,
        emit,
        CharLMPlan(
            build=build, segments=config.segments, train_ppl=True, quirks=quirks,
            info={"model": f"hrm-{config.update}", "update": config.update},
        ),
    )


EXPERIMENT = Experiment(
    name="hrm",
    description="Report 004 Exp 1: the original two-module HRM (152K) char LM on WikiText-2",
    config_cls=HRMConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
