"""Infini-HRM of report 004 Exp 2 (upstream ``modules/infini_hrm.py@00957c8``, spec section 2, Exp 2).

Embedding → one Infini-attention layer → x̃, which replaces e everywhere in the (parallel-update) HRM.
No residual around the Infini layer, no norm, no RoPE inside it (quirk B16).

Infini layer, per head (head_dim d/heads): bias-free q, k, v, o maps.
- local: causal softmax attention softmax(q kᵀ/√d_h + mask) v;
- memory: σ(·) = ELU(·) + 1; retrieval = σ(q) M / (σ(q)·z + 1e-6), M [B, heads, d_h, d_h], z [B, heads, d_h];
  an empty memory (None) retrieves exactly 0;
- combined = g·retrieval + (1 − g)·local, g = sigmoid(gate_h), one scalar per head initialised 0;
- output = o(combined heads); then M ← M + σ(k)ᵀ v, z ← z + Σ_positions σ(k).

Memory modes (B16): ``reset``: empty memory at the start of every batch, so segment 2 retrieves what segment 1
wrote about the *same* window; ``carry``: the (detached) memory of one training batch is handed to the next
through the epoch (shuffled, unrelated text), reset only when the batch size changes. Evaluation always starts
every batch from empty memory. Parameters: HRM + 4d² + heads = 168,452 at d 64.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.models.char_transformer import trunc_normal_
from core.models.hrm import HRM

MemoryMode = Literal["reset", "carry"]
Memory = tuple[torch.Tensor, torch.Tensor]


def _sigma(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1.0


class InfiniAttention(nn.Module):
    """Causal local attention gated with a linear compressive memory (no RoPE)."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        assert dim % n_heads == 0
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.gate = nn.Parameter(torch.zeros(n_heads))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        return x.view(batch, seq_len, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: Memory | None = None) -> tuple[torch.Tensor, Memory]:
        batch, seq_len, dim = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        local = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/√d_h
        sq, sk = _sigma(q), _sigma(k)
        if memory is None:
            retrieved = torch.zeros_like(local)
            mem = sk.transpose(-2, -1) @ v  # (B, h, d_h, d_h)
            norm = sk.sum(dim=2)  # (B, h, d_h)
        else:
            mem_in, norm_in = memory
            retrieved = (sq @ mem_in) / ((sq @ norm_in.unsqueeze(-1)) + 1e-6)
            mem = mem_in + sk.transpose(-2, -1) @ v
            norm = norm_in + sk.sum(dim=2)
        g = torch.sigmoid(self.gate).view(1, -1, 1, 1)
        combined = g * retrieved + (1.0 - g) * local
        out = self.o_proj(combined.transpose(1, 2).reshape(batch, seq_len, dim))
        return out, (mem, norm)


class InfiniHRM(HRM):
    """Parallel-update HRM whose input is x̃ = InfiniAttention(Embedding(x))."""

    def __init__(
        self,
        vocab_size: int = 97,
        dim: int = 64,
        n_heads: int = 4,
        seq_len: int = 64,
        n_cycles: int = 1,
        t_steps: int = 2,
        memory_mode: MemoryMode = "reset",
    ) -> None:
        super().__init__(vocab_size, dim, n_heads, seq_len, n_cycles, t_steps, update="parallel")
        if memory_mode not in ("reset", "carry"):
            raise ValueError(f"unknown memory mode {memory_mode!r}")
        self.memory_mode = memory_mode
        self.infini = InfiniAttention(dim, n_heads)
        for module in self.infini.modules():  # I-A, like every other Linear
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=1.0 / dim**0.5)
        self._carried: Memory | None = None

    def embed(self, x: torch.Tensor, memory: Memory | None):
        return self.infini(self.embedding(x), memory)

    def start_batch(self, batch_size: int, training: bool):
        if not training or self.memory_mode != "carry" or self._carried is None:
            return None
        if self._carried[0].shape[0] != batch_size:  # reset when the batch size changes (short last batch)
            self._carried = None
            return None
        return (None, None, self._carried)

    def end_batch(self, state, training: bool) -> None:
        if training and self.memory_mode == "carry" and state is not None:
            mem = state[2]
            self._carried = None if mem is None else (mem[0].detach(), mem[1].detach())

    def reset_memory(self) -> None:
        self._carried = None
