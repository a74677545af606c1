"""Runs that cannot succeed are refused at submit: one ``error:`` line, exit 2, nothing queued.

Also the shared config fields: one declaration per field (bounds, description), one RoPE check, one
``cpu_threads`` default, whatever experiment declares them.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core import api
from core.experiments import catalog
from core.experiments.fields import DEFAULT_CPU_THREADS, CharModelFields, EarlyStoppingFields, OptimizerFields
from hrm_tui.cli import app

runner = CliRunner()
CHAR_EXPERIMENTS = ("hrm", "infini-hrm", "irt", "lpt", "layer-freezing", "greedy-layerwise", "progressive",
                    "layer-contribution", "early-exit", "confidence-routing", "lpt-routing")


@pytest.mark.parametrize(("experiment", "args", "message"), [
    ("lpt", ["--data", "dir"], "--data dir needs --data-dir"),
    ("greedy-layerwise", ["--data", "dir"], "--data dir needs --data-dir"),
    ("confidence-routing", ["--data", "wikitext2", "--wikitext-source", "dir"], "--wikitext-source dir needs --data-dir"),
    ("layer-freezing", ["--wikitext-source", "dir"], "--wikitext-source dir needs --data-dir"),
    ("lpt", ["--train-chars", "200", "--seq-len", "256"], "--train-chars 200 gives no window of --seq-len 256"),
    ("hrm", ["--val-chars", "130", "--seq-len", "512"], "--val-chars 130 gives no window"),
    ("layer-freezing", ["--variant", "published", "--seq-len", "1024"], "leaves 1 train / 0 val batches"),
    ("lpt-routing", ["--variant", "published", "--batch-size", "400"], "leaves 0 train / 0 val batches"),
    ("progressive", ["--variant", "published", "--seq-len", "512"], "leaves 2 train / 0 val batches"),
    ("irt", ["--hrm-d-model", "42"], "width 42 must be a multiple of n_heads 4 with an even head dimension"),
])
def test_a_run_that_cannot_succeed_is_refused_at_submit(db_path, experiment, args, message):
    result = runner.invoke(app, ["--db", str(db_path), "run", experiment, *args, "--no-start-scheduler"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not db_path.exists()


def test_the_same_shape_is_fine_where_the_data_is_long_enough():
    api.validate_config("lpt", {"train_chars": 20_000, "seq_len": 256})
    api.validate_config("layer-freezing", {"variant": "corrected", "seq_len": 1024})  # wikitext2: windows, not toy
    api.validate_config("lpt", {"data": "dir", "data_dir": "."})


@pytest.mark.parametrize("experiment", CHAR_EXPERIMENTS)
def test_every_char_experiment_shares_the_declared_fields(experiment):
    config_cls = catalog()[experiment].config_cls
    assert issubclass(config_cls, (CharModelFields, OptimizerFields, EarlyStoppingFields))
    shared = {**CharModelFields.model_fields, **OptimizerFields.model_fields, **EarlyStoppingFields.model_fields}
    for name, field in config_cls.model_fields.items():
        if name in shared:  # same bounds and description; only the default may be the experiment's own
            assert field.metadata == shared[name].metadata and field.description == shared[name].description, name
    assert config_cls.model_fields["cpu_threads"].default == DEFAULT_CPU_THREADS
    with pytest.raises(api.UserError, match="even head dimension"):
        api.validate_config(experiment, {"d_model": 60, "n_heads": 4})


def test_report_defaults_survive_the_shared_declarations():
    hrm = catalog()["hrm"].make_config()
    assert (hrm.max_epochs, hrm.patience, hrm.lr, hrm.weight_decay, hrm.clip) == (100, 1, 1e-3, 0.01, 1.0)
    assert catalog()["infini-hrm"].make_config().patience == 3
    routed = catalog()["confidence-routing"].make_config()
    assert (routed.seq_len, routed.batch_size, routed.d_model, routed.n_heads) == (64, 16, 64, 4)


# --- what the machine must have: checked once, at submit ------------------------------------------

def _queued(db_path) -> int:
    if not db_path.exists():
        return 0
    from core.registry import open_database, store

    return len(store.list_runs(open_database(db_path)))


@pytest.mark.parametrize("experiment", ["saturation", "hard-tokens", "cascade"])
def test_no_alpaca_anywhere_is_refused_at_submit(db_path, monkeypatch, experiment):
    monkeypatch.delenv("HRM_ALPACA_FILE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub is out of reach
    result = runner.invoke(app, ["--db", str(db_path), "run", experiment, "--no-start-scheduler"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {experiment}: no Alpaca records"), result.output
    assert "--data-file" in lines[0] and _queued(db_path) == 0


def test_alpaca_from_the_environment_must_exist(db_path, monkeypatch, tmp_path):
    monkeypatch.setenv("HRM_ALPACA_FILE", str(tmp_path / "gone.json"))
    model = tmp_path / "model.gguf"  # a local model file, so the check does not depend on a fetched model or the hub
    model.write_bytes(b"GGUF")
    cmd = ["--db", str(db_path), "run", "cascade", "--model", str(model), "--no-start-scheduler"]
    result = runner.invoke(app, cmd)
    assert result.exit_code == 1 and "Alpaca data file not found" in result.output and _queued(db_path) == 0
    (tmp_path / "gone.json").write_text("[]")
    ok = runner.invoke(app, cmd)
    assert ok.exit_code == 0, ok.output
    assert _queued(db_path) == 1
