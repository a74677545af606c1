"""A dashboard poll with no new commit runs no query (issue #13: an idle dashboard costs next to nothing),
yet every commit is seen at the next poll, a newly watched run is read at once, and a full poll still runs
every ``FULL_POLL_EVERY`` seconds for what changes with time alone (a scheduler's heartbeat going stale)."""

from __future__ import annotations

import pytest
from tui_helpers import dashboard, press_on, seeded_registry, settle

from core import api
from core.registry import open_database
from hrm_tui.tui import app as app_module


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as found:
        yield found


@pytest.fixture
def full_polls(monkeypatch):
    """How many full polls (queries) the app ran; quiet polls are not counted."""
    calls = []
    real = app_module.poll

    def counting(*args, **kwargs):
        calls.append(kwargs.get("first_page"))
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "poll", counting)
    return calls


async def poll(app, pilot) -> None:
    app.poll_once()
    await settle(pilot)


async def test_no_commit_no_query_and_a_commit_is_seen_at_the_next_poll(seeded, full_polls):
    path, ids = seeded
    async with dashboard(path, poll_interval=None) as (app, pilot):
        await poll(app, pilot)  # the change watch's first look counts as a change
        before = len(full_polls)
        for _ in range(3):
            await poll(app, pilot)
        assert len(full_polls) == before, "polls with no new commit ran queries"
        writer = open_database(path)
        new = api.submit(writer, "smoke", {"epochs": 2})
        writer.dispose()
        await poll(app, pilot)
        assert len(full_polls) == before + 1
        assert new.id in app.runs.rows, "the committed run reached the table at the next poll"


async def test_a_newly_watched_run_is_read_at_once(seeded, full_polls):
    path, ids = seeded
    async with dashboard(path, poll_interval=None) as (app, pilot):
        await poll(app, pilot)
        before = len(full_polls)
        await press_on(pilot, ids["staged"], "enter")  # the run view watches the run: its rows must be read
        await settle(pilot)
        await poll(app, pilot)
        assert len(full_polls) > before
        assert app.series.get(ids["staged"]) is not None and app.series[ids["staged"]].epochs


async def test_a_full_poll_still_runs_when_time_alone_changes_things(seeded, full_polls, monkeypatch):
    monkeypatch.setattr(app_module, "FULL_POLL_EVERY", 0.0)
    path, _ids = seeded
    async with dashboard(path, poll_interval=None) as (app, pilot):
        await poll(app, pilot)
        before = len(full_polls)
        await poll(app, pilot)
        assert len(full_polls) == before + 1
