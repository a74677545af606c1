"""Stacked character transformers of report 004 Exp 3 and Exp 4 (spec sections 2, Exp 3/4).

- :class:`StackedCharLM`: embedding → n post-norm blocks → bias-free head (untied). The "Standard
  Transformer" of Exp 3/4, and the model LPT trains (LPT is a loss, see :mod:`core.models.lpt`).
- :class:`IRTCharLM`: the same stack with a learned initial state added to the embedding on the first
  segment; later segments add the previous segment's final hidden state (detached by the trainer).
  Upstream called it ``DeepSupervisionTransformer``; the report calls it IRT (Iterative Refinement Training).

Both initialise with I-A (spec 1.3, :func:`init_ia`): every Linear trunc-normal std 1/√d, embedding
trunc-normal 0.02, norm weights 1; the IRT initial state is normal·0.02.

Forward contract shared with the HRM models: ``model(x, state=None, return_hidden=False)`` returns
``(logits, new_state, hidden)``, where ``hidden`` is the list of block outputs when requested.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from core.models.char_transformer import Block, trunc_normal_


def init_ia(model: nn.Module, dim: int) -> None:
    """Init I-A, in module (registration) order: every Linear weight trunc-normal std 1/√d, every embedding
    trunc-normal std 0.02 (absolute truncation ±2; the pre-2.13 algorithm of
    :func:`core.models.char_transformer.trunc_normal_`). Norm weights stay 1."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=1.0 / math.sqrt(dim))
        elif isinstance(module, nn.Embedding):
            trunc_normal_(module.weight, std=0.02)


class StackedCharLM(nn.Module):
    """Embedding → ``n_layers`` blocks → head. Params: 2·V·d + n·(16d² + 2d) (275,072 at V 97, d 64, n 4)."""

    segmented = False

    def __init__(self, vocab_size: int = 97, dim: int = 64, n_layers: int = 4, n_heads: int = 4) -> None:
        super().__init__()
        self.dim = dim
        self.embedding = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList([Block(dim, n_heads) for _ in range(n_layers)])
        self.head = nn.Linear(dim, vocab_size, bias=False)
        init_ia(self, dim)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, state: None = None, return_hidden: bool = False):
        h = self.embedding(x)
        hidden = []
        for block in self.blocks:
            h = block(h)
            hidden.append(h)
        return self.head(h), None, (hidden if return_hidden else None)


class IRTCharLM(StackedCharLM):
    """The stack plus a learned initial state [1, seq_len, d] (+seq_len·d params: 82,176 / 279,168)."""

    segmented = True

    def __init__(
        self, vocab_size: int = 97, dim: int = 64, n_layers: int = 1, n_heads: int = 4, seq_len: int = 64
    ) -> None:
        super().__init__(vocab_size, dim, n_layers, n_heads)
        self.init_state = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, return_hidden: bool = False):
        h = self.embedding(x)
        h = h + (self.init_state[:, : x.shape[1]] if state is None else state)
        hidden = []
        for block in self.blocks:
            h = block(h)
            hidden.append(h)
        return self.head(h), h, (hidden if return_hidden else None)
