"""``irt``: report 004 Exp 3, separating Iterative Refinement Training from the hierarchy (1 layer).

Standard transformer (d 64, 1 block, 78,080 params), IRT transformer (same plus a learned initial state,
82,176; 2 segments, an optimizer step per segment), HRM (generalised parallel update, d 48 to match the
budget, N 1, T 2, 89,472). Data pipeline A, AdamW 1e-3 wd 0.01, clip 1, batch 16, max 30, patience 5.
Report: Standard 12.17 @11; IRT 11.52 @6; HRM 11.68 @14 (trained on train.txt[:20000]).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.wikitext_common import WikiTextCharConfig


class IRTConfig(WikiTextCharConfig):
    model: Literal["standard", "irt", "hrm"] = Field(
        "irt",
        description="standard: 1-block transformer; irt: same with iterative refinement over segments; "
        "hrm: generalised two-level HRM at d 48",
    )
    hrm_d_model: int = Field(48, ge=8, le=2048, description="width of the HRM (48 matches the parameter budget)")
    n_layers: int = Field(1, ge=1, le=48, description="blocks of the standard and IRT transformers")
    segments: int = Field(2, ge=1, le=16, description="segments per batch (irt and hrm)")
    hrm_cycles: int = Field(1, ge=1, le=16, description="HRM high-level cycles N")
    hrm_t: int = Field(2, ge=1, le=16, description="HRM low-level steps per cycle T (H updates every T steps)")

    def rope_widths(self) -> tuple[int, ...]:
        return (self.d_model, self.hrm_d_model)


def run(config: IRTConfig, emit: Emitter) -> None:
    from core.models.hrm import HRM
    from core.models.irt import IRTCharLM, StackedCharLM
    from core.training.charlm import CharLMPlan, run_char_lm

    quirks = ["B19"]
    if config.model == "standard":
        def build():
            return StackedCharLM(97, config.d_model, config.n_layers, config.n_heads)
    elif config.model == "irt":
        def build():
            return IRTCharLM(97, config.d_model, config.n_layers, config.n_heads, config.seq_len)
    else:
        quirks = ["B14", "B15", "B19"]

        def build():
            return HRM(
                97, config.hrm_d_model, config.n_heads, config.seq_len, config.hrm_cycles, config.hrm_t,
                update="parallel",
            )

    run_char_lm(
        config,
        emit,
        CharLMPlan(
            build=build,
            segments=config.segments,
            weighting="last",
            log_layers=config.model != "hrm" and config.n_layers > 1,
            quirks=quirks,
            info={"model": config.model},
        ),
    )


EXPERIMENT = Experiment(
    name="irt",
    description="Report 004 Exp 3: 1-layer Standard vs IRT vs HRM (d 48) char LMs on WikiText-2",
    config_cls=IRTConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
