"""Tensor operations of the SmolLM2 experiments: cos_sim rules, thresholds, extraction, statistics.

Hidden-state semantics (spec 3.2): with ``output_hidden_states=True`` a Llama with L layers returns
L + 1 tensors: index 0 = the input embeddings (or the ``inputs_embeds`` given), index i = output of
layer i for i < L, and index L = the *final RMSNorm* of layer L's output (= ``last_hidden_state``).
"Layer i" in report 003 is cos(h[i-1], h[i]).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

CosRule = str  # "last2avg" | "penultimate" | "final" | "whole"
COS_RULES = ("last2avg", "penultimate", "final", "whole")


# --- cos_sim ------------------------------------------------------------------------------------

def cos_sim(a: torch.Tensor, b: torch.Tensor, *, dtype: torch.dtype | None = None, style: str = "normalize") -> torch.Tensor:
    """Per-token cosine similarity over the last dimension, computed in ``dtype`` (default: a's).

    ``style="normalize"``: torch ``F.normalize`` (eps 1e-12), then the dot product (cascade, 003);
    ``style="add_eps"``: a / (||a|| + 1e-8) (the 001 incremental script). The result keeps ``dtype``
    (fp16 results can exceed 1.0, quirk B18).
    """
    if dtype is not None:
        a, b = a.to(dtype), b.to(dtype)
    if style == "add_eps":
        an = a / (a.norm(dim=-1, keepdim=True) + 1e-8)
        bn = b / (b.norm(dim=-1, keepdim=True) + 1e-8)
    else:
        an, bn = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return (an * bn).sum(dim=-1)


def cos_rule(hs: Sequence[torch.Tensor], rule: CosRule, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The score of one model's hidden states ``hs`` (length L + 1) under a named rule (spec 3.2).

    - ``last2avg``: mean of "Layer L-2" and "Layer L-1" = mean(cos(h[-4], h[-3]), cos(h[-3], h[-2]))
      (seed 000, ">= 5 states"); with 3-4 states cos(h[-3], h[-2]); with 2 states cos(h[0], h[-2]).
    - ``penultimate``: cos(h[-3], h[-2]) = "Layer 29" for SmolLM2 (seed 002, 003's recommendation).
    - ``final``: cos(h[-2], h[-1]) = "Layer 30" (final norm included).
    - ``whole``: cos(h[0], h[-1]), input vs final-normed output, a/(||a||+1e-8) (seed 001).
    The average of ``last2avg`` is taken in ``dtype`` (fp16 upstream), then the result is cast to fp32.
    """
    n = len(hs)
    if rule == "last2avg":
        if n >= 5:
            out = (cos_sim(hs[-4], hs[-3], dtype=dtype) + cos_sim(hs[-3], hs[-2], dtype=dtype)) / 2
        elif n >= 3:
            out = cos_sim(hs[-3], hs[-2], dtype=dtype)
        else:
            out = cos_sim(hs[0], hs[-2], dtype=dtype)
    elif rule == "penultimate":
        out = cos_sim(hs[-3], hs[-2], dtype=dtype)
    elif rule == "final":
        out = cos_sim(hs[-2], hs[-1], dtype=dtype)
    elif rule == "whole":
        out = cos_sim(hs[0], hs[-1], dtype=dtype, style="add_eps")
    else:
        raise ValueError(f"unknown cos rule {rule!r} (known: {', '.join(COS_RULES)})")
    return out.float()


# --- thresholds -----------------------------------------------------------------------------------

TORCH_QUANTILE_MAX = 16_000_000  # torch.quantile refuses larger inputs


def quantile(x: torch.Tensor, q: float) -> float:
    """Linear-interpolation quantile of a flat tensor (= ``torch.quantile``, also above its 16M limit)."""
    x = x.reshape(-1).float()
    if x.numel() == 0:
        return float("nan")
    if x.numel() <= TORCH_QUANTILE_MAX:
        return float(torch.quantile(x, q))
    s, _ = torch.sort(x)
    pos = q * (s.numel() - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, s.numel() - 1)
    return float(s[lo] + (pos - lo) * (s[hi] - s[lo]))


def hard_mask(scores: torch.Tensor, tau: float, *, inclusive: bool) -> torch.Tensor:
    """Hard = low cos: ``score <= tau`` (inclusive, 001) or ``score < tau`` (strict, 000/002); spec B17."""
    return scores <= tau if inclusive else scores < tau


def expected_hard_count(n: int, q: float, *, inclusive: bool) -> int:
    """Hard count for n distinct scores and tau = the q-quantile: floor(q(n-1))+1 inclusive, ceil(q(n-1)) strict."""
    pos = q * (n - 1)
    return math.floor(pos) + 1 if inclusive else math.ceil(pos)


# --- statistics -----------------------------------------------------------------------------------

STAT_KEYS = ("cos_mean", "cos_std", "cos_min", "cos_p10", "cos_p50", "cos_p90", "cos_max", "neg_pct", "below_half_pct")


def cos_stats(values: torch.Tensor) -> dict[str, float]:
    """mean, unbiased std, min, p10/p50/p90 (linear), max, % negative, % below 0.5 (report 003)."""
    v = values.reshape(-1).double()
    n = v.numel()
    return {
        "cos_mean": float(v.mean()),
        "cos_std": float(v.std()) if n > 1 else 0.0,
        "cos_min": float(v.min()),
        "cos_p10": quantile(v.float(), 0.1),
        "cos_p50": quantile(v.float(), 0.5),
        "cos_p90": quantile(v.float(), 0.9),
        "cos_max": float(v.max()),
        "neg_pct": 100.0 * float((v < 0).sum()) / n,
        "below_half_pct": 100.0 * float((v < 0.5).sum()) / n,
    }


# --- extraction -----------------------------------------------------------------------------------

@dataclass
class BasePass:
    """What one pass of a frozen LLM over windows keeps (all [N, T] unless noted)."""

    cos: torch.Tensor  # float32 scores under the rule
    ce: torch.Tensor  # float32 per-token cross-entropy of the model's own logits
    correct: torch.Tensor  # bool, argmax == target
    h_out: torch.Tensor | None = None  # [N, T, D] final-normed hidden states (float32)
    layer_cos: torch.Tensor | None = None  # [L, N, T] cos(h[i-1], h[i]) for i = 1..L
    seconds: float = 0.0
    tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def run_frozen(
    lm: Any,
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    labels: torch.Tensor,
    rule: CosRule,
    batch_size: int = 16,
    cos_dtype: torch.dtype | None = None,
    keep_hidden: bool = False,
    hidden_dtype: torch.dtype = torch.float32,
    layer_cos: bool = False,
    layer_cos_dtype: torch.dtype | None = None,
    autocast: torch.dtype | None = None,
    store_device: str | torch.device | None = None,
) -> BasePass:
    """Batched forward of a frozen causal LM over [N, T] ids (or [N, T, D] embeddings).

    One forward per batch, everything vectorised (no per-token loops). ``cos_dtype``: the dtype of the
    cos arithmetic (fp16 reproduces B18); None keeps the hidden states' dtype. ``autocast``: run the
    forward under autocast of that dtype (e.g. bf16 on CUDA).
    """
    device = next(lm.parameters()).device
    store = torch.device(store_device) if store_device is not None else device
    src = input_ids if input_ids is not None else inputs_embeds
    assert src is not None
    n = src.shape[0]
    cos_l, ce_l, ok_l, h_l, lc_l = [], [], [], [], []
    _sync(device)
    t0 = time.perf_counter()
    for s in range(0, n, batch_size):
        kw: dict[str, Any] = {}
        if input_ids is not None:
            kw["input_ids"] = input_ids[s:s + batch_size].to(device, non_blocking=True)
        else:
            assert inputs_embeds is not None
            kw["inputs_embeds"] = inputs_embeds[s:s + batch_size].to(device, dtype=lm.dtype, non_blocking=True)
        y = labels[s:s + batch_size].to(device, non_blocking=True)
        ctx = torch.autocast(device.type, dtype=autocast) if autocast is not None else _null()
        with ctx:
            out = lm.model(output_hidden_states=True, use_cache=False, **kw)
            hs = out.hidden_states
            logits = lm.lm_head(hs[-1])
        lf = logits.float()
        ce_l.append(F.cross_entropy(lf.transpose(1, 2), y, reduction="none").to(store))
        ok_l.append((lf.argmax(-1) == y).to(store))
        cos_l.append(cos_rule(hs, rule, dtype=cos_dtype).to(store))
        if keep_hidden:
            h_l.append(hs[-1].to(store, dtype=hidden_dtype))
        if layer_cos:
            lc_l.append(torch.stack([
                cos_sim(hs[i - 1], hs[i], dtype=layer_cos_dtype).float() for i in range(1, len(hs))
            ]).to(store))
    _sync(device)
    secs = time.perf_counter() - t0
    return BasePass(
        cos=torch.cat(cos_l), ce=torch.cat(ce_l), correct=torch.cat(ok_l),
        h_out=torch.cat(h_l) if keep_hidden else None,
        layer_cos=torch.cat(lc_l, dim=1) if layer_cos else None,
        seconds=secs, tokens=int(labels.numel()),
    )


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


def null_ctx() -> _null:
    return _null()


# --- the length-1 ("sequence of one token") forward of seed 001 (B7) ----------------------------

def length1_states(llama: Any, x: torch.Tensor, *, all_states: bool = False) -> list[torch.Tensor]:
    """Hidden states of a Llama (``LlamaModel``) fed each row of ``x`` [N, D] as its own length-1 sequence.

    Mathematically identical to ``llama(inputs_embeds=x[:, None, :], output_hidden_states=True)``:
    with one key the causal softmax is 1, so attention = o_proj(v_proj(h)) with the K/V heads
    repeated over their query groups, and RoPE at position 0 is the identity. It uses the model's own
    modules (no copied modeling code) but skips masks and rotary tables: 3-4x less overhead per step.
    Returns [x, layer 1, ..., final-normed] when ``all_states`` else [x, final-normed].
    """
    cfg = llama.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    groups = n_heads // n_kv
    states = [x]
    h = x
    for layer in llama.layers:
        a = layer.self_attn
        v = a.v_proj(layer.input_layernorm(h))
        if groups > 1:
            v = v.view(-1, n_kv, 1, head_dim).expand(-1, n_kv, groups, head_dim).reshape(-1, n_heads * head_dim)
        h = h + a.o_proj(v)
        h = h + layer.mlp(layer.post_attention_layernorm(h))
        if all_states:
            states.append(h)
    out = llama.norm(h)
    if all_states:
        states[-1] = out
    else:
        states.append(out)
    return states


# --- early exit accounting ------------------------------------------------------------------------

def compute_pct(input_tokens: Sequence[int], layers: Sequence[int], total_tokens: int) -> float:
    """CASCADE compute %: sum_k(input_k * layers_k) / (total * sum_k layers_k) * 100 (spec 4.5)."""
    denom = total_tokens * sum(layers)
    return 100.0 * sum(i * l for i, l in zip(input_tokens, layers)) / denom if denom else float("nan")


def repack(h: torch.Tensor, y: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Quirk B3: concatenate selected tokens in order and cut into ``seq_len`` rows; returns dropped count."""
    n = (h.shape[0] // seq_len) * seq_len
    return h[:n].reshape(-1, seq_len, h.shape[-1]), y[:n].reshape(-1, seq_len), int(h.shape[0] - n)


def ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")
