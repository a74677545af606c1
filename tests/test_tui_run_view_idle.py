"""The run view of a training run idles (issue #13): charts are redrawn at most once per ``REDRAW_EVERY``
while epochs stream in (every epoch still reaches them), and a long run's curves are thinned to what the
chart's width can show, so a redraw costs the same at epoch 50 and at epoch 20,000.

The CPU figures themselves are measured in a real terminal by ``benchmarks/bench_tui.py --idle``.
"""

from __future__ import annotations

import math
import random
import time

import pytest
from tui_helpers import dashboard, press_on, seeded_registry, settle

from core.registry import open_database
from core.registry.emitter import RegistryEmitter
from hrm_tui.tui.widgets.loss_chart import thin


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as found:
        yield found


def emit_epoch(path, run_id: int, epoch: int, *, stage: int = 2) -> None:
    writer = open_database(path)
    RegistryEmitter(writer, run_id).epoch(epoch, {"train_loss": 1.25, "val_loss": 1.5, "val_ppl": 4.5},
                                          stage=stage, total=4)
    writer.dispose()


async def merge_one_poll(app, pilot) -> None:
    """Poll and merge the result, without waiting for a deferred chart redraw (``settle`` waits for it)."""
    app.poll_once()
    while app.poll_in_flight:
        await app.workers.wait_for_complete()
        await pilot.pause()


async def test_epochs_streaming_in_are_drawn_together_once_the_redraw_interval_has_passed(seeded, monkeypatch):
    from hrm_tui.tui.screens import run_view
    from hrm_tui.tui.widgets.loss_chart import LossChart

    monkeypatch.setattr(run_view, "REDRAW_EVERY", 1.5)
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["staged"], "enter")
        await settle(pilot)
        screen = app.screen
        loss = screen.query_one("#loss-chart", LossChart)
        await pilot.pause()
        built, points = loss.builds, loss.point_count
        assert points == 6
        emit_epoch(path, ids["staged"], 3)
        await merge_one_poll(app, pilot)
        arrived = time.monotonic()
        emit_epoch(path, ids["staged"], 4)
        await merge_one_poll(app, pilot)
        await pilot.pause()
        assert screen.series.point_count == 8  # both epochs merged ...
        assert screen.redraw_pending and loss.builds == built and loss.point_count == points  # ... not drawn yet
        await settle(pilot)
        await pilot.pause()
        assert time.monotonic() - arrived < 1.5 + 1.0  # drawn once the interval passed, not at the next epoch
        assert loss.builds == built + 1 and loss.point_count == 8  # one redraw holds both epochs
        assert loss.series["train_loss"][1][-2:] == [1.25, 1.25]
        for _ in range(2):  # nothing new: no redraw
            await merge_one_poll(app, pilot)
        await pilot.pause()
        assert not screen.redraw_pending and loss.builds == built + 1


def test_thin_keeps_a_short_series_as_it_is():
    xs, ys = list(range(1, 41)), [1 / x for x in range(1, 41)]
    assert thin(xs, ys, 10) == (xs, ys)
    shuffled = [3, 1, 2] * 20
    assert thin(shuffled, [0.0] * 60, 2) == (shuffled, [0.0] * 60)  # x out of order: drawn as given


def test_thin_keeps_each_dot_columns_first_lowest_highest_and_last_point():
    rnd = random.Random(7)
    xs = list(range(1, 10_001))
    ys = [2 + 3 * math.exp(-x / 800) + rnd.gauss(0, 0.2) for x in xs]
    columns = 50
    txs, tys = thin(xs, ys, columns)
    assert len(txs) <= 4 * columns and txs == sorted(txs)
    assert (txs[0], tys[0]) == (xs[0], ys[0]) and (txs[-1], tys[-1]) == (xs[-1], ys[-1])
    slot = lambda x: math.floor(0.5 + (columns - 1) * (x - 1) / 9_999 + 1e-9)  # noqa: E731  (plotext's dot column)
    for s in range(columns):
        full = [y for x, y in zip(xs, ys, strict=True) if slot(x) == s]
        kept = [y for x, y in zip(txs, tys, strict=True) if slot(x) == s]
        assert min(kept) == min(full) and max(kept) == max(full) and kept[0] == full[0] and kept[-1] == full[-1]


async def test_a_long_run_is_drawn_from_its_thinned_curves_and_lights_the_same_dots():
    from textual.app import App

    from hrm_tui.tui.widgets import loss_chart
    from hrm_tui.tui.widgets.loss_chart import LossChart

    class OneChart(App):
        def compose(self):
            yield LossChart("loss")

    xs = list(range(1, 5001))
    series = {"train_loss": (xs, [2 + 3 * math.exp(-x / 400) for x in xs]),
              "val_loss": (xs, [2.1 + 3 * math.exp(-x / 500) + 0.05 * math.sin(x / 40) for x in xs])}
    async with OneChart().run_test(size=(60, 30)) as pilot:
        chart = pilot.app.query_one(LossChart)
        chart.set_series(series, markers=[2500])
        await pilot.pause()
        thinned = [line.text for line in chart._lines()]
        plotted = [len(x) for x in chart.plt.monitor.x]  # what plotext was given, per series
        assert chart.point_count == 5000 and len(plotted) == 2 and max(plotted) <= 4 * 2 * 60
        original = loss_chart.thin
        loss_chart.thin = lambda xs, ys, *limits: (xs, ys)
        try:
            chart.replot()
            full = [line.text for line in chart._lines()]
        finally:
            loss_chart.thin = original
        assert thinned == full, "\n".join(thinned + full)  # the same dots, from a tenth of the points
