"""Mechanics of the SmolLM2 experiments on a tiny random Llama (no download, seconds on CPU)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.smollm2 import ops
from core.smollm2.alpaca import Records, pipeline_c, pipeline_d, subset_c, tiny_records
from core.smollm2.model import (
    DEFAULT_MODEL_ID, EXPECTED_ADDON_PARAMS, EXPECTED_BASE_PARAMS, ModelUnavailable, addon_config,
    build_tiny_model_dir, count_params, load_base, resolve_model, smollm2_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    lm, tok, _ = load_base(tiny_dir)
    return lm, tok


# --- thresholds: the quantile rules ---------------------------------------------------------------

@pytest.mark.parametrize("n,q", [(128_000, 0.9), (12_800, 0.9), (115_200, 0.9), (10_368, 0.9), (1_001, 0.3), (37, 0.5)])
def test_inclusive_count_is_floor_q_n_minus_1_plus_1(n, q):
    scores = torch.randperm(n).float() / n  # distinct values
    tau = ops.quantile(scores, q)
    got = int(ops.hard_mask(scores, tau, inclusive=True).sum())
    assert got == math.floor(q * (n - 1)) + 1 == ops.expected_hard_count(n, q, inclusive=True)


@pytest.mark.parametrize("n,q", [(192_512, 0.1), (20_480, 0.1), (1_001, 0.3), (37, 0.5), (11, 0.5)])
def test_strict_count_is_ceil_q_n_minus_1(n, q):
    scores = torch.randperm(n).float() / n
    tau = ops.quantile(scores, q)
    got = int(ops.hard_mask(scores, tau, inclusive=False).sum())
    assert got == math.ceil(q * (n - 1)) == ops.expected_hard_count(n, q, inclusive=False)


def test_report_counts_follow_the_rules():
    # report 001: 115,200 / 11,520 / 103,680 / 10,368 / 93,312 / 9,331; report 000: 19,252 before re-packing
    assert ops.expected_hard_count(128_000, 0.9, inclusive=True) == 115_200
    assert ops.expected_hard_count(12_800, 0.9, inclusive=True) == 11_520
    assert ops.expected_hard_count(115_200, 0.9, inclusive=True) == 103_680
    assert ops.expected_hard_count(11_520, 0.9, inclusive=True) == 10_368
    assert ops.expected_hard_count(103_680, 0.9, inclusive=True) == 93_312
    assert ops.expected_hard_count(10_368, 0.9, inclusive=True) == 9_331
    assert ops.expected_hard_count(192_512, 0.1, inclusive=False) == 19_252


def test_quantile_matches_torch_and_the_large_fallback(monkeypatch):
    x = torch.randn(5001)
    for q in (0.1, 0.37, 0.9):
        want = float(torch.quantile(x, q))
        assert ops.quantile(x, q) == pytest.approx(want, abs=1e-6)
        monkeypatch.setattr(ops, "TORCH_QUANTILE_MAX", 100)  # the sort-based path for > 16M values
        assert ops.quantile(x, q) == pytest.approx(want, abs=1e-6)
        monkeypatch.undo()


# --- early-exit accounting -----------------------------------------------------------------------

def test_compute_pct_formula_reproduces_report_000():
    assert ops.compute_pct([20_480, 4_992], [30, 2], 20_480) == pytest.approx(95.27, abs=0.005)
    assert ops.compute_pct([100], [30], 100) == pytest.approx(100.0)


def test_repack_drops_the_remainder():
    h = torch.arange(300 * 3, dtype=torch.float32).view(300, 3)
    y = torch.arange(300)
    hp, yp, dropped = ops.repack(h, y, 128)
    assert hp.shape == (2, 128, 3) and yp.shape == (2, 128) and dropped == 44
    assert torch.equal(yp.reshape(-1), y[:256])


# --- hidden-state semantics and the length-1 forward ----------------------------------------------

def test_hidden_state_semantics(tiny):
    lm, _ = tiny
    x = torch.randint(0, 256, (2, 12))
    raw = []
    hooks = [layer.register_forward_hook(lambda m, i, o: raw.append(o[0] if isinstance(o, tuple) else o))
             for layer in lm.model.layers]
    try:
        with torch.no_grad():
            out = lm.model(input_ids=x, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    hs = out.hidden_states
    L = lm.config.num_hidden_layers
    assert len(hs) == L + 1
    assert torch.allclose(hs[0], lm.model.embed_tokens(x))  # index 0 = embeddings
    for i in range(1, L):
        assert torch.allclose(hs[i], raw[i - 1])  # index i = output of layer i
    assert torch.allclose(hs[L], lm.model.norm(raw[L - 1]), atol=1e-6)  # last = final-normed
    assert not torch.allclose(hs[L], raw[L - 1])
    assert torch.allclose(hs[L], out.last_hidden_state)


def test_cos_rules_pick_the_documented_pairs():
    g = torch.Generator().manual_seed(0)
    hs = [torch.randn(3, 5, 8, generator=g) for _ in range(6)]  # 5 layers
    c = ops.cos_sim
    assert torch.allclose(ops.cos_rule(hs, "penultimate"), c(hs[-3], hs[-2]))
    assert torch.allclose(ops.cos_rule(hs, "final"), c(hs[-2], hs[-1]))
    assert torch.allclose(ops.cos_rule(hs, "last2avg"), (c(hs[-4], hs[-3]) + c(hs[-3], hs[-2])) / 2)
    assert torch.allclose(ops.cos_rule(hs, "whole"), c(hs[0], hs[-1]), atol=1e-6)
    assert torch.allclose(ops.cos_rule(hs[:3], "last2avg"), c(hs[0], hs[1]))  # 2-layer model
    fp16 = ops.cos_sim(hs[1], hs[1] + 1e-3, dtype=torch.float16)
    assert fp16.dtype == torch.float16


def test_length1_states_equal_hf_forward_on_single_token_sequences(tiny):
    lm, _ = tiny
    from core.smollm2.model import make_addon

    addon = make_addon(lm.config, 3).eval()
    x = torch.randn(7, lm.config.hidden_size)
    with torch.no_grad():
        ref = addon.model(inputs_embeds=x[:, None, :], output_hidden_states=True).hidden_states
        mine = ops.length1_states(addon.model, x, all_states=True)
        short = ops.length1_states(addon.model, x)
    assert len(mine) == len(ref) == 4
    for a, b in zip(mine, ref):
        assert torch.allclose(a, b[:, 0], atol=1e-5)
    assert torch.allclose(short[-1], ref[-1][:, 0], atol=1e-5)


def test_pure_length1_forward_is_bit_identical_to_the_modules(tiny):
    lm, _ = tiny
    from core.smollm2.model import make_addon

    addon = make_addon(lm.config, 3).eval()
    x = torch.randn(9, lm.config.hidden_size)
    with torch.no_grad():
        ref = ops.length1_forward(addon)(x)
        pure = ops.pure_length1_forward(addon)(x)
    assert torch.equal(ref, pure)


def test_layer_cos_all_equals_pairwise_cos(tiny):
    hs = [torch.randn(3, 5, 16) for _ in range(6)]
    for dt in (None, torch.float16):
        pair = torch.stack([ops.cos_sim(hs[i - 1], hs[i], dtype=dt).float() for i in range(1, 6)])
        assert torch.equal(ops.layer_cos_all(hs, dt), pair)


def test_static_losses_equal_the_eager_masked_losses(tiny):
    """The CUDA-graph losses (padded batch, index -1) give the eager losses of the unpadded batch."""
    lm, _ = tiny
    from core.smollm2.model import make_addon
    from core.smollm2.train import static_token_loss, static_window_ce, static_window_loss

    torch.manual_seed(0)
    addon = make_addon(lm.config, 2).eval()
    D, V = lm.config.hidden_size, lm.config.vocab_size
    fwd = ops.length1_forward(addon)
    x, y = torch.randn(20, D), torch.randint(0, V, (20,))
    idx = torch.tensor([3, 7, 11, 19, 0])
    loss, k = static_token_loss(fwd, x, y, None)(torch.cat([idx, torch.full((3,), -1)]))
    ref = torch.nn.functional.cross_entropy(fwd(x[idx]), y[idx])
    assert int(k) == 5 and torch.allclose(loss, ref, atol=1e-6)

    h, yy = torch.randn(6, 8, D), torch.randint(0, V, (6, 8))
    m = torch.rand(6, 8) < 0.5
    m[2] = True
    keep = torch.arange(6)
    rows = torch.tensor([2, 5, 1])
    loss, k = static_window_loss(static_window_ce(addon, None), keep, h, yy, m)(torch.tensor([2, 5, 1, -1]))
    out = addon.model(inputs_embeds=h[rows]).last_hidden_state
    mr = m[rows]
    ref = torch.nn.functional.cross_entropy(addon.lm_head(out[mr]), yy[rows][mr])
    assert int(k) == int(mr.sum()) and torch.allclose(loss, ref, atol=1e-6)


def test_run_frozen_is_batched_and_consistent(tiny):
    lm, _ = tiny
    x = torch.randint(0, 256, (6, 16))
    y = torch.randint(0, 256, (6, 16))
    a = ops.run_frozen(lm, input_ids=x, labels=y, rule="last2avg", batch_size=6, keep_hidden=True, layer_cos=True)
    b = ops.run_frozen(lm, input_ids=x, labels=y, rule="last2avg", batch_size=4, keep_hidden=True)
    assert torch.allclose(a.cos, b.cos, atol=1e-6) and torch.allclose(a.ce, b.ce, atol=1e-5)
    assert a.layer_cos.shape == (lm.config.num_hidden_layers, 6, 16)
    L = lm.config.num_hidden_layers
    assert torch.allclose((a.layer_cos[L - 3] + a.layer_cos[L - 2]) / 2, a.cos, atol=1e-6)
    logits = lm(input_ids=x).logits
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    assert torch.allclose(a.ce, ce, atol=1e-4)


# --- parameter arithmetic (spec 3.1), without weights ------------------------------------------------

def test_parameter_counts_of_base_and_addons():
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        base = LlamaForCausalLM(smollm2_config())
        two = LlamaForCausalLM(addon_config(smollm2_config(), 2))
        eight = LlamaForCausalLM(addon_config(smollm2_config(), 8))
    assert count_params(base) == EXPECTED_BASE_PARAMS == 134_515_008
    assert count_params(two) == EXPECTED_ADDON_PARAMS[2] == 35_392_320
    assert count_params(eight) == EXPECTED_ADDON_PARAMS[8] == 56_632_896


# --- model resolution fails fast -------------------------------------------------------------------

def test_unknown_model_fails_fast(monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="not reachable"):
        resolve_model("no-such-org/no-such-model")
    with pytest.raises(ModelUnavailable, match="GGUF file not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelUnavailable):
        resolve_model(str(tmp_path / "no" / "such" / "dir"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HRM_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HRM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelUnavailable, match="hrm models fetch smollm2"):
        resolve_model(DEFAULT_MODEL_ID)
    assert time.perf_counter() - t < 5


def test_default_id_resolves_to_local_gguf(monkeypatch, tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    (d / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("HRM_MODEL_DIR", str(d))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    spec = resolve_model(DEFAULT_MODEL_ID)
    assert spec.kind == "gguf" and spec.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "local stand-in" in spec.source


def test_data_without_file_or_hub_fails_clearly(monkeypatch):
    from core.smollm2.alpaca import AlpacaUnavailable, load_records

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HRM_ALPACA_FILE", raising=False)
    with pytest.raises(AlpacaUnavailable, match="--data-file"):
        load_records("")


# --- Alpaca pipelines -------------------------------------------------------------------------------

def test_subset_permutation_is_hf_shuffle():
    recs = tiny_records(50)
    rows, how = subset_c(recs, 10, seed=42)
    import datasets

    ds = datasets.Dataset.from_list(recs.rows).shuffle(seed=42).select(range(10))
    assert [r["instruction"] for r in rows] == ds["instruction"]
    assert "shuffle(seed=42)" in how
    all_rows, how_all = subset_c(recs, 50)
    assert all_rows == recs.rows and "file order" in how_all


def test_pipeline_c_stream_split_and_windows(tiny):
    _, tok = tiny
    recs = Records([{"instruction": "ab", "input": "", "output": "cd"},
                    {"instruction": "e", "input": "f", "output": "g"}] * 20, "test")
    data = pipeline_c(tok, recs, num_samples=40, seq_len=8, batch_size=2, val_ratio=0.25)
    sample = "### Instruction:\nab\n\n### Response:\ncd"
    n1 = len(sample.encode()) + 1
    n2 = len("### Instruction:\ne\n\n### Input:\nf\n\n### Response:\ng".encode()) + 1
    total = 20 * (n1 + n2)
    assert data.stream_tokens == total
    cut = int(total * 0.75)
    n_train = (cut - 1) // 8
    assert data.train.shape == (n_train - n_train % 2, 9)
    assert data.train[0, :8].tolist() == list(sample.encode())[:8]
    assert torch.equal(data.train[1, 0], data.train[0, 8])  # windows overlap by one token (x/y shift)
    assert tok.eos_token_id in data.train.reshape(-1).tolist()


def test_pipeline_d_chunks_per_sample(tiny):
    _, tok = tiny
    short = {"instruction": "x" * 3, "input": "", "output": "y" * 3}  # 8 tokens <= seq_len: no chunk
    long = {"instruction": "a" * 10, "input": "b", "output": "c" * 10}  # 23 tokens: j = 0, 8 (16 + 8 > 23)
    recs = Records([short, long, short, long, long], "test")
    d = pipeline_d(tok, recs, seq_len=8, num_train=4, num_val=2)
    assert d.train.shape == (4, 9) and d.val.shape == (2, 9)
    assert d.train[0].tolist() == list(("a" * 8 + "a").encode())
    assert d.train[1, 0].item() == ord("a")  # second chunk starts at token 8
    short_src = pipeline_d(tok, Records([long] * 2, "t"), seq_len=8, num_train=8, num_val=2)
    assert short_src.train.shape[0] + short_src.val.shape[0] == 4 and "SHORT" in short_src.description


def test_shared_alpaca_file_is_readable():
    path = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_6k.json"
    if not path.is_file():
        pytest.skip(f"{path} not present (CC BY-NC sample, never copied into the repo)")
    from core.smollm2.alpaca import load_records

    recs = load_records(str(path))
    assert len(recs.rows) == 6000 and "sha256 da77b2fc3362355c" in recs.source


def test_experiment_modules_do_not_import_torch_at_top_level():
    code = ("import sys; import core.experiments.saturation, core.experiments.hard_tokens, "
            "core.experiments.cascade; print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False False"


def test_tiny_records_are_json_serialisable():
    assert json.loads(json.dumps(tiny_records(3).rows))[0]["instruction"].startswith("Write")
