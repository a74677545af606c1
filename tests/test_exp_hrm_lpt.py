"""Report 004 Exp 1–4 on pipeline A: models, parameter counts, configs and short real training runs."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

from core.experiments import catalog, get_experiment
from core.experiments.base import RecordingEmitter
from core.models.char_transformer import count_params
from core.models.hrm import HRM
from core.models.infini import InfiniHRM
from core.models.irt import IRTCharLM, StackedCharLM
from core.models.lpt import layer_weights, per_layer_losses

SMALL = {"data": "excerpt", "train_chars": 4_000, "val_chars": 1_000}


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: HRM(update="sequential"), 152_064),  # Exp 1
        (lambda: HRM(update="parallel"), 152_064),  # Exp 2 baseline
        (lambda: InfiniHRM(memory_mode="reset"), 168_452),  # Exp 2
        (lambda: StackedCharLM(n_layers=1), 78_080),  # Exp 3 standard
        (lambda: IRTCharLM(n_layers=1), 82_176),  # Exp 3 IRT
        (lambda: HRM(dim=48, update="parallel"), 89_472),  # Exp 3 HRM
        (lambda: StackedCharLM(n_layers=4), 275_072),  # Exp 4 standard / LPT
        (lambda: IRTCharLM(n_layers=4), 279_168),  # Exp 4 IRT
    ],
)
def test_parameter_counts_match_the_report(build, expected):
    assert count_params(build()) == expected


def test_hrm_one_step_gradient_and_unused_q_head():
    torch.manual_seed(0)
    x = torch.randint(0, 97, (2, 64))
    for update in ("sequential", "parallel"):
        model = HRM(update=update)
        logits, state, _ = model(x)
        assert logits.shape == (2, 64, 97) and state[0].shape == state[1].shape == (2, 64, 64)
        logits.sum().backward()
        assert model.q_head.weight.grad is None  # B15: never trained
        assert model.z_h_init.grad is not None
        # z_L's initial state only feeds the no-grad first step: no gradient reaches it
        assert model.z_l_init.grad is None
        assert model.block_h.ffn.w1.weight.grad is not None and model.embedding.weight.grad is not None
        # parallel (B14) at N·T = 2: H reads the step-0 (no-grad) L state, so block L never gets a gradient
        assert (model.block_l.attn.q_proj.weight.grad is None) == (update == "parallel")


def test_update_rules_differ_only_in_what_h_sees():
    torch.manual_seed(0)
    seq = HRM(update="sequential")
    par = HRM(update="parallel")
    par.load_state_dict(seq.state_dict())
    x = torch.randint(0, 97, (2, 64))
    with torch.no_grad():
        (ls, ss, _), (lp, sp, _) = seq(x), par(x)
        assert torch.allclose(ss[0], sp[0], atol=1e-5)  # the L state is computed the same way
        assert not torch.allclose(ls, lp)  # H: fresh L without e vs old L with e
        e = seq.embedding(x)
        z_l = seq.block_l(seq.z_l_init + seq.z_h_init + e)  # step 0
        new_l = seq.block_l(z_l + seq.z_h_init + e)
        assert torch.allclose(ss[1], seq.block_h(seq.z_h_init + new_l), atol=1e-5)
        assert torch.allclose(sp[1], seq.block_h(seq.z_h_init + e + z_l), atol=1e-5)


def test_infini_memory_reset_and_carry():
    torch.manual_seed(0)
    x = torch.randint(0, 97, (3, 64))
    model = InfiniHRM(memory_mode="carry").eval()
    with torch.no_grad():
        e = model.embedding(x)
        out1, mem1 = model.infini(e, None)
        out2, mem2 = model.infini(e, mem1)
        assert mem1[0].shape == (3, 4, 16, 16) and mem1[1].shape == (3, 4, 16)
        assert not torch.allclose(out1, out2)  # segment 2 retrieves what segment 1 wrote
        assert torch.allclose(mem2[0], 2 * mem1[0], atol=1e-5)  # same window written twice
    assert model.start_batch(3, True) is None
    model.end_batch((None, None, mem1), True)
    assert model.start_batch(3, True)[2] is model._carried
    assert model.start_batch(3, False) is None  # evaluation starts from empty memory
    assert model.start_batch(2, True) is None and model._carried is None  # batch size changed: reset
    reset = InfiniHRM(memory_mode="reset")
    reset.end_batch((None, None, mem1), True)
    assert reset.start_batch(3, True) is None


def test_lpt_losses():
    assert layer_weights(4, "sum") == [1, 1, 1, 1]
    assert layer_weights(4, "weighted") == [1, 2, 3, 4]
    assert layer_weights(4, "last") == [0, 0, 0, 1]
    torch.manual_seed(0)
    model = StackedCharLM()
    x, y = torch.randint(0, 97, (2, 64)), torch.randint(0, 97, (2, 64))
    _, _, hidden = model(x, return_hidden=True)
    total, values = per_layer_losses(model.head, hidden, y, layer_weights(4, "weighted"))
    assert math.isclose(total.item(), sum((i + 1) * v for i, v in enumerate(values)), rel_tol=1e-5)
    total, values = per_layer_losses(model.head, hidden, y, layer_weights(4, "last"))
    assert math.isclose(total.item(), values[-1], rel_tol=1e-6) and len(set(values)) == 4


def test_catalog_entries_and_report_defaults():
    for name in ("lpt", "irt", "infini-hrm", "hrm"):
        experiment = catalog()[name]
        assert experiment.report == "004" and experiment.headline == "best_val_ppl"
        for field_name, field in experiment.config_cls.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"
    lpt = get_experiment("lpt").make_config()
    assert (lpt.method, lpt.n_layers, lpt.d_model, lpt.max_epochs, lpt.patience, lpt.segments) == ("lpt-sum", 4, 64, 30, 5, 2)
    assert (lpt.lr, lpt.weight_decay, lpt.clip, lpt.batch_size, lpt.seq_len) == (1e-3, 0.01, 1.0, 16, 64)
    irt = get_experiment("irt").make_config()
    assert (irt.d_model, irt.hrm_d_model, irt.max_epochs, irt.patience) == (64, 48, 30, 5)
    inf = get_experiment("infini-hrm").make_config()
    assert (inf.max_epochs, inf.patience) == (30, 3)
    hrm = get_experiment("hrm").make_config()
    assert (hrm.update, hrm.max_epochs, hrm.patience, hrm.segments) == ("sequential", 100, 1, 2)
    with pytest.raises(ValidationError):
        get_experiment("lpt").make_config(method="bogus")
    with pytest.raises(ValidationError):
        get_experiment("lpt").make_config(max_epochs=0)
    with pytest.raises(ValidationError):
        get_experiment("lpt").make_config(d_model=66)


def test_catalog_modules_do_not_import_torch():
    code = (
        "import sys; import core.experiments.lpt, core.experiments.irt, core.experiments.infini_hrm, "
        "core.experiments.hrm, core.data.wikitext; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _run(name: str, **values) -> RecordingEmitter:
    experiment = get_experiment(name)
    emitter = RecordingEmitter()
    experiment.run(experiment.make_config(**values), emitter)
    return emitter


def _check_common(em: RecordingEmitter, params: int, epochs: int) -> dict:
    info = em.infos()
    assert info["params"] == params
    assert info["data_source"].startswith("embedded excerpt: wikitext-2 test[:")
    assert info["device"] == "cpu" and info["weights"] == "best" and "B19" in info["quirks"]
    rows = em.of("epoch")
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    for r in rows:
        assert {"train_loss", "val_loss", "val_ppl"} <= set(r["metrics"]) and r["total"] is not None
        assert 1.0 < r["metrics"]["val_ppl"] < 100.0
        assert math.isclose(r["metrics"]["val_ppl"], math.exp(r["metrics"]["val_loss"]), rel_tol=1e-9)
    summary = em.summary_metrics()
    assert summary["params"] == params
    assert summary["best_val_ppl"] == min(r["metrics"]["val_ppl"] for r in rows)
    return summary


@pytest.mark.parametrize("method", ["lpt-sum", "lpt-weighted", "standard", "irt"])
def test_lpt_runs_with_per_layer_training_losses(method):
    em = _run("lpt", method=method, max_epochs=2, **SMALL)
    _check_common(em, 279_168 if method == "irt" else 275_072, 2)
    layer_rows = em.of("layers")
    assert [r["epoch"] for r in layer_rows] == [1, 2]
    for row, epoch in zip(layer_rows, em.of("epoch")):
        assert sorted(row["layers"]) == [1, 2, 3, 4]
        losses = [row["layers"][i]["loss"] for i in (1, 2, 3, 4)]
        train_loss = epoch["metrics"]["train_loss"]
        if method == "lpt-sum":
            assert math.isclose(train_loss, sum(losses), rel_tol=1e-6)
        elif method == "lpt-weighted":
            assert math.isclose(train_loss, sum((i + 1) * v for i, v in enumerate(losses)), rel_tol=1e-6)
        else:  # the head is scored on every block but trained on the last one only
            assert math.isclose(train_loss, losses[-1], rel_tol=1e-6)
    assert em.infos()["method"] == method and em.infos()["params_without_gradient"] == 0


def test_published_keeps_last_weights_and_corrected_restores_best():
    # 15 train windows at lr 1e-2 overfit within a few epochs: early stopping fires after a worse epoch
    settings = dict(method="standard", max_epochs=12, patience=1, lr=0.01, data="excerpt", train_chars=1_000, val_chars=1_000)
    published = _run("lpt", variant="published", **settings)
    corrected = _run("lpt", variant="corrected", **settings)
    assert published.infos()["weights"] == "last" and corrected.infos()["weights"] == "best"
    p, c = published.summary_metrics(), corrected.summary_metrics()
    assert p["best_epoch"] < p["epochs_run"] < 12  # stopped early: the last epoch is not the best
    assert p["final_val_ppl"] == published.of("epoch")[-1]["metrics"]["val_ppl"] != p["best_val_ppl"]
    assert math.isclose(c["final_val_ppl"], c["best_val_ppl"], rel_tol=1e-9)
    # same seed, same data: the two variants train identically on CPU
    assert [e["metrics"]["val_ppl"] for e in published.of("epoch")] == [e["metrics"]["val_ppl"] for e in corrected.of("epoch")]


@pytest.mark.parametrize(("model", "params"), [("standard", 78_080), ("irt", 82_176), ("hrm", 89_472)])
def test_irt_experiment_runs(model, params):
    em = _run("irt", model=model, max_epochs=1, **SMALL)
    _check_common(em, params, 1)
    assert ("B14" in em.infos()["quirks"]) == (model == "hrm")


@pytest.mark.parametrize(("model", "params"), [("hrm", 152_064), ("infini-reset", 168_452), ("infini-carry", 168_452)])
def test_infini_hrm_experiment_runs(model, params):
    em = _run("infini-hrm", model=model, max_epochs=1, **SMALL)
    _check_common(em, params, 1)
    assert ("B16" in em.infos()["quirks"]) == model.startswith("infini")


@pytest.mark.parametrize("update", ["sequential", "parallel"])
def test_hrm_experiment_logs_train_ppl_and_initial_ppls(update):
    em = _run("hrm", update=update, max_epochs=2, patience=5, **SMALL)
    _check_common(em, 152_064, 2)
    info = em.infos()
    assert info["initial_val_ppl"] > 50 and info["initial_train_ppl"] > 50  # untrained: near-uniform over 97
    assert all(r["metrics"]["train_ppl"] > 1.0 for r in em.of("epoch"))
    assert ("B14" in info["quirks"]) == (update == "parallel") and "B15" in info["quirks"]
    # Q-head 128 + z_L initial state 4,096 (+ block L 65,664 under the parallel rule) never get a gradient
    assert info["params_without_gradient"] == (69_888 if update == "parallel" else 4_224)


def test_missing_data_dir_is_refused_before_the_run(tmp_path):
    from pydantic import ValidationError

    for name in ("lpt", "hrm"):
        with pytest.raises(ValidationError, match="--data-dir: .* does not exist"):
            _run(name, data="dir", data_dir=str(tmp_path / "missing"), max_epochs=1)


def test_data_dir_without_wikitext_files_fails_the_run(tmp_path):
    from core.data.wikitext import DataSourceError

    for name in ("lpt", "hrm"):  # the folder exists but holds no train/valid text: a clear runtime error
        with pytest.raises(DataSourceError):
            _run(name, data="dir", data_dir=str(tmp_path), max_epochs=1)
