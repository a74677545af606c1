"""Pilot tests of the dashboard on real registry files: navigate, open, compare, act, watch live."""

from __future__ import annotations

import pytest
from tui_helpers import dashboard, press_on, run_table, seeded_registry, settle, text_of

from core import api
from core.registry import open_database, store
from core.registry.emitter import RegistryEmitter


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as seeded:
        yield seeded


async def test_lists_runs_newest_first_and_moves_the_cursor(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        runs = run_table(app)
        assert [r.id for r in runs.rows] == sorted(ids.values(), reverse=True)
        assert runs.cursor_run_id == ids["queued"]
        await pilot.press("down", "down")
        assert runs.cursor_run_id == ids["staged"]
        await pilot.press("end")
        assert runs.cursor_run_id == ids["done_a"]
        status = text_of(app.screen.query_one("#status-line"))
        assert "2 completed" in status and "scheduler absent" in status


async def test_filter_and_sort(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await pilot.press("slash", *"completed", "enter")
        await pilot.pause(0.2)
        assert {r.id for r in run_table(app).rows} == {ids["done_a"], ids["done_b"]}
        await pilot.press("escape")
        assert run_table(app).row_count == 5
        await pilot.press("s", "s", "s", "s")  # id → experiment → status → progress → headline
        assert app.screen.order.column == "headline"
        ordered = [r.id for r in run_table(app).rows]
        # 12.5, 15, the staged run's stage-2 best so far (28.5), 47.9, then none
        assert ordered[:4] == [ids["done_a"], ids["done_b"], ids["staged"], ids["failed"]]
        await pilot.press("S")
        ordered = [r.id for r in run_table(app).rows]
        assert ordered == [ids["failed"], ids["staged"], ids["done_b"], ids["done_a"], ids["queued"]]


async def test_open_a_run_shows_curves_layers_stages_and_tables(seeded):
    from hrm_tui.tui.screens.run_view import RunScreen
    from hrm_tui.tui.widgets.layer_heatmap import LayerHeatmap
    from hrm_tui.tui.widgets.loss_chart import LossChart

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["staged"], "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.run_id == ids["staged"]
        chart = screen.query_one("#loss-chart", LossChart)
        assert set(chart.series) == {"train_loss", "val_loss"}
        assert chart.point_count == 6  # 4 epochs of stage 1, then 2 of stage 2
        assert chart.markers == [5]
        assert screen.query_one(LayerHeatmap).row_count == 4
        await pilot.press("right_square_bracket", "right_square_bracket")  # all → stage 1 → stage 2
        await pilot.pause()
        assert screen.stage == 2 and chart.point_count == 2
        await pilot.press("escape")
        await press_on(pilot, ids["done_a"], "enter")
        await settle(pilot)
        assert "threshold sweep" in text_of(app.screen.query_one("#tables-text"))
        assert "params=4,000" in text_of(app.screen.query_one("#config-text"))


async def test_a_metric_written_by_a_worker_appears_after_a_poll(seeded):
    from hrm_tui.tui.widgets.loss_chart import LossChart

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["staged"], "enter")
        await settle(pilot)
        chart = app.screen.query_one("#loss-chart", LossChart)
        assert chart.point_count == 6
        writer = open_database(path)
        RegistryEmitter(writer, ids["staged"]).epoch(3, {"train_loss": 1.25, "val_loss": 1.5}, stage=2, total=4)
        RegistryEmitter(writer, ids["staged"]).log("epoch 3 of stage 2 done")
        writer.dispose()
        app.poll_once()
        await settle(pilot)
        assert chart.point_count == 7
        assert chart.series["train_loss"][1][-1] == 1.25
        assert "epoch 3 of stage 2 done" in "\n".join(app.screen.query_one("#run-log").lines)
        assert "s2 ep 3/4" in text_of(app.screen.query_one("#run-header"))


async def test_a_new_run_appears_in_the_table_after_a_poll(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        writer = open_database(path)
        run = api.submit(writer, "smoke", {"epochs": 2})
        writer.dispose()
        app.poll_once()
        await settle(pilot)
        assert run_table(app).rows[0].id == run.id
        assert app.counts["queued"] == 2


async def test_compare_two_marked_runs_and_export(seeded, tmp_path):
    from hrm_tui.tui.screens.compare import CompareScreen
    from hrm_tui.tui.widgets.loss_chart import LossChart

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["done_b"], "space", "space")  # marks done_b, then done_a (the cursor moves down)
        assert list(run_table(app).marked) == [ids["done_b"], ids["done_a"]]
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        assert screen.run_ids == [ids["done_b"], ids["done_a"]]
        view = screen.query_one("#compare-table")
        assert view.row_count == 2
        labels = [c.label.plain for c in view.columns.values()]
        assert "seed" in labels and "vs run 2 %" in labels and "epochs" not in labels
        assert set(screen.query_one("#compare-chart", LossChart).series) == {f"run {ids['done_a']}",
                                                                              f"run {ids['done_b']}"}
        screen.export_dir = tmp_path
        await pilot.press("e", "E")
        markdown = (tmp_path / "compare-2-1.md").read_text()
        assert "| run |" in markdown and "+16.7%" in markdown  # (15 − 12.5) / 15, positive = better
        assert (tmp_path / "compare-2-1.csv").read_text().startswith("run,")


async def test_new_run_form_validates_like_the_cli_and_queues(seeded):
    from textual.widgets import Input

    from hrm_tui.tui.screens.new_run import NewRunScreen

    path, _ = seeded
    async with dashboard(path) as (app, pilot):
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, NewRunScreen) and form.experiment == "smoke"
        form.query_one("#experiment").value = "hrm"  # every experiment's form is generated from describe()
        await pilot.pause()
        assert form.experiment == "hrm" and form.query("#field-max_epochs")
        form.query_one("#experiment").value = "smoke"
        await pilot.pause()
        assert len(form.params) == 9
        form.query_one("#field-epochs", Input).value = "20000"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        assert "--epochs" in str(form.query_one("#error-epochs").render())
        form.query_one("#field-epochs", Input).value = "7"
        form.query_one("#tags", Input).value = "from-tui"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, NewRunScreen)
        db = open_database(path)
        newest = store.list_runs(db, last=1)[0]
        assert newest.status == "queued" and '"epochs": 7' in newest.config_json
        assert store.tags_of(db, [newest.id]) == {newest.id: ["from-tui"]}
        db.dispose()
        assert run_table(app).rows[0].id == newest.id


async def test_cancel_asks_first_then_cancels_a_queued_run(seeded):
    from hrm_tui.tui.screens.confirm import ConfirmScreen

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["queued"], "x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert app.runs.get(ids["queued"]).status == "queued"
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert app.runs.get(ids["queued"]).status == "cancelled"


async def test_delete_refuses_an_active_run_and_removes_a_finished_one(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["staged"], "d", "y")
        await settle(pilot)
        assert app.runs.get(ids["staged"]) is not None  # api.delete: cancel it first
        await press_on(pilot, ids["failed"], "d", "y")
        await settle(pilot)
        assert app.runs.get(ids["failed"]) is None
        assert ids["failed"] not in {r.id for r in run_table(app).rows}


async def test_retry_queues_a_copy_from_a_key_and_from_the_palette(seeded):
    import inspect

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["failed"], "r")
        await settle(pilot)
        newest = run_table(app).rows[0]
        assert newest.retry_of == ids["failed"] and newest.status == "queued"
        run_table(app).move_to(ids["done_a"])
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Retry run")
        result = command.callback()
        if inspect.isawaitable(result):
            await result
        await settle(pilot)
        assert run_table(app).rows[0].retry_of == ids["done_a"]


async def test_logs_screen_shows_the_worker_log_file(seeded):
    from core.paths import worker_log

    path, ids = seeded
    log = worker_log(f"sqlite:///{path}", ids["failed"])
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Traceback (most recent call last):\nRuntimeError: smoke failure requested\n")
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["failed"], "l")
        await settle(pilot)
        lines = app.screen.query_one("#full-log").lines
        assert "RuntimeError: smoke failure requested" in lines
        with log.open("a") as f:
            f.write("a line written later\n")
        app.poll_once()
        await settle(pilot)
        assert app.screen.query_one("#full-log").lines[-1] == "a line written later"


async def test_queue_screen_groups_runs_by_state(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await pilot.press("g")
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#running").row_count == 1
        assert screen.query_one("#queued").row_count == 1
        assert screen.query_one("#finished").row_count == 3
        slots = screen.query_one("#slots")
        assert [slots.get_row_at(i)[0] for i in range(slots.row_count)] == ["1"]


async def test_quitting_leaves_runs_alone(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await pilot.press("q")
    db = open_database(path)
    assert store.get_run(db, ids["staged"]).status == "running"
    assert not store.get_run(db, ids["staged"]).cancel_requested
    db.dispose()


async def test_an_end_of_run_layer_profile_shows_as_bars(seeded):
    """A saturation-style run (one value per layer, no epochs) shows each layer's value with a bar."""
    from hrm_tui.tui.widgets.layer_heatmap import LayerHeatmap

    path, ids = seeded
    db = open_database(path)
    run_id = api.submit(db, "smoke", {"epochs": 1, "seed": 9}).id
    RegistryEmitter(db, run_id).layers(None, {1: {"cos_mean": 0.004}, 25: {"cos_mean": 0.83}, 30: {"cos_mean": 0.13}})
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, run_id, "enter")
        await settle(pilot)
        heat = app.screen.query_one(LayerHeatmap)
        rows = {int(str(heat.get_row_at(i)[0])): [str(c) for c in heat.get_row_at(i)] for i in range(heat.row_count)}
        assert set(rows) == {1, 25, 30}
        assert rows[25][1] == "0.83" and rows[25][2].count("█") == 24
        assert 0 < rows[30][2].count("█") < rows[25][2].count("█") and rows[1][2].count("█") == 0
