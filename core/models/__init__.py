"""The models of the seed reports, as reusable blocks (see ``docs/building-blocks.md``).

:mod:`~core.models.char_transformer` (the post-norm RoPE block and its truncated-normal init),
:mod:`~core.models.char_lm` (embedding → blocks → shared head, per-block logits, growing, freezing),
:mod:`~core.models.routed` (exit stacks with one shared head, confidence routing),
:mod:`~core.models.growable`, :mod:`~core.models.lpt` (the LPT loss), :mod:`~core.models.irt`,
:mod:`~core.models.hrm` and :mod:`~core.models.infini`. torch is imported by each module.
"""
