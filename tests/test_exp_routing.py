"""Report 004 Exp 10 (``confidence-routing``) and Exp 11 (``lpt-routing``).

Fast tests: parameter arithmetic, routing and loss-weight definitions, config validation, emit conventions and
the best-vs-last weights of the threshold table on tiny models. Slow tests: the published variant against the
report's printed numbers (CPU, 2 threads; about a minute in all).
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from core.experiments import RecordingEmitter, catalog, get_experiment
from core.experiments.lpt_routing import loss_weights
from core.models.routed import ExitStackLM, build_exit_stack, route, routed_params
from tests.compare_helpers import EchoingEmitter

EXP10 = "confidence-routing"
EXP11 = "lpt-routing"


@pytest.fixture(autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def run(name: str, **values) -> RecordingEmitter:
    experiment = get_experiment(name)
    emit = EchoingEmitter()
    experiment.run(experiment.make_config(**values), emit)
    return emit


def near(value: float, printed: float, decimals: int) -> bool:
    """``value`` prints as ``printed`` at ``decimals`` (half-unit tolerance, robust to ties)."""
    return abs(value - printed) <= 0.5 * 10 ** (-decimals) + 1e-9


def assert_printed(actual: dict, expected: dict, decimals: dict) -> None:
    bad = {k: (actual[k], v) for k, v in expected.items() if not near(actual[k], v, decimals[k])}
    assert not bad, f"(ours, report) differ: {bad}"


DEC = {"best_val_ppl": 2, "val_ppl": 2, "val_acc_pct": 1, "shallow_pct": 1, "compute_pct": 1}


# ----------------------------------------------------------------------------------------------- fast


def test_registered():
    names = catalog()
    assert EXP10 in names and EXP11 in names
    assert names[EXP10].report == "004" and names[EXP11].headline == "best_val_ppl"


def test_parameter_counts():
    assert routed_params(30, 64, 4) == 266_496
    assert routed_params(30, 64, 2) == 135_168
    for n_layers, expected in ((4, 266_496), (2, 135_168)):
        model = ExitStackLM(30, 64, n_layers, 4)
        assert sum(p.numel() for p in model.parameters()) == expected


def test_init_ia_scales_and_is_seeded():
    a = build_exit_stack(30, 64, 4, seed=42)
    b = build_exit_stack(30, 64, 4, seed=42)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert abs(a.embedding.weight.std().item() - 0.02) < 0.003
    assert abs(a.layers[0].ffn.w1.weight.std().item() - 0.125) < 0.005
    assert abs(a.output_head.weight.std().item() - 0.125) < 0.02
    assert torch.equal(a.layers[0].norm1.weight, torch.ones(64))


def test_forward_exits_share_one_head():
    model = build_exit_stack(30, 16, 4, 2, seed=0)
    x = torch.randint(0, 30, (2, 8))
    out = model(x, (2, 4))
    assert sorted(out) == [2, 4] and out[2].shape == (2, 8, 30)
    hidden = model.layers[1](model.layers[0](model.embedding(x)))
    assert torch.allclose(out[2], model.output_head(hidden), atol=1e-6)
    with pytest.raises(ValueError):
        model(x, (5,))


def test_head_after_each_block_or_after_the_stack_gives_the_same_logits():
    x = torch.randint(0, 30, (2, 16))
    stacks = {where: build_exit_stack(30, 16, 3, 2, seed=5, head_after=where) for where in ("stack", "block")}
    out = {where: model(x, exits=(1, 3)) for where, model in stacks.items()}
    assert sorted(out["block"]) == [1, 3]
    for e in (1, 3):
        assert torch.equal(out["stack"][e], out["block"][e])
    grads = {}
    for where, model in stacks.items():
        sum(o.logsumexp(-1).mean() for o in out[where].values()).backward()
        grads[where] = model.output_head.weight.grad
    assert torch.allclose(grads["stack"], grads["block"], atol=1e-6)
    with pytest.raises(ValueError, match="head_after"):
        ExitStackLM(30, head_after="middle")


def test_route_uses_shallow_at_or_above_threshold():
    shallow = torch.log(torch.tensor([[[0.8, 0.2], [0.6, 0.4], [0.9, 0.1]]]))
    deep = torch.zeros(1, 3, 2)
    logits, mask = route(shallow, deep, 0.8)
    assert mask.tolist() == [[True, False, True]]  # ties (0.8 ≥ 0.8) exit shallow
    assert torch.equal(logits[0, 1], deep[0, 1]) and torch.equal(logits[0, 0], shallow[0, 0])


def test_loss_schemes():
    assert loss_weights("standard", 4, 2) == {2: 0.5, 4: 0.5}
    assert loss_weights("full-lpt", 4, 2) == {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}
    assert loss_weights("lpt-ra", 4, 2) == {1: 0.5, 2: 1.0, 3: 0.5, 4: 1.0}
    # --normalize-loss = the upstream "_fixed" script: divide by 4 and by 3.
    assert loss_weights("full-lpt", 4, 2, normalize=True)[1] == pytest.approx(1 / 4)
    assert loss_weights("lpt-ra", 4, 2, normalize=True)[2] == pytest.approx(1 / 3)


def test_config_defaults_and_bounds():
    config = get_experiment(EXP10).make_config()
    assert (config.variant, config.max_epochs, config.patience, config.lr, config.threshold) == (
        "corrected", 30, 5, 1e-3, 0.8)
    assert config.thresholds == (0.5, 0.6, 0.7, 0.8, 0.9)
    assert (config.resolved_data(), config.resolved_weights()) == ("wikitext2", "best")
    published = get_experiment(EXP11).make_config(variant="published")
    assert (published.resolved_data(), published.resolved_weights()) == ("toy-fox", "last")
    assert published.thresholds == (0.5, 0.7, 0.8, 0.9)
    for bad in ({"threshold": 0.0}, {"thresholds": (0.5, 1.5)}, {"shallow_exit": 4}, {"d_model": 60},
                {"shallow_loss_weight": 0.0, "deep_loss_weight": 0.0}, {"model": "std3"}):
        with pytest.raises(ValidationError):
            get_experiment(EXP10).make_config(**bad)
    for field in get_experiment(EXP11).config_cls.model_fields.values():
        assert field.description


TINY = dict(d_model=16, n_heads=2, max_epochs=3, patience=1, data="toy-fox", seq_len=16, batch_size=8)


def test_emits_the_shared_conventions():
    emit = run(EXP10, variant="published", **TINY)
    info = emit.infos()
    assert info["params"] == routed_params(30, 16, 4) and info["quirks"] == ["B11", "B12"]
    assert info["weights"] == "last" and "toy-fox" in info["data_source"]
    epochs = emit.of("epoch")
    assert epochs and set(epochs[0]["metrics"]) >= {
        "train_loss", "val_loss", "val_ppl", "val_acc_pct", "shallow_pct", "compute_pct"}
    assert epochs[0]["total"] == 3
    assert sorted(emit.of("layers")[0]["layers"]) == [2, 4]
    rows = emit.tables()["thresholds"]
    assert [r["threshold"] for r in rows] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert set(rows[0]) == {"threshold", "val_ppl", "val_acc_pct", "shallow_pct", "compute_pct"}
    for r in rows:  # compute = (2·shallow + 4·deep) / 4
        assert r["compute_pct"] == pytest.approx(100 - r["shallow_pct"] / 2)
    assert [r["shallow_pct"] for r in rows] == sorted((r["shallow_pct"] for r in rows), reverse=True)
    summary = emit.summary_metrics()
    best = epochs[int(summary["best_epoch"]) - 1]["metrics"]
    assert summary["best_val_ppl"] == best["val_ppl"] == min(e["metrics"]["val_ppl"] for e in epochs)
    assert summary["compute_pct"] == best["compute_pct"]


@pytest.mark.parametrize("weights", ["last", "best"])
def test_threshold_table_uses_the_chosen_weights(weights):
    emit = run(EXP11, variant="published", weights=weights, thresholds=(0.8,), loss="full-lpt", **TINY)
    row = emit.tables()["thresholds"][0]
    epochs = emit.of("epoch")
    summary = emit.summary_metrics()
    assert summary["stopped_epoch"] > summary["best_epoch"], "needs a run that stopped past its best epoch"
    chosen = epochs[-1] if weights == "last" else epochs[int(summary["best_epoch"]) - 1]
    assert row["val_ppl"] == pytest.approx(chosen["metrics"]["val_ppl"], rel=1e-6)
    assert ("B12" in emit.infos()["quirks"]) == (weights == "last")
    assert sorted(emit.of("layers")[0]["layers"]) == [1, 2, 3, 4]


def test_plain_baselines_report_fixed_compute():
    emit = run(EXP10, variant="published", model="std2", **TINY)
    assert emit.infos()["params"] == routed_params(30, 16, 2)
    assert "thresholds" not in emit.tables()
    metrics = emit.of("epoch")[0]["metrics"]
    assert (metrics["shallow_pct"], metrics["compute_pct"]) == (0.0, 50.0)


def test_corrected_trains_on_wikitext_characters():
    emit = run(EXP10, wikitext_source="excerpt", d_model=16, n_heads=2, max_epochs=1, thresholds=(0.8,))
    info = emit.infos()
    assert info["quirks"] == [] and info["weights"] == "best" and info["vocab_size"] == 97
    assert "excerpt" in info["data_source"]
    row = emit.tables()["thresholds"][0]
    assert row["val_ppl"] == pytest.approx(emit.summary_metrics()["best_val_ppl"], rel=1e-6)
    assert math.isfinite(row["val_ppl"])


# ----------------------------------------------------------------------------------------------- slow


EXP10_TABLE = [  # τ, PPL, acc %, shallow %, compute % (report 004, Exp 10 threshold analysis)
    (0.5, 40.63, 49.5, 91.1, 54.4),
    (0.6, 40.45, 50.0, 87.0, 56.5),
    (0.7, 40.07, 50.0, 83.7, 58.2),
    (0.8, 40.31, 50.2, 80.4, 59.8),
    (0.9, 40.31, 50.2, 76.4, 61.8),
]


@pytest.fixture(scope="module")
def exp10_routed():
    torch.set_num_threads(2)
    return run(EXP10, variant="published", model="routed", cpu_threads=2)


@pytest.mark.slow
def test_exp10_routed_published(exp10_routed):
    emit = exp10_routed
    summary = emit.summary_metrics()
    assert emit.infos()["params"] == 266_496
    assert (summary["best_epoch"], summary["stopped_epoch"]) == (1, 6)
    assert_printed(summary, {"best_val_ppl": 12.98, "val_acc_pct": 50.4, "shallow_pct": 47.7, "compute_pct": 76.2}, DEC)
    rows = emit.tables()["thresholds"]
    assert [r["threshold"] for r in rows] == [t[0] for t in EXP10_TABLE]
    for row, (_, ppl, acc, shallow, compute) in zip(rows, EXP10_TABLE):
        assert_printed(row, {"val_ppl": ppl, "val_acc_pct": acc, "shallow_pct": shallow, "compute_pct": compute}, DEC)
    # Spec F6: the table is the final (epoch-6) model, not the headline's epoch-1 model.
    assert rows[3]["val_ppl"] == emit.of("epoch")[-1]["metrics"]["val_ppl"]


@pytest.mark.slow
@pytest.mark.parametrize("model, params, ppl, acc, compute", [
    ("std4", 266_496, 16.87, 46.9, 100.0),
    ("std2", 135_168, 15.39, 49.2, 50.0),
])
def test_exp10_baselines_published(model, params, ppl, acc, compute):
    emit = run(EXP10, variant="published", model=model, cpu_threads=2)
    assert emit.infos()["params"] == params
    assert_printed(emit.summary_metrics(),
                   {"best_val_ppl": ppl, "val_acc_pct": acc, "compute_pct": compute, "shallow_pct": 0.0}, DEC)


EXP11_PUBLISHED = {  # loss: (headline PPL, acc, shallow, compute), {τ: (PPL, shallow, compute)} on the final weights
    "full-lpt": ((13.59, 51.1, 47.3, 76.4), {0.5: (49.35, 96.9, 51.6), 0.7: (49.33, 93.6, 53.2),
                                             0.8: (49.41, 91.9, 54.1), 0.9: (50.70, 86.3, 56.8)}),
    "lpt-ra": ((13.42, 50.9, 47.6, 76.2), {0.5: (65.53, 97.7, 51.1), 0.7: (65.09, 94.1, 52.9),
                                           0.8: (65.31, 92.7, 53.6), 0.9: (65.62, 90.0, 55.0)}),
}


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["full-lpt", "lpt-ra"])
def test_exp11_lpt_published(loss):
    (ppl, acc, shallow, compute), table = EXP11_PUBLISHED[loss]
    emit = run(EXP11, variant="published", loss=loss, cpu_threads=2)
    summary = emit.summary_metrics()
    assert summary["best_epoch"] == 1
    assert_printed(summary, {"best_val_ppl": ppl, "val_acc_pct": acc, "shallow_pct": shallow, "compute_pct": compute}, DEC)
    rows = {r["threshold"]: r for r in emit.tables()["thresholds"]}
    assert sorted(rows) == sorted(table)
    for tau, (t_ppl, t_shallow, t_compute) in table.items():
        assert_printed(rows[tau], {"val_ppl": t_ppl, "shallow_pct": t_shallow, "compute_pct": t_compute}, DEC)


@pytest.mark.slow
def test_exp11_standard_is_exp10_bit_for_bit(exp10_routed):
    emit = run(EXP11, variant="published", loss="standard", cpu_threads=2)
    assert [e["metrics"] for e in emit.of("epoch")] == [e["metrics"] for e in exp10_routed.of("epoch")]
    exp10_rows = {r["threshold"]: r for r in exp10_routed.tables()["thresholds"]}
    for row in emit.tables()["thresholds"]:  # the report's Exp 11 "Standard Routing" table = Exp 10's rows
        assert row == exp10_rows[row["threshold"]]
