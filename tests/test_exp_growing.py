"""Report 004 Exp 6 (``greedy-layerwise``) and Exp 7 (``progressive``): model, configs and reproductions.

The ``slow`` tests re-run the published variant on CPU with 2 threads and compare with the report:
Exp 6 and the Exp 7 stage-1 / scratch numbers to the printed digit; Exp 7 stages 2–4 are chaotic
(spec F5), so only the final ordering LPT-progressive < standard-progressive is asserted.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from core.experiments import RecordingEmitter, get_experiment
from tests.compare_helpers import EchoingEmitter

GREEDY = get_experiment("greedy-layerwise")
PROGRESSIVE = get_experiment("progressive")

# Report 004 Exp 6: (params, trainable, best val PPL, best epoch) per greedy stage, then fine-tune.
EXP6_STAGES = [
    (69_504, 67_584, 10.82, 3),
    (135_168, 67_584, 24.81, 1),
    (200_832, 67_584, 81.43, 1),
    (266_496, 67_584, 218.48, 1),
]
EXP6_FINETUNE = 423.65
EXP6_SCRATCH = 9.92
EXP7_STAGE1 = (9.96, 2)
EXP7_SCRATCH_STD = 9.92
EXP7_SCRATCH_LPT = 9.81


def _run(experiment, **values) -> RecordingEmitter:
    values.setdefault("cpu_threads", 2)  # the report's runs used 2 threads (hrm reproduce sets the same)
    emit = EchoingEmitter()
    experiment.run(experiment.make_config(**values), emit)
    return emit


# ------------------------------------------------------------------------------------------ catalog/config


def test_registered_with_report_defaults():
    for exp in (GREEDY, PROGRESSIVE):
        assert exp.report == "004" and exp.headline == "best_val_ppl" and exp.lower_is_better
        cfg = exp.make_config()
        assert (cfg.variant, cfg.seed, cfg.n_layers, cfg.d_model, cfg.n_heads) == ("corrected", 42, 4, 64, 4)
        assert (cfg.seq_len, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.clip) == (64, 16, 1e-3, 0.01, 1.0)
        assert (cfg.max_epochs, cfg.patience, cfg.init_std, cfg.cpu_threads) == (30, 5, 0.02, 1)
    assert GREEDY.make_config().method == "greedy"
    assert GREEDY.make_config().finetune_lr == 1e-4 and GREEDY.make_config().finetune is True
    assert PROGRESSIVE.make_config().method == "lpt-progressive"


def test_config_fields_described_and_bounded():
    for exp in (GREEDY, PROGRESSIVE):
        for name, field in exp.config_cls.model_fields.items():
            assert field.description, f"{exp.name}.{name} has no description"
            if field.annotation in (int, float):
                bounds = {type(m).__name__ for m in field.metadata}
                assert bounds & {"Ge", "Gt"} and bounds & {"Le", "Lt"}, f"{exp.name}.{name} is unbounded"
    bad = [
        (GREEDY, {"method": "lpt-progressive"}),
        (GREEDY, {"finetune_lr": 0.0}),
        (GREEDY, {"max_epochs": 0}),
        (PROGRESSIVE, {"method": "greedy"}),
        (PROGRESSIVE, {"d_model": 60}),  # head dim 15: odd, RoPE needs even
        (PROGRESSIVE, {"patience": 0}),
        (PROGRESSIVE, {"unknown_option": 1}),
    ]
    for exp, values in bad:
        with pytest.raises(ValidationError):
            exp.make_config(**values)
    for method in ("lpt-progressive", "std-progressive", "scratch-std", "scratch-lpt"):
        assert PROGRESSIVE.make_config(method=method).method == method


def test_modules_import_without_torch():
    code = (
        "import sys, core.experiments.greedy_layerwise, core.experiments.progressive; "
        "assert 'torch' not in sys.modules, 'torch imported at module level'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ model


def test_parameter_counts_greedy_growth():
    from core.models.growable import GrowableCharLM

    model = GrowableCharLM(vocab_size=30)
    assert model.param_counts() == (3_840, 3_840)
    for k, (params, trainable, _, _) in enumerate(EXP6_STAGES, start=1):
        model.add_block(freeze_existing=True, freeze_embedding=k == 1)  # published: B13
        assert model.param_counts() == (params, trainable)
        assert not model.embedding.weight.requires_grad
        assert all(not p.requires_grad for b in model.blocks[:-1] for p in b.parameters())
        assert model.head.weight.requires_grad
    model.unfreeze_all()
    assert model.param_counts() == (266_496, 266_496)

    corrected = GrowableCharLM(vocab_size=30)
    corrected.add_block(freeze_existing=True)
    corrected.add_block(freeze_existing=True)
    assert corrected.param_counts() == (135_168, 67_584 + 1_920)  # embedding stays trainable


def test_init_ic_rng_order():
    """I-C: embedding and head re-drawn at construction; each block built with default init (consuming RNG),
    then its Linears re-drawn in module order. Checked against a by-hand replay of the same draws."""
    import torch
    from torch import nn

    from core.models.char_transformer import Block, trunc_normal_
    from core.models.growable import GrowableCharLM

    torch.manual_seed(42)
    model = GrowableCharLM(vocab_size=30)
    model.add_block()
    model.add_block()

    torch.manual_seed(42)
    emb, head = nn.Embedding(30, 64), nn.Linear(64, 30, bias=False)
    trunc_normal_(emb.weight, std=0.02)
    trunc_normal_(head.weight, std=0.02)
    blocks = []
    for _ in range(2):
        block = Block(64, 4)
        for sub in block.modules():
            if isinstance(sub, nn.Linear):
                trunc_normal_(sub.weight, std=0.02)
        blocks.append(block)
    assert torch.equal(model.embedding.weight, emb.weight)
    assert torch.equal(model.head.weight, head.weight)
    for ours, ref in zip(model.blocks, blocks):
        for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
            assert torch.equal(p, q), name
    w = model.blocks[1].ffn.w2.weight
    assert 0.018 < w.std().item() < 0.022  # re-drawn (default Kaiming-uniform would give std ≈ 0.036)


def test_layer_losses_lpt_sum_and_standard():
    import torch
    import torch.nn.functional as F

    from core.models.growable import GrowableCharLM, layer_losses

    torch.manual_seed(0)
    model = GrowableCharLM(vocab_size=30, d_model=32, n_heads=4)
    for _ in range(3):
        model.add_block()
    x = torch.randint(0, 30, (2, 16))
    y = torch.randint(0, 30, (2, 16))
    per_layer = [F.cross_entropy(logits.reshape(-1, 30), y.reshape(-1)).item() for logits in model.layer_logits(x)]

    total, values = layer_losses(model, x, y, lpt=True)
    assert values == pytest.approx(per_layer)
    assert total.item() == pytest.approx(sum(per_layer), rel=1e-6)

    total, values = layer_losses(model, x, y, lpt=False)
    assert values == pytest.approx(per_layer)
    assert total.item() == pytest.approx(per_layer[-1])
    total.backward()
    # standard training: nothing flows from the earlier layers' scoring, block 3 gets gradient, the
    # head's gradient equals that of the last layer's loss alone
    head_grad = model.head.weight.grad.clone()
    model.zero_grad()
    F.cross_entropy(model(x).reshape(-1, 30), y.reshape(-1)).backward()
    assert torch.allclose(head_grad, model.head.weight.grad)


@pytest.mark.slow
def test_corrected_variant_restores_best_and_trains_embedding():
    emit = _run(
        GREEDY, variant="corrected", data="excerpt", n_layers=2, d_model=32, max_epochs=2, patience=1,
        cpu_threads=2,
    )
    info = emit.infos()
    assert info["quirks"] == [] and info["weights"] == "best"
    assert "toy" not in info["data_source"] and info["vocab_size"] == 97
    stages = emit.of("stage")
    assert [(s["stage"], s["name"]) for s in stages] == [(1, "1 layer"), (2, "2 layers"), (3, "fine-tune")]
    block = 16 * 32 * 32 + 2 * 32
    for k in (1, 2, 3):
        s = emit.summary_metrics(k)
        assert s["final_val_ppl"] == pytest.approx(s["best_val_ppl"], rel=1e-9)  # re-measured after the restore
    assert emit.summary_metrics(1)["trainable_params"] == block + 2 * 97 * 32  # embedding not frozen
    assert emit.summary_metrics(2)["trainable_params"] == block + 2 * 97 * 32
    run = emit.summary_metrics(0)
    assert run["best_val_ppl"] == emit.summary_metrics(3)["best_val_ppl"]
    assert run["greedy_best_val_ppl"] == emit.summary_metrics(2)["best_val_ppl"]


# ------------------------------------------------------------------------------------------ reproductions


@pytest.fixture(scope="module")
def greedy_published() -> RecordingEmitter:
    return _run(GREEDY, variant="published", method="greedy")


@pytest.fixture(scope="module")
def progressive_published() -> dict[str, RecordingEmitter]:
    return {m: _run(PROGRESSIVE, variant="published", method=m) for m in ("lpt-progressive", "std-progressive")}


@pytest.mark.slow
def test_exp6_greedy_reproduces_report(greedy_published):
    emit = greedy_published
    info = emit.infos()
    assert info["quirks"] == ["B11", "B12", "B13"] and info["weights"] == "last"
    assert info["data_source"].startswith("toy-fox") and info["vocab_size"] == 30
    assert [s["name"] for s in emit.of("stage")] == ["1 layer", "2 layers", "3 layers", "4 layers", "fine-tune"]
    for k, (params, trainable, ppl, epoch) in enumerate(EXP6_STAGES, start=1):
        s = emit.summary_metrics(k)
        assert (s["params"], s["trainable_params"]) == (params, trainable), k
        assert (round(s["best_val_ppl"], 2), s["best_epoch"]) == (ppl, epoch), k
        assert s["epochs"] == epoch + 5  # patience 5
        assert s["final_val_ppl"] > s["best_val_ppl"]  # the last weights are carried on (B12)
    finetune = emit.summary_metrics(5)
    assert round(finetune["best_val_ppl"], 2) == EXP6_FINETUNE
    assert finetune["trainable_params"] == 266_496
    run = emit.summary_metrics(0)
    assert round(run["best_val_ppl"], 2) == EXP6_FINETUNE
    assert round(run["greedy_best_val_ppl"], 2) == 218.48
    epochs = [e for e in emit.of("epoch") if e["stage"] == 1]
    assert [e["epoch"] for e in epochs] == list(range(1, 9)) and all(e["total"] == 30 for e in epochs)
    assert set(epochs[0]["metrics"]) >= {"train_loss", "val_loss", "val_ppl"}


@pytest.mark.slow
def test_exp6_and_exp7_scratch_reproduce_report():
    greedy_scratch = _run(GREEDY, variant="published", method="scratch")
    s = greedy_scratch.summary_metrics(0)
    assert round(s["best_val_ppl"], 2) == EXP6_SCRATCH and s["params"] == s["trainable_params"] == 266_496
    assert greedy_scratch.of("stage") == []  # one unstaged run

    scratch_std = _run(PROGRESSIVE, variant="published", method="scratch-std")
    assert round(scratch_std.summary_metrics(0)["best_val_ppl"], 2) == EXP7_SCRATCH_STD

    scratch_lpt = _run(PROGRESSIVE, variant="published", method="scratch-lpt")
    s = scratch_lpt.summary_metrics(0)
    assert round(s["best_val_ppl"], 2) == EXP7_SCRATCH_LPT
    layers = scratch_lpt.of("layers")
    assert layers and set(layers[0]["layers"]) == {1, 2, 3, 4}
    first = [e for e in scratch_lpt.of("epoch") if e["epoch"] == 1][0]["metrics"]
    assert first["train_loss"] == pytest.approx(sum(v["loss"] for v in layers[0]["layers"].values()), rel=1e-6)


@pytest.mark.slow
def test_exp7_progressive_stage1_exact_and_final_ordering(progressive_published):
    finals = {}
    for method, emit in progressive_published.items():
        assert emit.infos()["quirks"] == ["B11", "B12"]
        s1 = emit.summary_metrics(1)
        assert (round(s1["best_val_ppl"], 2), s1["best_epoch"]) == EXP7_STAGE1, method
        assert [emit.summary_metrics(k)["params"] for k in (1, 2, 3, 4)] == [69_504, 135_168, 200_832, 266_496]
        assert all(emit.summary_metrics(k)["trainable_params"] == emit.summary_metrics(k)["params"] for k in (1, 2, 3, 4))
        layer_rows = [e for e in emit.of("layers") if e["stage"] == 3]
        assert layer_rows and set(layer_rows[0]["layers"]) == {1, 2, 3}
        finals[method] = emit.summary_metrics(0)["best_val_ppl"]
        assert finals[method] == emit.summary_metrics(4)["best_val_ppl"]
    # stages 2-4 are chaotic (spec F5); only the ordering of the finals is robust
    assert finals["lpt-progressive"] < finals["std-progressive"]
