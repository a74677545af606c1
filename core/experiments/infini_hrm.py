"""``infini-hrm``: report 004 Exp 2, HRM vs Infini-HRM (an Infini-attention input layer).

HRM (generalised parallel update, quirk B14; d 64, N 1, T 2, 2 segments; 152,064 params) and Infini-HRM
(Embedding → Infini-attention layer → the same HRM; 168,452) with memory ``reset`` per batch or ``carry``
across the (shuffled) batches of an epoch (quirk B16). Data pipeline A, AdamW 1e-3 wd 0.01, clip 1,
batch 16, max 30 epochs, patience 3. Report: HRM 12.10; Infini-HRM reset 11.53, carry 12.03. The report's
HRM+Memory rows (193K) have no code upstream and are not an experiment here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.experiments.base import Emitter, Experiment
from core.experiments.fields import Patience
from core.experiments.wikitext_common import WikiTextCharConfig


class InfiniHRMConfig(WikiTextCharConfig):
    model: Literal["hrm", "infini-reset", "infini-carry"] = Field(
        "infini-reset",
        description="hrm: baseline; infini-reset: memory emptied every batch; "
        "infini-carry: memory carried from batch to batch within an epoch",
    )
    segments: int = Field(2, ge=1, le=16, description="segments per batch (optimizer step after each)")
    hrm_cycles: int = Field(1, ge=1, le=16, description="HRM high-level cycles N")
    hrm_t: int = Field(2, ge=1, le=16, description="HRM low-level steps per cycle T (H updates every T steps)")

    patience: Patience = 3


def run(config: InfiniHRMConfig, emit: Emitter) -> None:
    from core.models.hrm import HRM
    from core.models.infini import InfiniHRM
    from core.training.charlm import CharLMPlan, run_char_lm

    if config.model == "hrm":
        quirks = ["B14", "B15", "B19"]

        def build():
            return HRM(
                97, config.d_model, config.n_heads, config.seq_len, config.hrm_cycles, config.hrm_t,
                update="parallel",
            )
    else:
        quirks = ["B14", "B15", "B16", "B19"]
        mode = "reset" if config.model == "infini-reset" else "carry"

        def build():
            return InfiniHRM(
                97, config.d_model, config.n_heads, config.seq_len, config.hrm_cycles, config.hrm_t,
                memory_mode=mode,
            )

    run_char_lm(
        config,
        emit,
        CharLMPlan(build=build, segments=config.segments, quirks=quirks, info={"model": config.model}),
    )


EXPERIMENT = Experiment(
    name="infini-hrm",
    description="Report 004 Exp 2: HRM vs Infini-HRM (memory reset / carry) char LMs on WikiText-2",
    config_cls=InfiniHRMConfig,
    run=run,
    report="004",
    headline="best_val_ppl",
)
