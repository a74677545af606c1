"""The character pipelines as building blocks: lengths as parameters, counts known before building."""

from __future__ import annotations

import pytest

from core.data.char_data import char_batches
from core.data.toy import DATA_SOURCE, toy_batch_counts, toy_fox_batches


@pytest.mark.parametrize(("seq_len", "batch_size", "train_chars", "val_chars"), [
    (64, 16, 20_000, 5_000), (128, 32, 20_000, 5_000), (8, 3, 2_000, 700), (1024, 16, 20_000, 5_000),
    (32, 4, 50_000, 9_000),
])
def test_batch_counts_are_known_without_building_the_batches(seq_len, batch_size, train_chars, val_chars):
    built = toy_fox_batches(seq_len, batch_size, train_chars=train_chars, val_chars=val_chars)
    assert toy_batch_counts(seq_len, batch_size, train_chars, val_chars) == (len(built.train), len(built.val))


def test_the_report_shape_and_other_lengths():
    report = toy_fox_batches()  # 20,000 / 5,000 characters at 64 × 16: the report's 19 / 4 batches
    assert (len(report.train), len(report.val), report.vocab_size) == (19, 4, 30)
    longer = toy_fox_batches(train_chars=40_000, val_chars=10_000)
    assert (len(longer.train), len(longer.val)) == (39, 10)
    assert all(x.shape == (16, 64) for x, _ in longer.train)


def test_one_entry_point_for_both_texts():
    toy = char_batches("toy-fox", seq_len=64, batch_size=16, train_chars=10_000)
    assert toy.is_toy and toy.source == DATA_SOURCE and (toy.n_train_batches, toy.n_val_batches) == (9, 4)
    wiki = char_batches("wikitext2", seq_len=64, batch_size=16, wikitext_source="excerpt", train_chars=6_401,
                        val_chars=1_000)
    assert not wiki.is_toy and wiki.vocab_size == 97 and "excerpt" in wiki.source
    assert (wiki.n_train_batches, wiki.n_val_batches) == (7, 1)  # 100 windows → 6 × 16 + 4; 15 windows
    with pytest.raises(ValueError, match="no complete toy batch"):
        char_batches("toy-fox", seq_len=1024, batch_size=16)
