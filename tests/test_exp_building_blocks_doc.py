"""docs/building-blocks.md's complete experiment runs as printed, and the blocks it names exist."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from core.experiments.base import RecordingEmitter

DOC = Path(__file__).resolve().parents[1] / "docs" / "building-blocks.md"


def _example_module(tmp_path):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(1)
    (tmp_path / "lpt_small_doc.py").write_text(code, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module("lpt_small_doc")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("lpt_small_doc", None)


def test_the_documented_experiment_runs(tmp_path):
    module = _example_module(tmp_path)
    config = module.EXPERIMENT.make_config(d_model=16, n_heads=2, n_layers=2, max_epochs=2, train_chars=3_000,
                                           device="cpu")
    emit = RecordingEmitter()
    module.EXPERIMENT.run(config, emit)
    assert [e["epoch"] for e in emit.of("epoch")] == [1, 2]
    assert sorted(emit.of("layers")[-1]["layers"]) == [1, 2]
    assert "excerpt" in emit.infos()["data_source"] and emit.summary_metrics()["best_val_ppl"] > 1


def test_every_named_block_exists():
    text = DOC.read_text(encoding="utf-8")
    table = {
        "core.runtime": ["Emitter", "RecordingEmitter", "seed_everything", "resolve_device", "torch_threads"],
        "core.experiments.base": ["ExperimentConfig", "Experiment", "Unavailable"],
        "core.experiments.fields": ["OptimizerFields", "EarlyStoppingFields", "CharModelFields", "Patience"],
        "core.data.char_data": ["char_batches", "CharData"],
        "core.data.toy": ["toy_batch_counts", "toy_fox_batches"],
        "core.models.char_lm": ["CharLM"],
        "core.models.routed": ["ExitStackLM", "build_exit_stack", "route", "confidence"],
        "core.models.growable": ["GrowableCharLM"],
        "core.models.lpt": ["per_layer_losses", "layer_weights"],
        "core.training.loop": ["fit", "train_epoch", "evaluate_loss", "EarlyStopping", "perplexity"],
        "core.training.routing": ["RoutingPlan", "evaluate"],
    }
    for module, names in table.items():
        assert module in text, module
        loaded = importlib.import_module(module)
        for name in names:
            assert hasattr(loaded, name), f"{module}.{name}"
            assert name in text, name
