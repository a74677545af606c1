"""The two-level HRM of report 004 (spec section 2, Exp 1 and Exp 2), both update rules.

One *segment* (one call of :meth:`HRM.forward`):

- inputs: token embedding e (optionally passed through an input layer, see :mod:`core.models.infini`),
  and the level states z_L, z_H: the learned initial states [1, seq_len, d] (normal·0.02) broadcast over
  the batch on the first segment, the previous segment's (detached) states afterwards;
- N·T steps; all but the last run under ``no_grad`` (the 1-step gradient approximation);
- ``update="sequential"`` (upstream 1b8b9ec, Exp 1): every step z_L ← Block_L(z_L + z_H + e); on steps with
  (step+1) mod T == 0 also z_H ← Block_H(z_H + z_L) with the *fresh* z_L; H never sees e;
- ``update="parallel"`` (upstream 8ab75a3, Exp 2/3, quirk B14): every due level updates from the *old*
  states, new_i = Block_i(z_i + e + Σ_{j≠i} z_j) (L due every step, H every T steps); H also sees e;
- logits = Head(z_H). A Q-head Linear(d → 2, no bias) exists but is never used (quirk B15): it only keeps
  the parameter count at the report's 152,064 (d 64) / 89,472 (d 48).

Initialisation I-A: every Linear trunc-normal std 1/√d, embedding trunc-normal 0.02, norms 1.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from core.models.char_transformer import Block
from core.models.irt import init_ia

HRMUpdate = Literal["sequential", "parallel"]


class HRM(nn.Module):
    """Two levels (L: every step, H: every T steps), one block each, N high-level cycles of T steps."""

    segmented = True

    def __init__(
        self,
        vocab_size: int = 97,
        dim: int = 64,
        n_heads: int = 4,
        seq_len: int = 64,
        n_cycles: int = 1,
        t_steps: int = 2,
        update: HRMUpdate = "sequential",
    ) -> None:
        super().__init__()
        if update not in ("sequential", "parallel"):
            raise ValueError(f"unknown HRM update rule {update!r}")
        self.dim, self.n_cycles, self.t_steps, self.update = dim, n_cycles, t_steps, update
        self.embedding = nn.Embedding(vocab_size, dim)
        self.block_l = Block(dim, n_heads)
        self.block_h = Block(dim, n_heads)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.q_head = nn.Linear(dim, 2, bias=False)  # unused (B15), kept for parameter parity
        self.z_l_init = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
        self.z_h_init = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
        init_ia(self, dim)

    # -- hooks (the Infini subclass overrides them) ------------------------------------------------------

    def embed(self, x: torch.Tensor, memory):
        """The input every level sees (e), and the input layer's new memory (none here)."""
        return self.embedding(x), None

    def start_batch(self, batch_size: int, training: bool):
        """The state a batch's first segment starts from (None: the learned initial states)."""
        return None

    def end_batch(self, state, training: bool) -> None:
        """Called with the (detached) state after a batch's last segment."""

    def _step(self, step: int, z_l: torch.Tensor, z_h: torch.Tensor, e: torch.Tensor):
        h_due = (step + 1) % self.t_steps == 0
        if self.update == "sequential":
            z_l = self.block_l(z_l + z_h + e)
            if h_due:
                z_h = self.block_h(z_h + z_l)
            return z_l, z_h
        new_l = self.block_l(z_l + e + z_h)
        new_h = self.block_h(z_h + e + z_l) if h_due else z_h
        return new_l, new_h

    def forward(self, x: torch.Tensor, state=None, return_hidden: bool = False):
        """One segment. ``state``: None, or ``(z_l, z_h, memory)`` of the previous segment (z's None on a
        batch's first segment). Returns ``(logits, (z_l, z_h, memory), None)``."""
        batch, seq_len = x.shape
        z_l, z_h, memory = state if state is not None else (None, None, None)
        e, memory = self.embed(x, memory)
        if z_l is None or z_h is None:
            z_l = self.z_l_init[:, :seq_len].expand(batch, -1, -1)
            z_h = self.z_h_init[:, :seq_len].expand(batch, -1, -1)
        steps = self.n_cycles * self.t_steps
        if steps > 1:
            with torch.no_grad():
                for step in range(steps - 1):
                    z_l, z_h = self._step(step, z_l, z_h, e)
        z_l, z_h = self._step(steps - 1, z_l, z_h, e)
        return self.head(z_h), (z_l, z_h, memory), None

    def q_values(self, z_h: torch.Tensor) -> torch.Tensor:
        """The (unused) halting Q-values: sigmoid(Q-head(mean-pooled z_H))."""
        return torch.sigmoid(self.q_head(z_h.mean(dim=1)))
