"""Alpaca records and the token pipelines C and D of the SmolLM2 reports (spec 3.3, 3.4).

Records come from the hub dataset ``tatsu-lab/alpaca`` (split train, 52,002 rows) when reachable, or
from a JSON file: a list of ``{"instruction", "input", "output"}`` objects (``alpaca_data.json``, or the
6,000-record sample ``alpaca_6k.json``), given by ``--data-file`` or ``$HRM_ALPACA_FILE``.

Subset rule of pipeline C: ``shuffle(seed)`` then the first n rows. Hugging Face ``Dataset.shuffle``
is ``numpy.random.default_rng(seed).permutation(len)``; for a JSON file the same permutation is
applied to the file's records, so a full ``alpaca_data.json`` gives the upstream rows exactly and a
sample file gives a seeded subset of the sample. If n >= the number of records, all records are
used in file order (as upstream did for n >= 52,002). Pipeline D uses the records in file order.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

HUB_DATASET = "tatsu-lab/alpaca"


class AlpacaUnavailable(RuntimeError):
    """No Alpaca source could be opened (hub unreachable and no data file)."""


@dataclass
class Records:
    rows: list[dict[str, str]]
    source: str  # recorded as data_source


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load_records(data_file: str = "") -> Records:
    """Alpaca records from ``data_file``, else ``$HRM_ALPACA_FILE``, else the hub."""
    path = data_file or os.environ.get("HRM_ALPACA_FILE", "")
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise AlpacaUnavailable(f"Alpaca data file not found: {p}")
        rows = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and {"instruction", "output"} <= set(r) for r in rows
        ):
            raise AlpacaUnavailable(f"{p} is not a JSON list of Alpaca records (instruction/input/output)")
        rows = [{"instruction": r["instruction"], "input": r.get("input", "") or "", "output": r["output"]} for r in rows]
        return Records(rows, f"file:{p} ({len(rows)} records, sha256 {_sha256(p)[:16]})")
    from core.smollm2.model import hub_reachable

    if not hub_reachable():
        raise AlpacaUnavailable(
            f"hub dataset {HUB_DATASET} not reachable and no data file given: pass --data-file PATH.json "
            "(a JSON list of Alpaca records) or set HRM_ALPACA_FILE"
        )
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise AlpacaUnavailable("the `datasets` package is not installed: pass --data-file") from exc
    ds = datasets.load_dataset(HUB_DATASET, split="train")
    rows = [{"instruction": r["instruction"], "input": r["input"] or "", "output": r["output"]} for r in ds]
    return Records(rows, f"hub:{HUB_DATASET} (train, {len(rows)} rows)")


def subset_c(records: Records, n: int, seed: int = 42) -> tuple[list[dict[str, str]], str]:
    """Pipeline C's subset: permutation default_rng(seed) then first n (all, in order, if n >= len)."""
    if n >= len(records.rows):
        return list(records.rows), f"all {len(records.rows)} records in file order"
    perm = np.random.default_rng(seed).permutation(len(records.rows))[:n]
    return [records.rows[i] for i in perm], f"shuffle(seed={seed}) then first {n} of {len(records.rows)}"


def format_c(r: dict[str, str]) -> str:
    if r["input"]:
        return f"### Instruction:\n{r['instruction']}\n\n### Input:\n{r['input']}\n\n### Response:\n{r['output']}"
    return f"### Instruction:\n{r['instruction']}\n\n### Response:\n{r['output']}"


def format_d(r: dict[str, str]) -> str:
    return f"{r['instruction']}\n{r['input']}\n{r['output']}"


@dataclass
class PipelineC:
    """Windows of ``seq_len + 1`` tokens: x = w[:, :-1], y = w[:, 1:]."""

    train: torch.Tensor  # [n_train_windows, seq_len + 1] int64
    val: torch.Tensor  # [n_val_windows, seq_len + 1]
    stream_tokens: int
    description: str


def _windows(tokens: torch.Tensor, seq_len: int, batch_size: int) -> torch.Tensor:
    n = max(0, (tokens.numel() - 1) // seq_len)
    n -= n % batch_size  # incomplete last batch dropped
    if n == 0:
        return torch.empty(0, seq_len + 1, dtype=torch.long)
    idx = torch.arange(n)[:, None] * seq_len + torch.arange(seq_len + 1)[None, :]
    return tokens[idx]


def pipeline_c(
    tokenizer: Any, records: Records, *, num_samples: int, seq_len: int, batch_size: int, val_ratio: float,
    seed: int = 42,
) -> PipelineC:
    """Spec 3.3: template, no special tokens, EOS after each sample, one stream, token split, windows."""
    rows, how = subset_c(records, num_samples, seed)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no eos_token_id")
    enc = tokenizer([format_c(r) for r in rows], add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    for ids in enc:
        stream.extend(ids)
        stream.append(eos)
    tokens = torch.tensor(stream, dtype=torch.long)
    cut = int(len(stream) * (1 - val_ratio))
    train = _windows(tokens[:cut], seq_len, batch_size)
    val = _windows(tokens[cut:], seq_len, batch_size) if val_ratio > 0 else torch.empty(0, seq_len + 1, dtype=torch.long)
    desc = f"pipeline C: {records.source}; {how}; {len(stream)} tokens; val_ratio {val_ratio:g}; seq {seq_len}, batch {batch_size}"
    return PipelineC(train, val, len(stream), desc)


def pipeline_d(
    tokenizer: Any, records: Records, *, seq_len: int, num_train: int, num_val: int
) -> PipelineC:
    """Spec 3.4: file order, plain text, ``add_special_tokens=True``, no EOS, full chunks per sample."""
    want = num_train + num_val
    chunks: list[list[int]] = []
    batch = 256
    for start in range(0, len(records.rows), batch):
        enc = tokenizer([format_d(r) for r in records.rows[start:start + batch]], add_special_tokens=True)["input_ids"]
        for ids in enc:
            j = 0
            while j < len(ids) - seq_len and len(chunks) < want:
                chunks.append(ids[j:j + seq_len + 1])
                j += seq_len
            if len(chunks) >= want:
                break
        if len(chunks) >= want:
            break
    note = ""
    if len(chunks) < want:
        # A sample file (e.g. 6,000 records) can hold fewer chunks than asked: keep the train/val
        # proportion on what there is, and say so in the data source.
        if len(chunks) < 2:
            raise ValueError(f"pipeline D found {len(chunks)} chunks of {seq_len + 1} tokens in {len(records.rows)} records")
        n_val = max(1, round(len(chunks) * num_val / want))
        num_train = len(chunks) - n_val
        note = f"; SHORT: only {len(chunks)} of {want} chunks in the source, split in proportion"
    t = torch.tensor(chunks, dtype=torch.long)
    desc = (f"pipeline D: {records.source}; file order; {len(chunks)} chunks of {seq_len + 1} tokens "
            f"({num_train} train, {len(chunks) - num_train} val){note}")
    return PipelineC(t[:num_train], t[num_train:], int(t.numel()), desc)


def tiny_records(n: int = 64, seed: int = 0) -> Records:
    """Generated Alpaca-shaped records (no license concerns) for tests and ``--tiny`` runs."""
    rng = np.random.default_rng(seed)
    words = ("the quick brown fox jumps over lazy dog a model learns tokens from data while layers "
             "refine hidden states and early exit saves compute on easy tokens").split()
    rows = []
    for i in range(n):
        k = int(rng.integers(20, 80))
        text = " ".join(words[j] for j in rng.integers(0, len(words), size=k))
        rows.append({
            "instruction": f"Write sentence number {i} about foxes.",
            "input": "" if i % 3 else f"context {i}",
            "output": text,
        })
    return Records(rows, f"generated:{n} tiny records (seed {seed})")
