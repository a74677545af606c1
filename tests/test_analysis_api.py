"""The analysis API as a notebook uses it: ``import hrm_tui as hrm``, runs → DataFrame, long metrics."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from core import api
from tests.conftest import ROOT, run_scheduler_once, subprocess_env


@pytest.fixture(scope="module")
def trained(module_registry):
    """Three real smoke runs executed by the scheduler: two tagged, one failed; then a note and a tag."""
    _, db = module_registry
    a = api.submit(db, "smoke", {"epochs": 4, "layers": 3, "seed": 1}, tags=["sweep-1"])
    b = api.submit(db, "smoke", {"epochs": 6, "layers": 2, "seed": 2, "stages": 2}, tags=["sweep-1"])
    c = api.submit(db, "smoke", {"epochs": 4, "fail_at_epoch": 3})
    done = run_scheduler_once(db.url)
    assert done.returncode == 0, done.stderr
    api.set_note(db, a.id, "baseline")
    api.edit_tags(db, c.id, add=["broken"])
    return a.id, b.id, c.id


def test_notebook_session(db_path, trained):
    import hrm_tui as hrm

    a, b, c = trained
    runs = hrm.runs(db_path)
    assert runs.ids == [c, b, a]
    assert runs[0]["status"] == "failed" and runs[2]["note"] == "baseline"

    df = runs.to_pandas()
    assert list(df.index) == [c, b, a]
    assert df.loc[a, "config.layers"] == 3 and df.loc[b, "config.stages"] == 2
    assert df.loc[a, "tags"] == "sweep-1" and df.loc[c, "tags"] == "broken"
    assert df.loc[a, "note"] == "baseline"
    expected_best = math.exp(2.0 + 3.0 * math.exp(-2.0) + 0.1 + 0.05)  # smoke's val_ppl at epoch 4
    assert df.loc[a, "val_ppl"] == pytest.approx(expected_best)
    assert df.loc[a, "val_ppl.min"] == pytest.approx(expected_best)
    assert df.loc[a, "best_val_ppl"] == pytest.approx(expected_best)
    assert df.loc[a, "headline"] == pytest.approx(expected_best)
    assert df.loc[b, "s2/val_ppl.max"] > df.loc[b, "s2/val_ppl.min"]
    assert str(df["created_at"].dtype).startswith("datetime64")

    completed = hrm.runs(db_path, status="completed", tag="sweep-1", where="config.layers < 3")
    assert completed.ids == [b]
    assert hrm.runs(db_path, status=["failed", "completed"], experiment="smoke").ids == [c, b, a]
    assert hrm.runs(db_path, where="tag == 'broken' or note ~ 'base'").ids == [c, a]

    long = hrm.metrics(db_path, [a, b])
    assert list(long.columns) == ["run", "stage", "epoch", "layer", "key", "value", "kind", "ts"]
    per_layer = long[(long.run == a) & (long.kind == "layer")]
    assert sorted(per_layer.layer.unique()) == [1, 2, 3] and len(per_layer) == 4 * 3
    curve = long[(long.run == a) & (long.key == "val_ppl")].set_index("epoch").value
    assert list(curve.index) == [1, 2, 3, 4] and curve.is_monotonic_decreasing
    assert set(long[(long.run == b) & (long.kind == "epoch")].stage.unique()) == {1, 2}
    pivot = long[(long.kind == "epoch") & (long.key == "val_ppl")].pivot_table(
        index="epoch", columns="run", values="value")
    assert pivot.shape == (6, 2)
    assert hrm.metrics(db_path, runs.ids, kinds=["summary"], keys=["best_val_ppl"]).run.tolist() == [a, b]
    failed = hrm.metrics(db_path, c)
    assert failed.epoch.max() == 2  # it failed at epoch 3: the rows before it are kept


def test_bad_filter_and_missing_registry_are_user_errors(tmp_path, db_path, trained):
    import hrm_tui as hrm

    with pytest.raises(api.UserError, match="at column 16") as info:
        hrm.runs(db_path, where="val_ppl < 3 and")
    assert info.value.exit_code == 2
    with pytest.raises(api.UserError, match="no registry"):
        hrm.runs(tmp_path / "nothing.db")
    assert not (tmp_path / "nothing.db").exists()


def test_import_stays_cheap_and_pandas_is_optional(db_path, trained):
    """``import hrm_tui`` loads neither pandas nor the core; without pandas, one line names the extra."""
    probe = (
        "import sys, hrm_tui as hrm\n"
        "assert 'pandas' not in sys.modules and 'core.api' not in sys.modules, sorted(sys.modules)\n"
        "sys.modules['pandas'] = None\n"  # what an environment without pandas looks like to import
        f"records = hrm.runs({str(db_path)!r})\n"
        "assert len(records) == 3\n"
        "try:\n    records.to_pandas()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=subprocess_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "UserError pandas is not installed: pip install 'hrm-tui[analysis]'"


def test_notebook_page_runs(tmp_path, trained, db_path):
    """Every python block of docs/notebook.md runs, in order, against a registry with runs."""
    text = (ROOT / "docs" / "notebook.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block.replace("runs.db", str(db_path)), "notebook.md", "exec"), namespace)
    assert list(namespace["df"].index) == list(reversed(trained))
    assert namespace["curves"].shape[1] == 2  # one column per sweep-1 run
    assert namespace["best_id"] == trained[1]  # the two-stage run reaches the lower perplexity
    assert namespace["best"].index.tolist() == [1, 2]  # its per-layer losses (2 layers)


@pytest.fixture
def db_path(module_registry):
    return module_registry[0]
