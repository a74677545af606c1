"""Report 004 Exp 5 (layer-freezing), Exp 8 (layer-contribution), Exp 9 (early-exit).

Fast tests: parameter counts, the legacy truncated normal, model plumbing, configs, catalog entries and
the analysis arithmetic on hand-made arrays. Slow tests: the published reproductions, compared with the
report's printed numbers at the report's precision.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.experiments import catalog
from core.experiments.base import RecordingEmitter, seed_everything
from core.models.char_lm import CharLM, char_lm_params, count_params
from core.models.char_transformer import trunc_normal_
from tests.compare_helpers import EchoingEmitter


@pytest.fixture(autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _run(name: str, **values) -> RecordingEmitter:
    values.setdefault("cpu_threads", 2)  # the report's runs used 2 threads (hrm reproduce sets the same)
    experiment = catalog()[name]
    emit = EchoingEmitter()
    experiment.run(experiment.make_config(**values), emit)
    return emit


# ------------------------------------------------------------------------------------------ fast


def test_parameter_counts_match_the_report():
    assert count_params(CharLM(30, 64, 4, 3)) == char_lm_params(30, 64, 3) == 200_832
    model = CharLM(30, 64, 4, 3)
    model.add_block()
    assert count_params(model) == char_lm_params(30, 64, 4) == 266_496
    model.freeze(embedding=True, blocks=range(3))
    assert count_params(model, trainable_only=True) == 67_584  # new block 65,664 + head 1,920
    model.unfreeze()
    assert count_params(model, trainable_only=True) == 266_496


def test_trunc_normal_is_the_inverse_cdf_algorithm():
    # The pre-2.13 algorithm: one uniform per element, then erfinv; PyTorch 2.13's rejection sampler differs.
    torch.manual_seed(0)
    ours = trunc_normal_(torch.empty(1000), std=0.02)
    torch.manual_seed(0)
    u = torch.empty(1000).uniform_(2 * 0.5 * (1 + math.erf(-100 / math.sqrt(2))) - 1, 1.0)
    expected = torch.erfinv(u) * 0.02 * math.sqrt(2)
    assert torch.allclose(ours, expected.clamp(-2, 2), atol=1e-6)
    assert abs(float(ours.std()) - 0.02) < 0.002
    bounded = trunc_normal_(torch.empty(10_000), std=1.0, a=-0.5, b=0.5)
    assert float(bounded.min()) >= -0.5 and float(bounded.max()) <= 0.5


def test_init_order_and_add_block_draws():
    # I-B: embedding, blocks, head re-drawn in module order; add_block = default init, then re-draw.
    seed_everything(42)
    model = CharLM(30, 64, 4, 1)
    seed_everything(42)
    again = CharLM(30, 64, 4, 1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert abs(float(model.head.weight.detach().std()) - 0.02) < 0.003
    block = model.add_block(init_std=0.02)
    assert abs(float(block.ffn.w2.weight.detach().std()) - 0.02) < 0.002  # PyTorch's default init: std 0.036
    assert model.n_layers == 2 and block is model.blocks[1]


def test_hidden_states_and_layer_logits():
    seed_everything(1)
    model = CharLM(30, 32, 4, 3)
    x = torch.randint(0, 30, (2, 10))
    states = model.hidden_states(x)
    assert len(states) == 4 and all(s.shape == (2, 10, 32) for s in states)
    assert torch.equal(states[0], model.embedding(x))
    logits = model.layer_logits(x)
    assert len(logits) == 3 and torch.allclose(logits[-1], model(x))
    # causal: changing a later token leaves earlier positions unchanged
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 30
    assert torch.allclose(model(x)[:, :-1], model(y)[:, :-1], atol=1e-6)


def test_configs_resolve_variants_and_validate():
    experiment = catalog()["layer-freezing"]
    published = experiment.make_config(variant="published")
    assert (published.resolved_data(), published.resolved_weights(), published.quirks()) == (
        "toy-fox", "last", ["B11", "B12"]
    )
    corrected = experiment.make_config()
    assert (corrected.resolved_data(), corrected.resolved_weights(), corrected.quirks()) == ("wikitext2", "best", [])
    mixed = experiment.make_config(variant="corrected", data="toy-fox")
    assert mixed.quirks() == ["B11"]
    assert (published.max_epochs, published.patience, published.lr, published.batch_size) == (30, 5, 1e-3, 16)
    with pytest.raises(Exception):
        experiment.make_config(patience=0)
    with pytest.raises(Exception):
        catalog()["early-exit"].make_config(thresholds=(0.5, 1.5))
    for name in ("layer-freezing", "layer-contribution", "early-exit"):
        entry = catalog()[name]
        assert entry.report == "004" and entry.headline == "best_val_ppl"
        for field_name, field in entry.config_cls.model_fields.items():
            assert field.description, (name, field_name)


def test_contribution_analysis_arithmetic():
    from core.experiments.layer_contribution import analyse

    final = np.arange(8, dtype=float)  # p25 = 1.75, p75 = 5.25 → Easy {0,1}, Hard {6,7}
    ce = np.stack([final + 1.0, final])
    norm = np.stack([np.ones(8), final * 2])
    tables = analyse({"ce": ce, "norm": norm})
    counts = {r["class"]: r["tokens"] for r in tables["difficulty_classes"]}
    assert counts == {"Easy": 2, "Medium": 4, "Hard": 2}
    easy = {r["layer"]: r for r in tables["difficulty_by_layer"] if r["class"] == "Easy"}
    assert easy[1]["loss"] == 1.5 and easy[2]["loss"] == 0.5 and easy[2]["residual_norm"] == 1.0
    improvement = {r["class"]: r["improvement_pct"] for r in tables["loss_improvement"]}
    assert improvement["Easy"] == pytest.approx(100 * (1.5 - 0.5) / 1.5)
    corr = {r["layer"]: r["pearson_r"] for r in tables["norm_loss_correlation"]}
    assert corr[2] == pytest.approx(1.0) and math.isnan(corr[1])  # constant norm: undefined correlation


def test_early_exit_analysis_arithmetic():
    from core.experiments.early_exit import analyse

    conf = np.array([0.95, 0.85, 0.6, 0.3])
    correct = np.array([[True, False, True, False], [True, True, False, False]])
    ce = np.array([[0.1, 2.0, 1.0, 3.0], [0.2, 0.5, 1.5, 3.5]])
    tables = analyse({"ce": ce, "correct": correct, "conf1": conf, "entropy1": np.zeros(4)}, (0.5, 0.8, 0.9))
    sweep = {r["threshold"]: r for r in tables["threshold_sweep"]}
    assert sweep[0.5]["exit_rate_pct"] == 75.0
    assert sweep[0.5]["agreement_pct"] == pytest.approx(100 / 3)  # correctness agreement: only token 0
    assert sweep[0.5]["adaptive_acc_pct"] == 50.0  # L1 right on 0 and 2, L2 wrong on 3
    assert sweep[0.8]["adaptive_acc_pct"] == 25.0 and sweep[0.9]["adaptive_acc_pct"] == 50.0
    assert sweep[0.9]["compute_pct"] == pytest.approx(100 * (0.5 + 3) / 4)  # 1 exit at 1 of 2 layers
    assert tables["best"]["threshold"] == 0.5  # first strict maximum: 0.9 ties, does not replace
    assert tables["l1_right_of_last_right_pct"] == 50.0


def test_early_exit_run_smoke_and_stages_of_a_tiny_freezing_run():
    tiny = dict(max_epochs=1, d_model=16, n_heads=2, seq_len=32, batch_size=32)  # 19 toy batches of 1,024 targets
    emit = _run("early-exit", variant="published", **tiny)
    summary = emit.summary_metrics()
    assert summary["epochs_run"] == 1 and {"threshold_sweep", "strategies"} <= set(emit.tables())
    assert emit.infos()["quirks"] == ["B11", "B12"]
    emit = _run("layer-freezing", variant="corrected", data="toy-fox", phase="grow", **tiny)
    assert [s["name"] for s in emit.of("stage")] == ["3-layer (base)", "4-layer (frozen)", "4-layer (full)"]
    stage2 = emit.summary_metrics(stage=2)
    assert stage2["trainable_params"] == 16 * 16 * 16 + 2 * 16 + 16 * 30  # new block + head
    assert emit.infos()["quirks"] == ["B11"] and emit.infos()["weights"] == "best"


# ------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_layer_freezing_published_reproduces_report():
    emit = _run("layer-freezing", variant="published")
    expected = {  # stage: (best PPL, best epoch, params, trainable)
        1: (9.98, 3, 200_832, 200_832),
        2: (25.08, 1, 266_496, 67_584),
        3: (24.62, 1, 266_496, 266_496),
        4: (9.88, 2, 266_496, 266_496),
    }
    for stage, (ppl, epoch, params, trainable) in expected.items():
        got = emit.summary_metrics(stage=stage)
        assert (round(got["best_val_ppl"], 2), got["best_epoch"], got["params"], got["trainable_params"]) == (
            ppl, epoch, params, trainable
        ), stage
    assert emit.summary_metrics(stage=1)["epochs_run"] == 8  # stages 2-3 grow the epoch-8 (last) weights
    run_summary = emit.summary_metrics()
    assert round(run_summary["full_vs_base_pct"]) == 147 and round(run_summary["frozen_vs_full_pct"], 1) == 1.9
    assert emit.infos()["quirks"] == ["B11", "B12"]


@pytest.mark.slow
def test_layer_contribution_published_reproduces_report():
    emit = _run("layer-contribution", variant="published")
    summary = emit.summary_metrics()
    assert (summary["best_epoch"], summary["epochs_run"], summary["analysis_epoch"]) == (2, 7, 7)
    assert round(summary["best_val_ppl"], 2) == 9.88
    tables = emit.tables()
    classes = {r["class"]: r for r in tables["difficulty_classes"]}
    assert [classes[c]["tokens"] for c in ("Easy", "Medium", "Hard")] == [1025, 2041, 1030]
    assert round(classes["Easy"]["threshold"], 2) == 0.04 and round(classes["Hard"]["threshold"], 2) == 6.38
    losses = {c: [0.0] * 4 for c in ("Easy", "Medium", "Hard")}
    norms = {c: [0.0] * 4 for c in ("Easy", "Medium", "Hard")}
    for row in tables["difficulty_by_layer"]:
        losses[row["class"]][row["layer"] - 1] = round(row["loss"], 2)
        norms[row["class"]][row["layer"] - 1] = round(row["residual_norm"], 2)
    assert losses == {
        "Easy": [0.18, 0.15, 0.10, 0.03], "Medium": [2.30, 2.34, 2.40, 2.50], "Hard": [6.01, 6.06, 6.14, 6.95]
    }
    assert norms == {
        "Easy": [7.87, 2.92, 2.39, 3.37], "Medium": [7.86, 1.76, 2.41, 4.05], "Hard": [7.87, 2.33, 2.71, 3.81]
    }
    improvement = {r["class"]: round(r["improvement_pct"], 1) for r in tables["loss_improvement"]}
    assert (improvement["Easy"], improvement["Hard"]) == (85.4, -15.8)
    corr = [round(r["pearson_r"], 4) for r in tables["norm_loss_correlation"]]
    assert corr == [0.0010, -0.0540, 0.2092, 0.1336]
    layers = emit.of("layers")[-1]["layers"]
    assert round(layers[4]["loss_easy"], 2) == 0.03 and round(layers[2]["residual_norm_medium"], 2) == 1.76


@pytest.mark.slow
def test_early_exit_published_reproduces_report():
    emit = _run("early-exit", variant="published")
    summary = emit.summary_metrics()
    assert (summary["best_epoch"], summary["epochs_run"]) == (2, 7)
    assert round(summary["l1_last_ce_corr"], 4) == 0.9549
    assert (round(summary["l1_conf_last_correct"], 2), round(summary["l1_conf_last_wrong"], 2)) == (0.76, 0.52)
    sweep = {r["threshold"]: r for r in emit.tables()["threshold_sweep"]}
    columns = ("exit_rate_pct", "l1_acc_exited_pct", "last_acc_exited_pct", "agreement_pct")
    got = {t: tuple(round(sweep[t][c], 1) for c in columns) for t in (0.5, 0.7, 0.8, 0.9)}
    assert got == {
        0.5: (65.9, 61.1, 61.9, 99.2),
        0.7: (63.5, 61.3, 61.8, 99.5),
        0.8: (58.0, 62.1, 62.1, 100.0),
        0.9: (8.3, 66.7, 66.7, 100.0),
    }
    strategies = [(r["strategy"], round(r["acc_pct"], 1), round(r["compute_pct"], 1)) for r in emit.tables()["strategies"]]
    assert strategies == [("Always L1", 44.2, 25.0), ("Always L4", 48.2, 100.0), ("Adaptive (0.80)", 48.2, 56.5)]
    assert round(summary["l1_right_of_last_right_pct"], 1) == 91.7
