"""One entry point to report 004's two character pipelines, for experiments that offer both.

:func:`char_batches` returns a :class:`CharData` for ``"toy-fox"`` (pipeline B, :mod:`core.data.toy`:
complete batches in a fixed order, data-derived vocabulary of 30) or ``"wikitext2"`` (pipeline A,
:mod:`core.data.wikitext`: DataLoaders, train shuffled from the global torch RNG, fixed 97-symbol
vocabulary). Lengths are parameters (``train_chars``/``val_chars``, the report's 20,000 / 5,000 by
default), and the result says which text was really used (``source``: record it as ``data_source``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from core.data.toy import TRAIN_CHARS, VAL_CHARS

CharText = Literal["toy-fox", "wikitext2"]


@dataclass
class CharData:
    """Train and val batches (a list or a DataLoader), vocabulary size and a description of the source."""

    train: Any
    val: Any
    vocab_size: int
    source: str
    n_train_batches: int
    n_val_batches: int
    is_toy: bool = False
    note: str = ""
    """A line worth logging about the data (window counts, characters outside the vocabulary)."""


def char_batches(text: CharText, *, seq_len: int, batch_size: int, wikitext_source: str = "auto",
                 data_dir: str | os.PathLike[str] | None = None, train_chars: int = TRAIN_CHARS,
                 val_chars: int = VAL_CHARS) -> CharData:
    """The batches of ``text`` at this window length and batch size; raises ValueError when a split is empty."""
    if text == "toy-fox":
        from core.data.toy import DATA_SOURCE, toy_fox_batches

        toy = toy_fox_batches(seq_len, batch_size, train_chars=train_chars, val_chars=val_chars)
        if not toy.train or not toy.val:
            raise ValueError(f"seq_len {seq_len} × batch {batch_size} leaves no complete toy batch")
        return CharData(toy.train, toy.val, toy.vocab_size, DATA_SOURCE, len(toy.train), len(toy.val), is_toy=True,
                        note=f"data: {DATA_SOURCE}; {len(toy.train)} train / {len(toy.val)} val batches")
    from core.data.wikitext import VOCAB_SIZE, wikitext_char_batches

    loaders = wikitext_char_batches(seq_len=seq_len, batch_size=batch_size, source=wikitext_source,  # type: ignore[arg-type]
                                    data_dir=data_dir, train_chars=train_chars, val_chars=val_chars)
    return CharData(loaders.train, loaders.val, VOCAB_SIZE, loaders.source, len(loaders.train), len(loaders.val),
                    note=f"data: {loaders.source}; {loaders.n_train} train / {loaders.n_val} val windows; "
                         f"{loaders.val_oov} val characters outside the vocabulary")
