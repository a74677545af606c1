"""The dashboard idles (issue #13): a poll that finds nothing new repaints nothing, a changed run repaints
its own line, a chart is built again only when its data changed, and a hidden screen stays still.

The CPU figures themselves are measured in a real terminal by ``benchmarks/bench_tui.py --idle``.
"""

from __future__ import annotations

import pytest
from textual.geometry import Region
from tui_helpers import dashboard, press_on, run_table, seeded_registry, settle

from core.registry import open_database
from core.registry.emitter import RegistryEmitter


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as found:
        yield found


class Repaints:
    """Records a widget's refresh calls: ``None`` for the whole widget, else the regions asked for."""

    def __init__(self, widget) -> None:
        self.calls: list[tuple[Region, ...] | None] = []
        original = widget.refresh

        def refresh(*regions, **kwargs):
            self.calls.append(regions or None)
            return original(*regions, **kwargs)

        widget.refresh = refresh

    @property
    def whole(self) -> int:
        return sum(1 for call in self.calls if call is None)


def emit_epoch(path, run_id: int, epoch: int, *, stage: int = 2) -> None:
    writer = open_database(path)
    RegistryEmitter(writer, run_id).epoch(epoch, {"train_loss": 1.25, "val_loss": 1.5, "val_ppl": 4.5},
                                          stage=stage, total=4)
    writer.dispose()


async def test_a_poll_with_nothing_new_repaints_nothing(seeded):
    from textual.widgets import Static

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        status = app.screen.query_one("#status-line", Static)
        runs, line = Repaints(run_table(app)), Repaints(status)
        for _ in range(3):
            app.poll_once()
            await settle(pilot)
        assert runs.whole == 0 and line.calls == []
        assert all(len(call) == 1 and call[0].height == 1 for call in runs.calls if call)  # clock ticks: one line


async def test_a_changed_run_repaints_its_own_line_only(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        runs = Repaints(run_table(app))
        emit_epoch(path, ids["staged"], 3)
        app.poll_once()
        await settle(pilot)
        assert app.runs.get(ids["staged"]).epoch == 3
        assert runs.whole == 0
        index = next(i for i, r in enumerate(run_table(app).rows) if r.id == ids["staged"])
        assert {call[0].y for call in runs.calls if call} == {index + 1}  # the header is line 0


async def test_a_chart_is_built_again_only_when_its_data_changed(seeded):
    from hrm_tui.tui.widgets.loss_chart import LossChart

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["staged"], "enter")
        await settle(pilot)
        await pilot.pause(0.2)
        loss, other = app.screen.query_one("#loss-chart", LossChart), app.screen.query_one("#other-chart", LossChart)
        built = (loss.builds, other.builds)
        assert built[0] >= 1
        for _ in range(3):
            app.poll_once()
            await settle(pilot)
        await pilot.pause(0.2)
        assert (loss.builds, other.builds) == built
        emit_epoch(path, ids["staged"], 3)
        app.poll_once()
        await settle(pilot)
        await pilot.pause(0.2)
        assert loss.builds == built[0] + 1 and loss.point_count == 7


async def test_the_runs_list_under_a_run_view_stays_still_and_catches_up(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        runs_table = run_table(app)
        runs_table.move_to(ids["done_a"])
        await pilot.press("enter")
        await settle(pilot)
        hidden = Repaints(runs_table)
        emit_epoch(path, ids["staged"], 3)
        app.poll_once()
        await settle(pilot)
        assert hidden.calls == []
        await pilot.press("escape")
        await settle(pilot)
        row = next(r for r in runs_table.rows if r.id == ids["staged"])
        assert row.epoch == 3 and hidden.calls
