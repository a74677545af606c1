"""The dashboard's plain-Python parts: the run list model, metric series, incremental polls."""

from __future__ import annotations

import json
import math

from core import api
from core.paths import worker_log
from core.registry import store
from core.registry.emitter import RegistryEmitter
from core.registry.view import RunView
from hrm_tui.tui.poller import Watch, poll
from hrm_tui.tui.runs_model import RunsModel, SortOrder
from hrm_tui.tui.series import ALL_STAGES, RunSeries


def row(run_id: int, **changes) -> RunView:
    """A view built the way the store builds one: from a row mapping, by column name."""
    values = dict(
        id=run_id, experiment="smoke", variant="corrected", config={"epochs": 3, "seed": run_id % 2},
        status="completed", priority=0, created_at=100.0 + run_id, updated_at=200.0 + run_id, started_at=150.0,
        finished_at=190.0, host="h", pid=None, gpu="0", cancel_requested=False, stage=0, stage_name=None, epoch=3,
        total_epochs=3, headline_key="best_val_ppl", headline_value=10.0 + run_id, retry_of=None,
    )
    values.update(changes)
    values["config_json"] = json.dumps(values.pop("config"))
    return RunView.from_row(values, tags=values.pop("tags", ()))


def test_model_merges_updates_and_ignores_late_rows():
    model = RunsModel()
    assert model.apply([row(1), row(2)], full=True) == {1, 2}
    assert model.apply([row(1)]) == set()
    assert model.apply([row(1, status="failed", updated_at=300.0)]) == {1}
    assert model.apply([row(1, status="running", updated_at=250.0)]) == set()  # an older poll's copy
    assert model.get(1).status == "failed"
    assert model.apply([row(2)], full=True) == {1}  # a full read without run 1: it was deleted
    assert model.apply([], removed=[2]) == {2} and not model.rows


def test_model_differing_keys_incremental_and_filtered():
    model = RunsModel()
    model.apply([row(i) for i in range(1, 5)] + [row(9, experiment="other", config={"lr": 1})], full=True)
    assert model.differing_keys(model.view()) == {"smoke": {"seed": None}, "other": {}}  # 1 and 0, 2 each
    assert model.differing_keys(model.view("seed=1")) == {"smoke": {}}
    model.apply([row(5, config={"epochs": 4, "seed": 1})])
    assert model.differing_keys(model.view()) == {"smoke": {"epochs": "3", "seed": "1"}, "other": {}}
    model.apply([], removed=[5])
    assert model.differing_keys(model.view())["smoke"] == {"seed": None}


def test_config_cell_shows_what_sets_a_run_apart():
    from hrm_tui.tui.runs_model import config_cell

    spec = {"epochs": "3", "seed": None}
    assert config_cell(row(1, config={"epochs": 3, "seed": 1}), spec).plain == "seed=1"
    assert config_cell(row(2, config={"epochs": 9, "seed": 2}), spec).plain == "epochs=9 seed=2"
    assert config_cell(row(3), {"epochs": "3"}).plain == "·"


def test_model_filter_and_sort():
    model = RunsModel()
    model.apply([row(1), row(2, status="running", headline_value=None), row(3, tags=["sweep"])], full=True)
    assert [r.id for r in model.view()] == [3, 2, 1]
    assert [r.id for r in model.view("running")] == [2]
    assert [r.id for r in model.view("#3")] == [3]
    assert [r.id for r in model.view("sweep seed=1")] == [3]
    headline = SortOrder("headline", descending=False)
    assert [r.id for r in model.view(order=headline)] == [1, 3, 2]
    assert [r.id for r in model.view(order=headline.reversed())] == [3, 1, 2]
    assert SortOrder().next_column() == SortOrder("experiment", False)


def series_rows():
    rows, next_id = [], 1
    for stage, epochs in ((1, 3), (2, 2)):
        for epoch in range(1, epochs + 1):
            for key, value in (("train_loss", 3.0 - epoch), ("val_loss", math.nan if epoch == 2 else 3.5 - epoch)):
                rows.append({"id": next_id, "kind": "epoch", "stage": stage, "epoch": epoch, "layer": None,
                             "key": key, "value": value})
                next_id += 1
            for layer in (1, 2):
                rows.append({"id": next_id, "kind": "layer", "stage": stage, "epoch": epoch, "layer": layer,
                             "key": "loss", "value": float(layer + epoch)})
                next_id += 1
    return rows


def test_series_curves_per_stage_and_across_stages():
    series = RunSeries()
    rows = series_rows()
    assert series.extend(rows) == len(rows)
    assert series.extend(rows[:5]) == 0  # already seen
    assert series.stages() == [1, 2]
    assert series.curves(["train_loss"], 2) == {"train_loss": ([1, 2], [2.0, 1.0])}
    xs, _ = series.curves(["train_loss"], ALL_STAGES)["train_loss"]
    assert xs == [1, 2, 3, 4, 5] and series.stage_starts() == [4]
    assert series.curves(["val_loss"], 1)["val_loss"][0] == [1, 3]  # NaN points are not drawn
    grid = series.grid("loss", ALL_STAGES, max_columns=3)
    assert grid.columns == ["s1·3", "s2·1", "s2·2"] and grid.values[2] == [5.0, 3.0, 4.0]
    assert series.grid("loss", 1).columns == ["ep1", "ep2", "ep3"]


def test_poll_is_incremental_and_notices_deletions(db):
    first = api.submit(db, "smoke", {"epochs": 2}).id
    result = poll(db, watermark=None, known=set(), watches={})
    assert result.full and [r.id for r in result.rows] == [first]
    second = api.submit(db, "smoke", {"epochs": 2}).id
    again = poll(db, watermark=result.watermark, known={first}, watches={})
    assert not again.full and second in {r.id for r in again.rows} and not again.removed
    store.delete_run(db, first)
    gone = poll(db, watermark=again.watermark, known={first, second}, watches={})
    assert gone.removed == {first}
    page = poll(db, watermark=None, known=set(), watches={}, first_page=1)
    assert [r.id for r in page.rows] == [second] and page.watermark is None and not page.full


def test_poll_reads_metrics_logs_and_worker_log_after_cursors(db):
    run_id = api.submit(db, "smoke", {"epochs": 2}).id
    RegistryEmitter(db, run_id).epoch(1, {"val_loss": 2.0})
    RegistryEmitter(db, run_id).log("hello")
    log = worker_log(db.url, run_id)
    log.parent.mkdir(parents=True)
    log.write_text("line 1\n")
    result = poll(db, watermark=None, known=set(), watches={run_id: Watch()})
    assert [r["key"] for r in result.metrics[run_id]] == ["val_loss"]
    assert [r["message"] for r in result.logs[run_id]] == ["hello"]
    assert result.files[run_id] == api.LogChunk(0, 7, "line 1\n")
    watch = Watch(result.metrics[run_id][-1]["id"], result.logs[run_id][-1]["id"], 7)
    quiet = poll(db, watermark=result.watermark, known={run_id}, watches={run_id: watch})
    assert not quiet.metrics and not quiet.logs and not quiet.files
    assert api.read_worker_log(db, run_id + 1, None) is None
    with log.open("a") as f:
        f.write("half a li")
    assert api.read_worker_log(db, run_id, 7) is None  # a line still being written waits
    with log.open("a") as f:
        f.write("ne\n")
    assert api.read_worker_log(db, run_id, 7) == api.LogChunk(7, 19, "half a line\n")
    assert "".join(api.tail_worker_log(db, run_id)) == "line 1\nhalf a line\n"


def test_run_rows_headline_falls_back_to_best_val_ppl_while_training(db):
    run_id = api.submit(db, "smoke", {"epochs": 2}).id
    RegistryEmitter(db, run_id).epoch(1, {"val_ppl": 30.0})
    RegistryEmitter(db, run_id).epoch(2, {"val_ppl": 20.0})
    (only,) = api.list_runs(db)
    assert only.headline_value is None and only.headline == 20.0 and not only.headline_is_final
    RegistryEmitter(db, run_id).summary({"best_val_ppl": 19.5})
    (only,) = api.list_runs(db, ids=[run_id])
    assert only.headline == 19.5 and only.headline_is_final


def test_staged_run_headline_is_the_current_stage_best_while_it_trains(db):
    """Stage 2's val_ppl rows are stage rows: the headline follows the stage the run is in, not stage 0."""
    run_id = api.submit(db, "smoke", {"epochs": 2, "stages": 2}).id
    emitter = RegistryEmitter(db, run_id)
    emitter.stage(1, "stage 1", epochs=2)
    emitter.epoch(1, {"val_ppl": 30.0}, stage=1, total=2)
    emitter.epoch(2, {"val_ppl": 25.0}, stage=1, total=2)
    assert api.list_runs(db)[0].headline == 25.0
    emitter.stage(2, "stage 2", epochs=2)
    emitter.epoch(1, {"val_ppl": 40.0}, stage=2, total=2)
    (run,) = api.list_runs(db, ids=[run_id])
    assert run.stage == 2 and run.headline == 40.0
    assert store.get_run(db, run_id).headline == 40.0 and api.list_runs(db, last=1)[0].headline == 40.0


def test_tui_modules_keep_core_headless():
    """The dashboard imports core; core never imports the dashboard (import-linter checks it too)."""
    import subprocess
    import sys

    code = "import core.api, sys; assert not any(m.startswith(('textual', 'hrm_tui')) for m in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0




def test_end_of_run_layer_stats_render_as_one_profile_table_with_bars():
    """A saturation-style run (per-layer values, no epochs) shows one layer x statistic table with a bar
    chart of the mean, not one single-column table per statistic; per-epoch layers keep their tables."""
    from rich.console import Console

    from hrm_tui import render

    rows = [{"kind": "layer", "stage": 0, "epoch": None, "layer": layer, "key": key, "value": value}
            for layer, mean in ((1, 0.0039), (2, 0.8195), (30, 0.1267))
            for key, value in (("cos_mean", mean), ("cos_std", 0.02))]
    rows += [{"kind": "layer", "stage": 1, "epoch": e, "layer": 1, "key": "loss", "value": 2.0 / e} for e in (1, 2)]
    tables = render.layer_tables(rows)
    assert [t.title for t in tables] == ["per-layer profile", "per-layer loss (stage 1)"]
    console = Console(width=120, record=True)
    console.print(tables[0])
    text = console.export_text()
    lines = {ln.split("│")[1].strip(): ln for ln in text.splitlines() if ln.count("│") > 3 and ln.split("│")[1].strip().isdigit()}
    assert set(lines) == {"1", "2", "30"}
    assert lines["2"].count("█") > lines["30"].count("█") > lines["1"].count("█")
    assert len(render.bar(0.5, 0.0, 1.0, width=10).plain) == 5 and render.bar(None, 0, 1).plain == ""


def test_the_first_page_is_read_without_sqlalchemy(db, tmp_path):
    """The dashboard's first rows come from the standard library: SQLAlchemy loads after they show."""
    import subprocess
    import sys

    first = api.submit(db, "smoke", {"epochs": 2}).id
    second = api.submit(db, "smoke", {"epochs": 3}).id
    path = db.url.removeprefix("sqlite:///")
    code = ("import sys; from hrm_tui.tui.poller import first_page; page = first_page(sys.argv[1], 1); "
            "assert 'sqlalchemy' not in sys.modules and 'core.api' not in sys.modules, 'loaded too early'; "
            "print(page.rows[0].id, page.counts, page.known)")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(second), "{'queued':", "2}", "2"]
    assert first < second
