"""Data pipeline A (core.data.wikitext): vocabulary, windows, loaders and every text source."""

from __future__ import annotations

import hashlib
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from core.data import wikitext as wt
from core.data.wikitext import (
    VOCAB,
    VOCAB_SIZE,
    DataSourceError,
    char_windows,
    count_oov,
    decode,
    encode,
    load_char_splits,
    wikitext_char_batches,
)

SHARED = Path("/work/shared/data/wikitext2")


@pytest.fixture
def no_hub(monkeypatch):
    """The hub is unreachable and not in offline mode (the sandbox's situation, made explicit)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(wt, "_hub_reachable", lambda timeout=3.0: False)


def test_vocabulary_is_fixed_97_symbols():
    assert VOCAB_SIZE == 97
    assert VOCAB[0] == " " and VOCAB[94] == "~" and VOCAB[95] == "\n" and VOCAB[96] == "\t"
    assert encode("A\n\t").tolist() == [33, 95, 96]
    assert encode("–ō").tolist() == [0, 0]  # unknown → index 0 (space)
    assert decode(encode("Hello, world!\n")) == "Hello, world!\n"
    assert count_oov("a–b—c") == 2


def test_excerpt_counts_match_the_report():
    splits = load_char_splits("excerpt")
    assert splits.kind == "excerpt"
    assert len(splits.train) == 20_000 and len(splits.val) == 5_000
    assert "test[:20000] as train" in splits.source and "valid[:5000] as val" in splits.source
    assert splits.val.startswith(" \n = Homarus gammarus = \n")
    assert count_oov(splits.val) == 10 and set(ch for ch in splits.val if ch not in VOCAB) == {"–"}
    loaders = wikitext_char_batches(splits)
    assert (loaders.n_train, loaders.n_val, loaders.val_targets, loaders.val_oov) == (312, 78, 4_992, 10)
    assert [len(x) for x, _ in loaders.val] == [16, 16, 16, 16, 14]
    train_sizes = sorted(len(x) for x, _ in loaders.train)
    assert len(train_sizes) == 20 and train_sizes[0] == 8 and sum(train_sizes) == 312


def test_excerpt_files_are_the_documented_cut():
    folder = Path(wt.__file__).parent / "files" / "wikitext2"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "test_head_20000.txt", "valid_head_5000.txt"]
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in readme and "Merity" in readme
    for name in ("test_head_20000.txt", "valid_head_5000.txt"):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() in readme
    if SHARED.is_dir():  # where the full shared copies exist, the excerpt is their exact head
        splits = load_char_splits("excerpt")
        assert splits.train == (SHARED / "test.txt").read_bytes().decode("utf-8")[:20_000]
        assert splits.val == (SHARED / "valid.txt").read_bytes().decode("utf-8")[:5_000]


def test_windows_are_non_overlapping_next_char_pairs():
    ids = torch.arange(200)
    x, y = char_windows(ids, 64)
    assert x.shape == y.shape == (3, 64)  # (200 - 1) // 64
    assert x[1, 0].item() == 64 and torch.equal(y, x + 1)
    with pytest.raises(DataSourceError):
        char_windows(torch.arange(10), 64)


def test_train_shuffle_follows_the_global_torch_rng_and_val_is_ordered():
    splits = load_char_splits("excerpt")

    def first_batch(seed):
        torch.manual_seed(seed)
        loaders = wikitext_char_batches(splits)
        return next(iter(loaders.train))[0], next(iter(loaders.val))[0]

    a_train, a_val = first_batch(1)
    b_train, b_val = first_batch(1)
    c_train, c_val = first_batch(2)
    assert torch.equal(a_train, b_train) and not torch.equal(a_train, c_train)
    assert torch.equal(a_val, c_val)
    assert decode(a_val[0]) == splits.val[:64]


@pytest.mark.parametrize("names", [("train.txt", "valid.txt"), ("wiki.train.tokens", "wiki.valid.tokens")])
def test_data_dir_reads_both_naming_schemes(tmp_path, names):
    (tmp_path / names[0]).write_text("T" * 30_000, encoding="utf-8")
    (tmp_path / names[1]).write_text("v–" * 4_000, encoding="utf-8")
    splits = load_char_splits("dir", tmp_path)
    assert splits.kind == "dir" and splits.train == "T" * 20_000 and len(splits.val) == 5_000
    assert names[0] in splits.source and str(tmp_path) in splits.source
    # auto with an explicit directory uses it, never anything else
    assert load_char_splits("auto", tmp_path).source == splits.source


def test_missing_data_dir_is_a_clear_error(tmp_path):
    assert issubclass(DataSourceError, ValueError)
    with pytest.raises(DataSourceError, match="does not exist"):
        load_char_splits("dir", tmp_path / "nope")
    with pytest.raises(DataSourceError, match="does not exist"):
        load_char_splits("auto", tmp_path / "nope")  # no silent fallback to the excerpt
    (tmp_path / "train.txt").write_text("x" * 500, encoding="utf-8")
    with pytest.raises(DataSourceError, match="valid.txt"):
        load_char_splits("dir", tmp_path)
    with pytest.raises(DataSourceError, match="--data-dir"):
        load_char_splits("dir", None)
    with pytest.raises(DataSourceError, match="embedded excerpt holds"):
        load_char_splits("excerpt", train_chars=30_000)


def test_unreachable_hub_fails_fast_and_auto_says_why(no_hub):
    started = time.perf_counter()
    with pytest.raises(DataSourceError, match="hub unreachable"):
        load_char_splits("hub")
    assert time.perf_counter() - started < 2.0
    splits = load_char_splits("auto")
    assert splits.kind == "excerpt"
    assert splits.source == (
        "embedded excerpt: wikitext-2 test[:20000] as train (train split unavailable: hub unreachable), "
        "valid[:5000] as val"
    )


def test_offline_hub_without_cache_is_an_error(monkeypatch):
    fake = types.ModuleType("datasets")

    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'wikitext' on the Hub (OfflineModeIsEnabled)")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataSourceError, match="cached copy"):
        load_char_splits("hub")


def test_hub_rows_are_joined_back_into_the_file_layout(monkeypatch):
    rows = ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 : <unk> Chronicles \n"] * 400
    calls = []
    fake = types.ModuleType("datasets")

    def load_dataset(*args, **kwargs):
        calls.append(args)
        return {"train": [{"text": r} for r in rows], "validation": [{"text": r} for r in rows]}

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setattr(wt, "_hub_reachable", lambda timeout=3.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    splits = load_char_splits("hub")
    assert calls == [("wikitext", "wikitext-2-v1")]
    assert splits.kind == "hub" and "wikitext/wikitext-2-v1" in splits.source
    assert splits.train.startswith(" \n = Valkyria Chronicles III = \n \n Senjō")
    assert len(splits.train) == 20_000 and len(splits.val) == 5_000
