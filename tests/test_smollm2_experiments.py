"""The SmolLM2 experiments end to end on a tiny random Llama and generated Alpaca records (CPU, seconds)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.experiments.base import RecordingEmitter
from core.experiments.cascade import EXPERIMENT as CASCADE, RECIPES
from core.experiments.hard_tokens import EXPERIMENT as HARD
from core.experiments.saturation import EXPERIMENT as SAT
from core.smollm2.alpaca import tiny_records
from core.smollm2.model import build_tiny_model_dir
from core.smollm2.ops import STAT_KEYS, expected_hard_count

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("smollm2")
    model = build_tiny_model_dir(d / "model")
    data = d / "alpaca.json"
    data.write_text(json.dumps(tiny_records(96).rows))
    return {"model": model, "data_file": str(data), "device": "cpu"}


def _run(exp, **kw) -> RecordingEmitter:
    e = RecordingEmitter()
    exp.run(exp.make_config(**kw), e)
    return e


# --- configs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("exp", [SAT, HARD, CASCADE])
def test_every_field_is_described(exp):
    for name, f in exp.config_cls.model_fields.items():
        assert f.description, name


def test_configs_reject_out_of_range_values():
    with pytest.raises(ValidationError):
        CASCADE.make_config(hard_ratio=1.5)
    with pytest.raises(ValidationError):
        CASCADE.make_config(hard_ratio=0.0)
    with pytest.raises(ValidationError):
        CASCADE.make_config(recipe="002")
    with pytest.raises(ValidationError):
        CASCADE.make_config(no_such_flag=1)
    with pytest.raises(ValidationError):
        SAT.make_config(hard_ratios="0.3,1.5")
    with pytest.raises(ValidationError):
        HARD.make_config(hard_ratio=1.0)
    assert SAT.make_config(hard_ratios=" 0.3, .5 ").hard_ratios == "0.3,.5"
    assert CASCADE.make_config(hard_ratio=0.3).hard_ratio == 0.3


def test_recipe_defaults_and_overrides():
    r0 = CASCADE.make_config(variant="published").resolved()
    assert (r0.pipeline, r0.stage_layers, r0.hard_ratio, r0.lr_decay, r0.schedule) == ("C", 2, 0.1, 0.5, "linear")
    r1 = CASCADE.make_config(variant="published", recipe="001", hard_ratio=0.6).resolved()
    assert (r1.pipeline, r1.stage_layers, r1.hard_ratio, r1.selection, r1.cos_rule) == ("D", 8, 0.6, "inclusive", "whole")
    assert CASCADE.make_config(variant="corrected").resolved().lr_decay == 1.0
    # Resolved: nothing of the recipe left unset (device and amp stay: they depend on the machine).
    assert all(v is not None and v != "auto" for k, v in r1.model_dump().items() if k not in ("device", "amp"))
    assert r1.resolved() == r1 and type(r1.hard_ratio) is float
    assert r0.effective() == {**RECIPES["000"], "lr_decay": 0.5, "seq_len": 128}
    h = HARD.make_config(variant="published", head_init="base").resolved()
    assert (h.cos_rule, h.threshold_rule, h.next_stage, h.head_init) == ("penultimate", "fixed", "probe", "base")
    h = HARD.make_config().resolved()
    assert (h.cos_rule, h.threshold_rule, h.next_stage, h.head_init) == ("last2avg", "quantile", "addon", "base")


def test_registered_in_the_catalog():
    code = ("import core.experiments as c; cat = c.catalog(); "
            "print(all(n in cat for n in ('saturation', 'hard-tokens', 'cascade')), cat['cascade'].report)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["True", "000"]


# --- saturation ------------------------------------------------------------------------------------------

def test_saturation_tiny(files):
    e = _run(SAT, num_samples=24, seq_len=32, threshold_layer=3, **files)
    (layers,) = e.of("layers")
    assert sorted(layers["layers"]) == [1, 2, 3, 4] and layers["epoch"] is None
    assert set(STAT_KEYS) <= set(layers["layers"][1])
    tables = e.tables()
    assert [r["layer"] for r in tables["saturation"]] == [1, 2, 3, 4]
    th = tables["thresholds"]
    assert [r["hard_ratio"] for r in th] == [0.3, 0.5, 0.7]
    assert th[0]["threshold"] <= th[1]["threshold"] <= th[2]["threshold"]
    s = e.summary_metrics()
    assert s["tokens"] % (8 * 32) == 0 and s["threshold_50pct"] == th[1]["threshold"]
    info = e.infos()
    assert info["quirks"] == [] and info["data_source"].startswith("pipeline C: file:")
    pub = _run(SAT, variant="published", num_samples=24, seq_len=32, threshold_layer=3, **files)
    assert pub.infos()["quirks"] == ["B18"] and pub.infos()["cos_dtype"] == "float16"


# --- hard-tokens -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["published", "corrected"])
def test_hard_tokens_both_conditions(files, variant):
    e = _run(HARD, variant=variant, num_samples=24, val_samples=8, seq_len=32, epochs=2, threshold=0.97, **files)
    stages = e.of("stage")
    assert [s["stage"] for s in stages] == [1, 2]
    s1, s2 = e.summary_metrics(1), e.summary_metrics(2)
    assert s1["train_tokens"] == s2["train_tokens"] > 0  # the same number of tokens in both conditions
    s = e.summary_metrics()
    assert s["ppl_ratio"] == pytest.approx(s["hard_val_ppl"] / s["all_val_ppl"])
    assert s["hard_val_ppl"] == pytest.approx(math.exp(min(x["metrics"]["val_loss"] for x in e.of("epoch") if x["stage"] == 1)))
    assert len([x for x in e.of("epoch") if x["stage"] == 1]) == 2
    info = e.infos()
    if variant == "published":
        assert info["next_stage"] == "probe" and "B10" in info["quirks"] and s["threshold"] == 0.97
        assert s1["params"] == 32 * 260  # a bias-free Linear(hidden, vocab)
    else:
        assert info["next_stage"] == "addon" and info["quirks"] == []
        assert s["train_hard_tokens"] <= expected_hard_count(int(s["train_tokens_total"]), 0.1, inclusive=False)


# --- cascade ---------------------------------------------------------------------------------------------------

def _exit_checks(e, *, all_scored: bool):
    s = e.summary_metrics()
    rows = e.tables()["early_exit"]
    total = int(s["val_tokens"])
    assert rows[0]["input_tokens"] == total
    compute = 100 * sum(r["input_tokens"] * r["layers"] for r in rows) / (total * sum(r["layers"] for r in rows))
    assert s["compute_pct"] == pytest.approx(compute)
    if all_scored:
        assert sum(r["exit_tokens"] for r in rows) == total
        for a, b in zip(rows, rows[1:]):
            assert b["input_tokens"] == a["input_tokens"] - a["exit_tokens"]
    return rows


def test_cascade_published_001_length1_handoff(files):
    e = _run(CASCADE, variant="published", recipe="001", num_samples=40, val_samples=8, seq_len=32, stages=2,
             stage_layers=2, epochs=2, **files)
    info = e.infos()
    assert info["quirks"] == ["B7", "B8", "B9"] and info["code_path"] == "length1"
    s1, s2 = e.summary_metrics(1), e.summary_metrics(2)
    assert s1["train_tokens_in"] == 40 * 32
    assert s2["train_tokens_in"] == s1["train_hard_tokens"]  # stage 2 receives exactly stage 1's hard tokens
    for s in (s1, s2):  # inclusive rule; ties can only add tokens
        assert s["train_hard_tokens"] >= s["train_hard_expected"]
        assert s["val_hard_tokens"] >= s["val_hard_expected"]  # the rule on val's own token count (B9)
        assert s["threshold"] != s["val_threshold"]  # B9: val uses its own quantile
    assert s1["val_tokens_in"] == 8 * 32 and s2["val_tokens_in"] == s1["val_hard_tokens"]
    ep1 = [x["metrics"] for x in e.of("epoch") if x["stage"] == 1]
    assert s1["last_val_ppl"] == pytest.approx(ep1[-1]["val_ppl"])  # B8: the last epoch's weights are kept
    _exit_checks(e, all_scored=True)


def test_cascade_published_000_repack(files):
    e = _run(CASCADE, variant="published", recipe="000", num_samples=40, seq_len=32, epochs=2, hard_ratio=0.3, **files)
    info = e.infos()
    assert info["quirks"][:7] == ["B1", "B2", "B3", "B4", "B5", "B6", "B9"]
    s1 = e.summary_metrics(1)
    assert s1["train_hard_tokens_packed"] == (s1["train_hard_tokens"] // 32) * 32
    assert s1["train_hard_dropped"] == s1["train_hard_tokens"] - s1["train_hard_tokens_packed"]
    assert s1["train_hard_tokens"] <= s1["train_hard_expected"]  # strict rule; ties can only remove tokens
    assert s1["lr"] == pytest.approx(5e-5)  # B6
    s = e.summary_metrics()
    assert s["val_tokens"] % (16 * 32) == 0
    assert s["llm1_val_ppl_after"] == pytest.approx(s1["last_val_ppl"])
    rows = _exit_checks(e, all_scored=False)
    scored = sum(r["exit_tokens"] for r in rows)
    assert scored + s["exit_dropped_tokens"] == s["val_tokens"]  # B4: dropped tokens counted, never scored


def test_cascade_corrected_context_two_stages(files):
    e = _run(CASCADE, recipe="000", num_samples=40, seq_len=32, epochs=2, hard_ratio=0.3, stages=2, **files)
    info = e.infos()
    assert info["quirks"] == [] and info["code_path"] == "context"
    s1, s2 = e.summary_metrics(1), e.summary_metrics(2)
    assert s1["train_tokens_in"] == e.summary_metrics()["train_tokens"]
    assert s2["train_tokens_in"] == s1["train_hard_tokens"]
    assert s1["threshold"] == s1["val_threshold"]  # val uses the train threshold
    assert s1["hard_val_ppl_after"] == pytest.approx(s1["best_val_ppl"], rel=1e-4)  # best weights restored
    assert [x["stage"] for x in e.of("stage")] == [1, 2]
    rows = _exit_checks(e, all_scored=True)
    assert all(r["context_tokens"] >= r["input_tokens"] for r in rows)
    s = e.summary_metrics()
    assert s["compute_ctx_pct"] >= s["compute_pct"]
    assert s["llm0_hard_val_ppl"] == pytest.approx(s1["input_hard_val_ppl"])


def test_token_progress_is_throttled_and_ends_at_the_total():
    from core.smollm2.progress import TokenProgress

    now = [0.0]
    e = RecordingEmitter()
    p = TokenProgress(e, "frozen base pass", 1000, every_s=5, log_every_s=60, clock=lambda: now[0])
    for step in range(1, 11):  # 100 tokens every 2 s
        now[0] = 2.0 * step
        p.update(100 * step)
    infos = [x["fields"]["progress"] for x in e.of("info")]
    assert [i["tokens_done"] for i in infos] == [300, 600, 900, 1000]  # every >= 5 s, and the end
    assert infos[0] == {"phase": "frozen base pass", "tokens_done": 300, "tokens_total": 1000, "tokens_per_s": 50.0,
                        "eta_s": 14.0, "elapsed_s": 6.0}
    assert infos[-1]["eta_s"] == 0.0 and not e.of("log")  # 20 s: no log line yet
    now[0] = 70.0
    p.update(500)
    assert e.of("log")[-1]["message"] == "frozen base pass: 500/1,000 tokens (50 %), 7 tokens/s, ETA 1m10s"


def test_cascade_reports_the_base_pass_progress(files):
    e = _run(CASCADE, variant="corrected", recipe="000", num_samples=40, seq_len=32, stages=1, epochs=1, **files)
    progress = [x["fields"]["progress"] for x in e.of("info") if "progress" in x["fields"]]
    s = e.summary_metrics()
    assert progress and progress[-1]["tokens_done"] == progress[-1]["tokens_total"] == s["train_tokens"] + s["val_tokens"]
    assert any(x["message"].startswith("frozen base pass over") for x in e.of("log"))

