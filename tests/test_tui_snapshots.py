"""Snapshots of the dashboard's screens at fixed sizes, on a seeded registry with pinned times.

Update only after reading the report: ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import pytest
from tui_helpers import make_app, seeded_registry, settle


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as seeded:
        yield seeded


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch):
    """A machine with nvidia-smi would add GPU rows to the queue screen."""
    monkeypatch.setattr("hrm_tui.tui.poller.gpu_stats", lambda: None)


async def loaded(pilot) -> None:
    await settle(pilot)


def open_run(run_id: int):
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.screen.query_one("RunTable").move_to(run_id)
        await pilot.press("enter")
        await settle(pilot)

    return run_before


def test_dashboard(seeded, snap_compare):
    path, _ = seeded
    assert snap_compare(make_app(path), terminal_size=(120, 40), run_before=loaded)


def test_dashboard_narrow(seeded, snap_compare):
    """80×24: the gpu and variant columns give way to the config column."""
    path, _ = seeded
    assert snap_compare(make_app(path), terminal_size=(80, 24), run_before=loaded)


def test_run_view_staged(seeded, snap_compare):
    path, ids = seeded
    assert snap_compare(make_app(path), terminal_size=(120, 40), run_before=open_run(ids["staged"]))


def test_compare(seeded, snap_compare):
    path, ids = seeded

    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.screen.query_one("RunTable").move_to(ids["done_b"])
        await pilot.press("space", "space", "c")
        await settle(pilot)

    assert snap_compare(make_app(path), terminal_size=(120, 40), run_before=run_before)


def test_queue(seeded, snap_compare):
    path, _ = seeded

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("g")
        await settle(pilot)

    assert snap_compare(make_app(path), terminal_size=(120, 40), run_before=run_before)


def test_new_run_form(seeded, snap_compare):
    path, _ = seeded

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        pilot.app.screen.query_one("#field-epochs").value = "0"
        await pilot.press("ctrl+s")
        await pilot.pause()

    assert snap_compare(make_app(path), terminal_size=(120, 40), run_before=run_before)
