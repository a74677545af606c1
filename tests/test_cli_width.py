"""``hrm ls`` and ``hrm show`` in an 80-column terminal: less important columns go first, never the
status or a per-layer loss; ``--wide`` shows everything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core.registry import open_database, store
from hrm_tui.cli import app

runner = CliRunner()


@pytest.fixture
def registry(db_path):
    db = open_database(db_path, create=True)
    for i, method in enumerate(["standard", "lpt-sum", "lpt-weighted"]):
        store.create_run(db, "lpt", {"method": method, "seed": i, "lr": 0.001 * (i + 1)}, headline_key="best_val_ppl")
    run = store.claim_next(db, host="h", gpu="cuda:0")
    store.mark_running(db, run.id, pid=1, host="h", info={})
    for e in range(1, 31):
        store.append_metrics(db, run.id, "epoch", {"train_loss": 2.0 / e, "val_loss": 2.1 / e, "val_ppl": 8 + 1 / e,
                                                   "lr": 0.001}, epoch=e, total=30)
        store.append_metrics(db, run.id, "layer", {k: {"loss": 1.23456 / (e + k)} for k in range(1, 5)}, epoch=e)
    db.dispose()
    return db_path


def hrm(db_path, *args, columns=80):
    result = runner.invoke(app, ["--db", str(db_path), *args], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_ls_at_80_columns_drops_the_least_important_columns(registry):
    out = hrm(registry, "ls")
    assert max(len(line) for line in out.splitlines()) <= 80
    for whole in ("running", "queued", "8.0333", "best_val_ppl", "method=lpt-weighted"):
        assert whole in out
    assert "…" not in out and "cuda:0" not in out
    assert "not shown at this width: elapsed, variant, gpu" in out
    wide = hrm(registry, "ls", "--wide")
    assert "cuda:0" in wide and "corrected" in wide and "not shown" not in wide
    assert "gpu" in hrm(registry, "ls", columns=200)


def test_show_at_80_columns_keeps_every_layer_value_whole(registry):
    out = hrm(registry, "show", "1")
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    assert "ep 1 " in out and "ep 30" in out and "0.0398" in out  # first and last epochs, values whole
    assert "ep 29" not in out
    wide = hrm(registry, "show", "1", "--wide")
    assert "ep 29" in wide and "0.0412" in wide
    assert "…" not in wide


def test_many_metrics_at_80_columns_name_the_hidden_ones(db_path):
    db = open_database(db_path, create=True)
    run = store.create_run(db, "smoke", {})
    metrics = {f"metric_number_{i}": 1.0 + i for i in range(9)}
    store.append_metrics(db, run.id, "epoch", metrics, epoch=1, total=1)
    db.dispose()
    out = hrm(db_path, "show", "1")
    assert max(len(line) for line in out.splitlines()) <= 80 and "…" not in out
    assert "not shown at this width: " in out and "metric_number_8" in out.split("not shown at this width: ")[1]
    assert "metric_number_8 " in hrm(db_path, "show", "1", "--wide")
