"""The character-level transformer block of report 004 (spec section 1.3) and its initialisers.

Post-norm block: ``h = norm1(h + attn(h)); h = norm2(h + ffn(h))`` with RMSNorm (eps 1e-6),
bias-free multi-head causal attention with rotate-half RoPE (base 10000), and a gated SiLU
feed-forward of width 4d. Parameters per block: 16 d² + 2 d.

Submodule registration order is part of the reproduction (initialisers re-draw weights in module
order): attn (q, k, v, o), ffn (w1, w2, w3), norm1, norm2. Together with :func:`trunc_normal_` (the
pre-2.13 algorithm) this order reproduces report 004's Exp 5, 8 and 9 to the last printed digit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps) · w, with w initialised to ones and no bias."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) → (−x2, x1) over the two halves of the last dimension."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_tables(seq_len: int, head_dim: int, device: torch.device, base: float = 10000.0):
    """cos and sin tables of shape (T, head_dim) for rotate-half RoPE."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device).float(), inv_freq)  # (T, hd/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, hd)
    return angles.cos(), angles.sin()


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention, separate bias-free q/k/v/o maps, RoPE on q and k."""

    def __init__(self, dim: int, n_heads: int, use_rope: bool = True) -> None:
        super().__init__()
        assert dim % n_heads == 0
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.use_rope = use_rope
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        return x.view(batch, seq_len, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, dim = x.shape
        query_states = self.split_heads(self.q_proj(x))
        key_states = self.split_heads(self.k_proj(x))
        value_states = self.split_heads(self.v_proj(x))
        if self.use_rope:
            cos, sin = rope_tables(seq_len, self.head_dim, x.device)
            query_states = query_states * cos + rotate_half(query_states) * sin
            key_states = key_states * cos + rotate_half(key_states) * sin
        scores = query_states @ key_states.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, nh, T, T)
        mask = torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool, device=x.device), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
        attn = F.softmax(scores, dim=-1) @ value_states  # (B, nh, T, hd)
        attn = attn.transpose(1, 2).reshape(batch, seq_len, dim)
        return self.o_proj(attn)


class SwiGLU(nn.Module):
    """out = W2(SiLU(W1 x) ⊙ W3 x), hidden width 4d, no biases."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or 4 * dim
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Post-norm transformer block: h ← norm1(h + attn(h)); h ← norm2(h + ffn(h))."""

    def __init__(self, dim: int = 64, n_heads: int = 4) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(dim, n_heads)
        self.ffn = SwiGLU(dim)
        self.norm1 = RMSNorm(dim)
        self.norm2 = RMSNorm(dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.norm1(hidden_states + self.attn(hidden_states))
        return self.norm2(hidden_states + self.ffn(hidden_states))


def block_params(dim: int) -> int:
    """16 d² + 2 d: the parameter count of one block (spec 1.3)."""
    return 16 * dim * dim + 2 * dim


@torch.no_grad()
def trunc_normal_(tensor: torch.Tensor, std: float, mean: float = 0.0, a: float = -2.0, b: float = 2.0) -> torch.Tensor:
    """Truncated normal by inverse CDF, exactly as ``nn.init.trunc_normal_`` drew it up to PyTorch 2.12.

    One uniform draw per element on [2Φ(a)−1, 2Φ(b)−1], then erfinv, scale by std·√2, shift, clamp.
    Report 004's runs used this algorithm. PyTorch 2.13 switched ``nn.init.trunc_normal_`` to rejection
    sampling from ``normal_`` (different values from the same seed), so every initialiser of the
    reproductions must call this function instead of ``nn.init.trunc_normal_``.
    ``a`` and ``b`` are absolute bounds (PyTorch's defaults ±2, i.e. no truncation at std 0.02).
    """

    def norm_cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    low = norm_cdf((a - mean) / std)
    high = norm_cdf((b - mean) / std)
    tensor.uniform_(2 * low - 1, 2 * high - 1)
    tensor.erfinv_()
    tensor.mul_(std * math.sqrt(2.0))
    tensor.add_(mean)
    tensor.clamp_(min=a, max=b)
    return tensor


def init_linears_trunc_normal(module: nn.Module, std: float) -> None:
    """Re-draw every Linear weight (module order) from :func:`trunc_normal_` (absolute truncation ±2)."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            trunc_normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
