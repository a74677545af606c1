"""A plain character-level LM: embedding → N post-norm blocks → untied bias-free head (spec 1.3).

This is the model of report 004's Exp 5, 8 and 9 (upstream "GrowableTransformer" and the 4-block
analysis models), written so that the growing / routing experiments (Exp 6, 7, 10, 11) can reuse it:

- :class:`CharLM` keeps its submodules in the order ``embedding``, ``blocks``, ``head``; initialisers
  re-draw weights in that module order, which is part of the exact reproduction.
- :meth:`CharLM.hidden_states` returns ``[h_0 (embedding), h_1, …, h_N]``; :meth:`CharLM.layer_logits`
  applies the one shared head to every block output (LPT losses, early-exit / contribution analyses).
- :meth:`CharLM.add_block` appends a block built with PyTorch's default init and then re-drawn from a
  truncated normal (the upstream ``add_layer``; the draw order matters).
- :meth:`CharLM.freeze` / :meth:`CharLM.unfreeze` set ``requires_grad`` for the embedding, chosen blocks
  and the head; :func:`trainable_parameters` is what the optimiser receives.

Initialisation schemes (spec 1.3) via :meth:`CharLM.init_weights` / the ``init`` argument:

- ``"I-B"``: every Linear and the embedding ~ truncated normal std 0.02, in module order (Exp 5, 8, 9).
- ``"I-A"``: every Linear std 1/√d, embedding std 0.02 (Exp 1–4, 10, 11; check the order yourself).
- ``"none"``: keep PyTorch's default init (build empty, then ``init_weights``/``add_block`` for I-C).

All truncated normals use :func:`core.models.char_transformer.trunc_normal_` (the pre-2.13 algorithm).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Literal

import torch
from torch import nn

from core.models.char_transformer import Block, count_params, trunc_normal_

InitScheme = Literal["I-A", "I-B", "none"]


class CharLM(nn.Module):
    """embedding (V×d) → ``n_layers`` × :class:`Block` → head Linear(d→V, no bias), no final norm."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 4,
        *,
        init: InitScheme = "I-B",
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_heads = n_heads
        # Registration order = initialisation order: embedding, blocks, head.
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList([Block(d_model, n_heads) for _ in range(n_layers)])
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if init == "I-B":
            self.init_weights(linear_std=0.02, embedding_std=0.02)
        elif init == "I-A":
            self.init_weights(linear_std=1.0 / math.sqrt(d_model), embedding_std=0.02)
        elif init != "none":
            raise ValueError(f"unknown init scheme {init!r} (I-A, I-B or none)")

    # ------------------------------------------------------------------ construction

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def init_weights(self, linear_std: float, embedding_std: float) -> None:
        """Re-draw every Linear (std ``linear_std``) and the embedding (``embedding_std``) in module order."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=linear_std)
            elif isinstance(module, nn.Embedding):
                trunc_normal_(module.weight, std=embedding_std)

    def add_block(self, init_std: float | None = 0.02) -> Block:
        """Append a block: PyTorch default init first (consumes RNG), then, unless ``init_std`` is None,
        every Linear in it re-drawn truncated-normal ``init_std``. Placed on the model's device."""
        block = Block(self.d_model, self.n_heads)
        if init_std is not None:
            for module in block.modules():
                if isinstance(module, nn.Linear):
                    trunc_normal_(module.weight, std=init_std)
        block.to(self.head.weight.device)
        self.blocks.append(block)
        return block

    # ------------------------------------------------------------------ freezing

    def freeze(self, *, embedding: bool = False, blocks: Iterable[int] = (), head: bool = False) -> None:
        """Set ``requires_grad=False`` on the embedding / the given 0-based blocks / the head."""
        if embedding:
            self.embedding.requires_grad_(False)
        for index in blocks:
            self.blocks[index].requires_grad_(False)
        if head:
            self.head.requires_grad_(False)

    def unfreeze(self) -> None:
        """Make every parameter trainable again."""
        self.requires_grad_(True)

    # ------------------------------------------------------------------ forward

    def hidden_states(self, x: torch.Tensor, n_layers: int | None = None) -> list[torch.Tensor]:
        """``[h_0, h_1, …, h_n]``: the embedding and every block output (post-norm), shape (B, T, d)."""
        hidden = self.embedding(x)
        states = [hidden]
        for block in self.blocks[: n_layers if n_layers is not None else len(self.blocks)]:
            hidden = block(hidden)
            states.append(hidden)
        return states

    def layer_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Shared-head logits of every block: ``[Head(h_1), …, Head(h_N)]``, each (B, T, V)."""
        return [self.head(h) for h in self.hidden_states(x)[1:]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the last block (B, T, V); with zero blocks, the head on the embedding."""
        return self.head(self.hidden_states(x)[-1])


def trainable_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters an optimiser should see (``requires_grad``), in registration order."""
    return (p for p in model.parameters() if p.requires_grad)


def char_lm_params(vocab_size: int, d_model: int, n_layers: int) -> int:
    """Parameter count of :class:`CharLM`: n·(16d² + 2d) + 2·V·d (e.g. V=30, d=64, 3 → 200,832)."""
    return n_layers * (16 * d_model * d_model + 2 * d_model) + 2 * vocab_size * d_model


__all__ = ["CharLM", "InitScheme", "char_lm_params", "count_params", "trainable_parameters"]
