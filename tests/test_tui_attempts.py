"""The dashboard side of resuming (issue #15): a resumed run's attempt and checkpoint are on screen."""

from __future__ import annotations

import pytest
from tui_helpers import dashboard, press_on, seeded_registry, settle, text_of

from core.registry import open_database
from core.registry.attempts import requeue, set_checkpoint


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as found:
        yield found


async def test_a_resumed_run_shows_its_attempts_and_checkpoint(seeded):
    path, ids = seeded
    db = open_database(path)
    set_checkpoint(db, ids["failed"], {"seq": 3, "stage": 0, "epoch": 1, "bytes": 2**20, "saved_at": 1_700_000_500.0,
                                       "seconds": 0.25, "path": "/tmp/ckpt-1.pt"})
    assert requeue(db, ids["failed"], by="resume") is not None  # attempt 2 continues from the checkpoint
    db.dispose()
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["failed"], "enter")
        await settle(pilot)
        header = text_of(app.screen.query_one("#run-header"))
        assert "attempt 2" in header and "checkpoint ep 1" in header
        await pilot.press("3")
        await settle(pilot)
        config = text_of(app.screen.query_one("#config-text"))
        assert "attempt 1: failed at epoch 1 (RuntimeError: smoke failure requested); resumed by hand" in config
        assert "checkpoint: epoch 1, 1.0 MiB" in config and "/tmp/ckpt-1.pt" in config
