"""Report 004 Exp 10/11: the confidence-routed character transformer and its plain baselines.

One model class covers all three shapes of Exp 10 and the three loss schemes of Exp 11:

    embedding → block 1 … block n → (every block's output can be scored by the ONE shared head)

- routed (Exp 10/11): n = 4, shallow exit after block 2, deep exit after block 4; both exits use the same
  bias-free head, so there are no router parameters (confidence = max softmax of the shallow logits).
- Std-4 / Std-2 baselines: the same class with n = 4 or n = 2, scored at the last block only.

Parameters: 2·V·d + n·(16 d² + 2 d) → 266,496 (n = 4) and 135,168 (n = 2) at V = 30, d = 64.

Init I-A (spec 1.3), drawn in a fixed, explicit order so that the digits do not depend on how
:class:`~core.models.char_transformer.Block` registers its submodules: embedding trunc-normal 0.02, then
for each block q, k, v, o, w1, w2, w3 trunc-normal 1/√d, then the head trunc-normal 1/√d, all with the
PyTorch-2.12 inverse-CDF sampler (:func:`core.models.char_transformer.trunc_normal_`). Construction draws PyTorch's default
inits first (consuming the RNG); only the amount consumed matters, not the order.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.models.char_transformer import Block, trunc_normal_


# The Linear maps of one block in the order upstream re-drew them (attention q, k, v, o; then FFN w1, w2, w3).
_BLOCK_LINEARS = (
    ("attn", "q_proj"), ("attn", "k_proj"), ("attn", "v_proj"), ("attn", "o_proj"),
    ("ffn", "w1"), ("ffn", "w2"), ("ffn", "w3"),
)


def routed_params(vocab_size: int, d_model: int, n_layers: int) -> int:
    """2·V·d + n·(16 d² + 2 d): embedding, untied head and n blocks."""
    return 2 * vocab_size * d_model + n_layers * (16 * d_model * d_model + 2 * d_model)


class ExitStackLM(nn.Module):
    """Embedding, ``n_layers`` post-norm RoPE blocks and one shared, untied output head.

    :meth:`forward` returns the logits of the requested exits (1-based block numbers), each computed by
    the shared head on that block's output. No final norm (the blocks are post-norm).

    ``head_after``: ``"stack"`` (default, the report's order) runs every needed block first and then the
    head on each exit; ``"block"`` applies the head as soon as an exit's block has run. The logits are the
    same; autograd accumulates the head's gradient in another order, which moves the last float bits
    (report 004's Exp 11 digits need ``"stack"``).
    """

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 4, n_heads: int = 4, *,
                 head_after: Literal["stack", "block"] = "stack") -> None:
        super().__init__()
        if head_after not in ("stack", "block"):
            raise ValueError(f"head_after must be 'stack' or 'block', not {head_after!r}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_layers = n_layers
        self.head_after = head_after
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList([Block(d_model, n_heads) for _ in range(n_layers)])
        self.output_head = nn.Linear(d_model, vocab_size, bias=False)

    def init_ia(self) -> None:
        """Init I-A in the upstream draw order (see the module docstring)."""
        std = 1.0 / math.sqrt(self.d_model)
        trunc_normal_(self.embedding.weight, std=0.02)
        for block in self.layers:
            for part, name in _BLOCK_LINEARS:
                trunc_normal_(getattr(getattr(block, part), name).weight, std=std)
        trunc_normal_(self.output_head.weight, std=std)

    def forward(self, x: torch.Tensor, exits: tuple[int, ...] | None = None) -> dict[int, torch.Tensor]:
        """{block number: logits (B, T, V)} for each block in ``exits`` (default: the last block only).

        Blocks past the deepest requested exit are not run. All blocks run first and the head is applied
        afterwards, in ascending exit order: that fixes autograd's gradient-accumulation order, and the
        report's last digits (Exp 11 Full LPT, threshold table) depend on it.
        """
        wanted = sorted(set(exits)) if exits else [self.n_layers]
        if not all(1 <= e <= self.n_layers for e in wanted):
            raise ValueError(f"exits must lie in 1..{self.n_layers}, got {wanted}")
        hidden = self.embedding(x)
        states: dict[int, torch.Tensor] = {}
        logits: dict[int, torch.Tensor] = {}
        for number, block in enumerate(self.layers[: wanted[-1]], start=1):
            hidden = block(hidden)
            states[number] = hidden
            if self.head_after == "block" and number in wanted:
                logits[number] = self.output_head(hidden)
        if self.head_after == "block":
            return logits
        return {e: self.output_head(states[e]) for e in wanted}


def build_exit_stack(
    vocab_size: int, d_model: int = 64, n_layers: int = 4, n_heads: int = 4, seed: int | None = None, *,
    head_after: Literal["stack", "block"] = "stack",
) -> ExitStackLM:
    """Seed (if given: ``torch.manual_seed`` only, the rest of the RNGs are irrelevant here), build, init I-A."""
    if seed is not None:
        torch.manual_seed(seed)
    model = ExitStackLM(vocab_size, d_model, n_layers, n_heads, head_after=head_after)
    model.init_ia()
    return model


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """Max softmax probability per token (B, T)."""
    return F.softmax(logits, dim=-1).max(dim=-1).values


def route(shallow: torch.Tensor, deep: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard per-token routing: shallow logits where confidence ≥ threshold, else deep. Returns (logits, mask)."""
    mask = confidence(shallow) >= threshold
    return torch.where(mask.unsqueeze(-1), shallow, deep), mask
