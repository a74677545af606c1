"""Data pipeline B, "toy-fox" (spec 1.2): the repeated sentences that report 004's Exp 5–11 really used.

The original scripts looked for WikiText files that never existed and silently fell back to
this text (quirk B11). Here it is generated on purpose and always named in the run's record.

Building blocks: :func:`toy_texts` (the texts at any length), :func:`make_batches` (complete batches in a
fixed order), :func:`toy_fox_batches` (pipeline B end to end) and :func:`toy_batch_counts` (how many
batches a shape gives, without building them: configs check it at submit). torch is imported inside the
functions that build tensors, so configs can use the arithmetic cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

TRAIN_CHARS, VAL_CHARS = 20_000, 5_000
"""The lengths the original scripts asked for (the report's data)."""

TRAIN_SENTENCE = "The quick brown fox jumps over the lazy dog. "
VAL_SENTENCE = "A quick brown dog runs in the park. "
DATA_SOURCE = "toy-fox (pipeline B: repeated sentences, quirk B11)"


@dataclass
class CharBatches:
    """Prebuilt (x, y) batches in a fixed order, and the vocabulary they were encoded with."""

    train: list[tuple[torch.Tensor, torch.Tensor]]
    val: list[tuple[torch.Tensor, torch.Tensor]]
    vocab: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def toy_texts(train_chars: int = TRAIN_CHARS, val_chars: int = VAL_CHARS) -> tuple[str, str]:
    """The fallback text exactly as the scripts built it: 444 × 45 train chars, 142 × 36 val chars.

    The val repeat count divides by 35 although the sentence has 36 characters (an upstream slip
    kept on purpose: it decides the number of val batches).
    """
    train = TRAIN_SENTENCE * (train_chars // len(TRAIN_SENTENCE))
    val = VAL_SENTENCE * (val_chars // 35)
    return train, val


def make_batches(ids: torch.Tensor, seq_len: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Complete batches only; batch i starts at i·seq_len·batch_size, sequence j at +j·seq_len."""
    import torch

    batches = []
    step = seq_len * batch_size
    for start in range(0, len(ids) - step, step):
        xs, ys = [], []
        for j in range(batch_size):
            s = start + j * seq_len
            x, y = ids[s : s + seq_len], ids[s + 1 : s + seq_len + 1]
            if len(y) < seq_len:
                break
            xs.append(x)
            ys.append(y)
        if len(xs) == batch_size:
            batches.append((torch.stack(xs), torch.stack(ys)))
    return batches


def toy_batch_counts(seq_len: int, batch_size: int, train_chars: int = TRAIN_CHARS,
                     val_chars: int = VAL_CHARS) -> tuple[int, int]:
    """(train, val) batch counts that :func:`toy_fox_batches` gives for this shape, by arithmetic alone."""
    train_text, val_text = toy_texts(train_chars, val_chars)
    step = seq_len * batch_size
    return tuple(len(range(0, len(text) - step, step)) for text in (train_text, val_text))  # type: ignore[return-value]


def toy_fox_batches(seq_len: int = 64, batch_size: int = 16, *, train_chars: int = TRAIN_CHARS,
                    val_chars: int = VAL_CHARS) -> CharBatches:
    """Pipeline B: data-derived vocabulary (V = 30), no shuffling, 19 train / 4 val batches at 64 × 16.

    ``train_chars``/``val_chars``: the lengths asked of :func:`toy_texts` (the report's 20,000 / 5,000).
    """
    import torch

    train_text, val_text = toy_texts(train_chars, val_chars)
    vocab = sorted(set(train_text + val_text))
    index = {ch: i for i, ch in enumerate(vocab)}

    def encode(text: str) -> torch.Tensor:
        return torch.tensor([index.get(ch, 0) for ch in text], dtype=torch.long)

    return CharBatches(
        train=make_batches(encode(train_text), seq_len, batch_size),
        val=make_batches(encode(val_text), seq_len, batch_size),
        vocab=vocab,
    )
