"""A character LM that grows one block at a time (report 004 Exp 6 greedy, Exp 7 progressive; spec 1.3).

Embedding → blocks (post-norm :class:`~core.models.char_transformer.Block`) → one shared bias-free head,
untied, no final norm. It starts with **zero** blocks; :meth:`GrowableCharLM.add_block` appends one.

Init I-C (spec 1.3), in this RNG order, which the report's exact digits depend on:

1. construction: ``Embedding`` (default normal init) and the head ``Linear`` (default Kaiming-uniform init)
   are built, then the embedding and then the head are re-drawn truncated-normal(std);
2. every :meth:`add_block`: the block is built with PyTorch's default Linear init (it consumes RNG), then every
   Linear in it is re-drawn truncated-normal(std) in ``modules()`` order.

Truncated-normal draws use :func:`~core.models.char_transformer.trunc_normal_` (the pre-2.13 inverse-CDF
sampler: PyTorch 2.13's ``nn.init.trunc_normal_`` draws different values from the same seed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.char_transformer import Block, count_params, init_linears_trunc_normal, trunc_normal_


class GrowableCharLM(nn.Module):
    """Embedding, a growable list of blocks and a head shared by every layer's logits."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_heads: int = 4, init_std: float = 0.02) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_heads = n_heads
        self.init_std = init_std
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList()
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        trunc_normal_(self.embedding.weight, std=init_std)
        trunc_normal_(self.head.weight, std=init_std)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def add_block(self, *, freeze_existing: bool = False, freeze_embedding: bool = False) -> Block:
        """Append a freshly initialised block (I-C) and return it.

        ``freeze_existing`` sets ``requires_grad = False`` on every block already there (greedy training);
        ``freeze_embedding`` also freezes the embedding (the greedy script did this when adding the first
        block, quirk B13). The head and the new block stay trainable.
        """
        if freeze_existing:
            for block in self.blocks:
                block.requires_grad_(False)
        if freeze_embedding:
            self.embedding.requires_grad_(False)
        block = Block(self.d_model, self.n_heads)
        init_linears_trunc_normal(block, self.init_std)
        self.blocks.append(block.to(self.head.weight.device))
        return block

    def unfreeze_all(self) -> None:
        self.requires_grad_(True)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of every block, in order (needs at least one block)."""
        if not self.blocks:
            raise RuntimeError("the model has no blocks yet: call add_block() first")
        h = self.embedding(x)
        states = []
        for block in self.blocks:
            h = block(h)
            states.append(h)
        return states

    def layer_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Shared-head logits after every block (LPT): [Head(h_1), …, Head(h_L)]."""
        return [self.head(h) for h in self.hidden_states(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the last block, shape (B, T, V)."""
        return self.head(self.hidden_states(x)[-1])

    def param_counts(self) -> tuple[int, int]:
        """(all parameters, trainable parameters)."""
        return count_params(self), count_params(self, trainable_only=True)


def lm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy over all positions."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def layer_losses(
    model: GrowableCharLM, x: torch.Tensor, y: torch.Tensor, *, lpt: bool
) -> tuple[torch.Tensor, list[float]]:
    """(loss to backpropagate, per-layer CEs as floats).

    ``lpt``: loss = CE_1 + … + CE_L (LPT-sum, unnormalised). Otherwise loss = CE_L and the earlier layers are
    scored through the head without gradient (logged only, the head is not trained on them).
    """
    states = model.hidden_states(x)
    values: list[float] = []
    total: torch.Tensor | None = None
    for i, h in enumerate(states):
        last = i == len(states) - 1
        if lpt or last:
            loss = lm_loss(model.head(h), y)
            total = loss if total is None else total + loss
        else:
            with torch.no_grad():
                loss = lm_loss(model.head(h), y)
        values.append(loss.item())
    assert total is not None
    return total, values
