"""Data pipeline A (spec 1.1): real WikiText-2 characters for report 004's Experiments 1–4.

Public interface (other experiments import it; keep it stable):

- :data:`VOCAB` / :data:`VOCAB_SIZE`: the fixed 97-symbol vocabulary (ASCII 32…126, then ``\\n``, ``\\t``);
  :func:`encode` maps any other character to index 0 (the space), :func:`count_oov` counts those.
- :func:`load_char_splits` → :class:`CharSplits`: the train and val *texts* and a ``source`` string that
  says exactly which text was used. Record it with ``emit.info(data_source=splits.source)``.
- :func:`char_windows`: non-overlapping next-character windows, ``(len − 1) // seq_len`` of them.
- :func:`wikitext_char_batches` → :class:`CharLoaders`: the two DataLoaders of pipeline A (train shuffled
  from the global torch RNG, val in order).

Where the text comes from (``source``):

- ``"dir"``: ``data_dir`` holds ``train.txt`` / ``valid.txt`` (pytorch/examples names) or
  ``wiki.train.tokens`` / ``wiki.valid.tokens`` (the WikiText-2 archive names).
- ``"hub"``: ``datasets.load_dataset("wikitext", "wikitext-2-v1")``; the rows are joined back into the
  original file layout. Fails fast when the hub is unreachable (no 25-second retry loop), and honours
  ``HF_HUB_OFFLINE=1`` (then only a locally cached copy is used).
- ``"excerpt"``: the copy shipped in ``core/data/files/wikitext2/``: the first 20,000 characters of the
  *test* split stand in for the unavailable train split, and the first 5,000 characters of valid.
- ``"auto"`` (default): ``dir`` when ``data_dir`` is given; otherwise the hub when it answers (or a cached
  copy exists offline); otherwise the excerpt, and the ``source`` string says why.

A requested source that cannot be read raises :class:`DataSourceError`; nothing ever falls back to
synthetic text (the upstream scripts did, quirk B11).

torch is imported lazily (only by the loader builders), so this module is cheap to import.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch.utils.data import DataLoader

__all__ = [
    "VOCAB",
    "VOCAB_SIZE",
    "SourceName",
    "DataSourceError",
    "CharSplits",
    "CharLoaders",
    "encode",
    "decode",
    "count_oov",
    "load_char_splits",
    "char_windows",
    "wikitext_char_batches",
]

VOCAB: tuple[str, ...] = tuple(chr(c) for c in range(32, 127)) + ("\n", "\t")
"""The fixed pipeline-A vocabulary: 95 printable ASCII characters (index 0 = space), then \\n (95), \\t (96)."""
VOCAB_SIZE = len(VOCAB)  # 97
_INDEX = {ch: i for i, ch in enumerate(VOCAB)}

SourceName = Literal["auto", "hub", "dir", "excerpt"]

HUB_DATASET = ("wikitext", "wikitext-2-v1")
EXCERPT_TRAIN_FILE = "test_head_20000.txt"
EXCERPT_VAL_FILE = "valid_head_5000.txt"
_EXCERPT_TRAIN_CHARS = 20_000
_EXCERPT_VAL_CHARS = 5_000
_DIR_NAMES = {"train": ("train.txt", "wiki.train.tokens"), "valid": ("valid.txt", "wiki.valid.tokens")}


class DataSourceError(ValueError):
    """The requested text could not be read (missing directory or file, hub unreachable, excerpt too short).

    ``short`` is a few words for run records (e.g. ``"hub unreachable"``); ``str()`` is the full one-line message.
    """

    def __init__(self, message: str, short: str | None = None) -> None:
        super().__init__(message)
        self.short = short or message


@dataclass(frozen=True)
class CharSplits:
    """The texts a run trains and validates on, and a human-readable ``source`` naming them exactly."""

    train: str
    val: str
    source: str
    kind: Literal["hub", "dir", "excerpt"]
    """Which loader produced the texts (``auto`` resolved)."""


@dataclass
class CharLoaders:
    """Pipeline-A loaders plus what a run records about them."""

    train: DataLoader
    val: DataLoader
    source: str
    n_train: int
    """Number of train windows (312 for 20,000 characters at seq 64)."""
    n_val: int
    """Number of val windows (78 for 5,000 characters)."""
    val_oov: int
    """Characters of the val text outside the vocabulary (mapped to index 0)."""
    train_oov: int

    @property
    def val_targets(self) -> int:
        return self.n_val * self.val.dataset.tensors[1].shape[1]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------- vocabulary


def encode(text: str) -> torch.Tensor:
    """Character → vocabulary index (unknown → 0) as a LongTensor."""
    import torch

    return torch.tensor([_INDEX.get(ch, 0) for ch in text], dtype=torch.long)


def decode(ids: Any) -> str:
    """Indices (any iterable of ints) → text."""
    return "".join(VOCAB[int(i)] for i in ids)


def count_oov(text: str) -> int:
    """How many characters of ``text`` are outside :data:`VOCAB` (they become spaces)."""
    return sum(ch not in _INDEX for ch in text)


# ---------------------------------------------------------------------------------------- sources


def _read_text(path: Path) -> str:
    # Characters, not bytes, and no newline translation: exactly what the upstream slicing saw.
    return path.read_bytes().decode("utf-8")


def _from_dir(data_dir: str | os.PathLike[str], train_chars: int, val_chars: int) -> CharSplits:
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataSourceError(f"data directory {str(root)!r} does not exist")
    found: dict[str, Path] = {}
    for split, names in _DIR_NAMES.items():
        for name in names:
            if (root / name).is_file():
                found[split] = root / name
                break
        else:
            raise DataSourceError(f"no {' or '.join(names)} in data directory {str(root)!r}")
    train = _read_text(found["train"])[:train_chars]
    val = _read_text(found["valid"])[:val_chars]
    source = (
        f"wikitext-2 files in {root}: {found['train'].name}[:{train_chars}] as train, "
        f"{found['valid'].name}[:{val_chars}] as val"
    )
    return CharSplits(train=train, val=val, source=source, kind="dir")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"} or os.environ.get(
        "HF_DATASETS_OFFLINE", ""
    ).strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection attempt to the hub endpoint: the datasets client would retry for ~25 s."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _rows_to_text(rows: list[str]) -> str:
    """Hugging Face wikitext rows → the original file: rows keep their own ``\\n``; blank rows were ``" \\n"``."""
    return "".join(row if row else " \n" for row in rows)


def _from_hub(train_chars: int, val_chars: int) -> CharSplits:
    offline = _hub_offline()
    if not offline and not _hub_reachable():
        raise DataSourceError(
            "Hugging Face hub unreachable; set HF_HUB_OFFLINE=1 to use a cached copy, or pass a data directory",
            short="hub unreachable",
        )
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a project dependency
        raise DataSourceError(f"the 'datasets' package is not installed ({exc})") from None
    try:
        dataset = datasets.load_dataset(*HUB_DATASET)
    except Exception as exc:  # the client raises ConnectionError, FileNotFoundError, OfflineModeIsEnabled...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "cached copy (HF_HUB_OFFLINE set)" if offline else "hub"
        raise DataSourceError(
            f"could not load {'/'.join(HUB_DATASET)} from the {where}: {first_line}",
            short="hub offline, no cached copy" if offline else "hub load failed",
        ) from None

    def head(split: str, n: int) -> str:
        # Only as many rows as needed: a few hundred rows cover 20,000 characters.
        parts: list[str] = []
        size = 0
        for row in dataset[split]:
            piece = row["text"] or " \n"
            parts.append(piece)
            size += len(piece)
            if size >= n:
                break
        return "".join(parts)[:n]

    train, val = head("train", train_chars), head("validation", val_chars)
    source = (
        f"hub {'/'.join(HUB_DATASET)}{' (cached)' if offline else ''}: "
        f"train[:{train_chars}] as train, validation[:{val_chars}] as val"
    )
    return CharSplits(train=train, val=val, source=source, kind="hub")


def _from_excerpt(train_chars: int, val_chars: int, reason: str | None) -> CharSplits:
    if train_chars > _EXCERPT_TRAIN_CHARS or val_chars > _EXCERPT_VAL_CHARS:
        raise DataSourceError(
            f"the embedded excerpt holds {_EXCERPT_TRAIN_CHARS} train / {_EXCERPT_VAL_CHARS} val characters; "
            f"{train_chars} / {val_chars} requested (pass a data directory for more)"
        )
    folder = resources.files("core.data") / "files" / "wikitext2"
    train = (folder / EXCERPT_TRAIN_FILE).read_bytes().decode("utf-8")[:train_chars]
    val = (folder / EXCERPT_VAL_FILE).read_bytes().decode("utf-8")[:val_chars]
    why = reason or "train split unavailable"
    source = (
        f"embedded excerpt: wikitext-2 test[:{train_chars}] as train ({why}), valid[:{val_chars}] as val"
    )
    return CharSplits(train=train, val=val, source=source, kind="excerpt")


def load_char_splits(
    source: SourceName = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    train_chars: int = 20_000,
    val_chars: int = 5_000,
) -> CharSplits:
    """The train and val texts of pipeline A (first ``train_chars`` / ``val_chars`` characters).

    ``source`` is one of ``auto``, ``dir``, ``hub``, ``excerpt`` (see the module docstring). Raises
    :class:`DataSourceError` when the requested source cannot be read; ``auto`` only ever resolves to the
    embedded excerpt when no ``data_dir`` was given and the hub gave nothing, and says so in ``source``.
    """
    if train_chars < 2 or val_chars < 2:
        raise DataSourceError("train_chars and val_chars must be at least 2")
    if source == "dir":
        if data_dir is None:
            raise DataSourceError("source 'dir' needs a data directory (--data-dir)")
        return _from_dir(data_dir, train_chars, val_chars)
    if source == "hub":
        return _from_hub(train_chars, val_chars)
    if source == "excerpt":
        return _from_excerpt(train_chars, val_chars, "excerpt requested")
    if source != "auto":
        raise DataSourceError(f"unknown data source {source!r} (auto, dir, hub or excerpt)")
    if data_dir is not None:  # an explicit directory never falls back to anything
        return _from_dir(data_dir, train_chars, val_chars)
    try:
        return _from_hub(train_chars, val_chars)
    except DataSourceError as exc:
        return _from_excerpt(train_chars, val_chars, f"train split unavailable: {exc.short}")


# ---------------------------------------------------------------------------------------- windows and loaders


def char_windows(ids: torch.Tensor, seq_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows with stride ``seq_len``: x = ids[s:s+L], y = ids[s+1:s+L+1], s = i·L.

    There are ``(len(ids) − 1) // seq_len`` of them, all complete (the upstream padding never triggers).
    """
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise DataSourceError(f"text of {len(ids)} characters is too short for one window of {seq_len}")
    x = ids[: n * seq_len].view(n, seq_len)
    y = ids[1 : n * seq_len + 1].view(n, seq_len)
    return x.clone(), y.clone()


def wikitext_char_batches(
    splits: CharSplits | None = None,
    *,
    seq_len: int = 64,
    batch_size: int = 16,
    source: SourceName = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    train_chars: int = 20_000,
    val_chars: int = 5_000,
) -> CharLoaders:
    """Pipeline-A DataLoaders: train ``shuffle=True`` (sampler seeds drawn from the global torch RNG at
    each epoch, as upstream), val ``shuffle=False``. Loads the texts with :func:`load_char_splits` unless
    ``splits`` is given. At the defaults: 312 train windows (20 batches: 19 × 16 + 8) and 78 val windows
    (5 batches: 4 × 16 + 14, 4,992 target characters).
    """
    from torch.utils.data import DataLoader, TensorDataset

    if splits is None:
        splits = load_char_splits(source, data_dir, train_chars, val_chars)
    train_x, train_y = char_windows(encode(splits.train), seq_len)
    val_x, val_y = char_windows(encode(splits.val), seq_len)
    return CharLoaders(
        train=DataLoader(TensorDataset(train_x, train_y), batch_size=batch_size, shuffle=True),
        val=DataLoader(TensorDataset(val_x, val_y), batch_size=batch_size, shuffle=False),
        source=splits.source,
        n_train=len(train_x),
        n_val=len(val_x),
        val_oov=count_oov(splits.val),
        train_oov=count_oov(splits.train),
    )
