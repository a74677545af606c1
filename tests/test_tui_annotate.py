"""Pilot tests: tags and notes edited in the dashboard after submit, and the filter box's expressions."""

from __future__ import annotations

import pytest
from tui_helpers import dashboard, press_on, run_table, seeded_registry, settle, text_of

from core import api
from core.registry import open_database, store


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as found:
        yield found


def registry_state(path, run_id: int) -> tuple[list[str], str | None]:
    db = open_database(path)
    try:
        return store.tags_of(db, [run_id]).get(run_id, []), api.require_run(db, run_id).note
    finally:
        db.dispose()


async def type_text(pilot, text: str) -> None:
    await pilot.press(*("space" if ch == " " else ch for ch in text))


async def test_tags_edited_from_the_runs_table(seeded):
    from hrm_tui.tui.screens.annotate import PromptScreen

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["done_a"], "t")
        await settle(pilot)
        prompt = app.screen
        assert isinstance(prompt, PromptScreen) and "now: sweep" in text_of(prompt.query_one(".prompt-hint"))
        await type_text(pilot, "+paper -sweep +best")
        await pilot.press("enter")
        await settle(pilot)
        assert registry_state(path, ids["done_a"])[0] == ["best", "paper"]
        app.poll_once()
        await settle(pilot)
        assert app.runs.get(ids["done_a"]).tags == ("best", "paper")  # the table's row, after the next poll


async def test_a_wrong_tag_change_is_one_line_and_saves_nothing(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["done_b"], "t")
        await settle(pilot)
        prompt = app.screen
        await type_text(pilot, "paper")
        await pilot.press("enter")
        await settle(pilot)
        error = prompt.query_one("#prompt-error")
        assert app.screen is prompt and error.display  # enter did nothing
        assert "'paper': write +TAG to add a tag or -TAG to remove one" in text_of(error)
        await pilot.press("ctrl+u")  # Input: delete to the start
        await type_text(pilot, "+has space+")
        await settle(pilot)
        assert "write +TAG" in text_of(error)  # "space+" lacks its sign
        await pilot.press("ctrl+u")
        await type_text(pilot, "+bad,tag")
        await settle(pilot)
        assert "invalid tag 'bad,tag'" in text_of(error)
        await pilot.press("ctrl+u")
        await type_text(pilot, "+fine")
        await settle(pilot)
        assert not error.display
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is not prompt
        assert registry_state(path, ids["done_b"]) == (["sweep"], None)


async def test_note_written_shown_in_the_run_view_and_removed(seeded):
    from hrm_tui.tui.screens.run_view import RunScreen

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await press_on(pilot, ids["staged"], "enter")
        await settle(pilot)
        assert isinstance(app.screen, RunScreen)
        assert "note" not in text_of(app.screen.query_one("#run-header"))  # no tags, no note: no such line
        await pilot.press("N")
        await settle(pilot)
        await type_text(pilot, "lr too high [check]")
        await pilot.press("enter")
        await settle(pilot)
        assert registry_state(path, ids["staged"])[1] == "lr too high [check]"
        await pilot.press("t")
        await settle(pilot)
        await type_text(pilot, "+diverged")
        await pilot.press("enter")
        await settle(pilot)
        app.poll_once()
        await settle(pilot)
        header = text_of(app.screen.query_one("#run-header"))
        assert "tags diverged  note lr too high [check]" in header
        await pilot.press("N")
        await settle(pilot)
        assert app.screen.query_one("#prompt-input").value == "lr too high [check]"  # the note to edit
        await pilot.press("ctrl+u", "enter")
        await settle(pilot)
        assert registry_state(path, ids["staged"]) == (["diverged"], None)
        app.poll_once()
        await settle(pilot)
        header = text_of(app.screen.query_one("#run-header"))
        assert "tags diverged" in header and "note" not in header


async def test_filter_box_takes_words_and_expressions(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        screen = app.screen
        await pilot.press("slash")
        await type_text(pilot, "tag == 'sweep' and headline < 13")
        await pilot.pause(0.3)
        await settle(pilot)
        assert [r.id for r in run_table(app).rows] == [ids["done_a"]]
        assert screen.where_text == "tag == 'sweep' and headline < 13"
        assert not screen.query_one("#filter-error").display
        await pilot.press("enter")
        await settle(pilot)
        assert "where tag == 'sweep' and headline < 13" in text_of(screen.query_one("#status-line"))
        # words, including key=value words, keep the substring search
        await pilot.press("slash", "ctrl+u")
        await type_text(pilot, "smoke seed=3")
        await pilot.pause(0.3)
        await settle(pilot)
        assert [r.id for r in run_table(app).rows] == [ids["staged"]] and screen.where_text is None
        # a malformed expression: its error in one line under the box, no crash, searched as words
        await pilot.press("ctrl+u")
        await type_text(pilot, "val_ppl.min <")
        await pilot.pause(0.3)
        await settle(pilot)
        error = screen.query_one("#filter-error")
        assert error.display and "--where: expected a value" in text_of(error) and "column" in text_of(error)
        assert run_table(app).row_count == 0 and screen.where_text is None
        await type_text(pilot, " 20")
        await pilot.pause(0.3)
        await settle(pilot)
        assert not error.display
        assert {r.id for r in run_table(app).rows} == {ids["done_a"], ids["done_b"]}  # best val_ppl 12.9, 15.8
        await pilot.press("escape")
        await settle(pilot)
        assert run_table(app).row_count == 5 and screen.where_text is None and not screen.query_one("#filter-box").display


async def test_an_expression_follows_the_registry(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await pilot.press("slash")
        await type_text(pilot, "tag == 'later'")
        await pilot.press("enter")
        await settle(pilot)
        assert run_table(app).row_count == 0
        db = open_database(path)
        api.edit_tags(db, ids["queued"], add=["later"])  # from another process: the CLI's hrm tag
        db.dispose()
        app.poll_once()
        await settle(pilot)
        await settle(pilot)
        assert [r.id for r in run_table(app).rows] == [ids["queued"]]


async def test_keys_listed_in_help(seeded):
    path, _ids = seeded
    async with dashboard(path) as (app, pilot):
        await pilot.press("question_mark")
        await settle(pilot)
        import io

        from rich.console import Console

        console = Console(width=100, file=io.StringIO(), color_system=None)
        console.print(app.screen.query_one("BindingsTable").render_bindings_table())
        shown = console.file.getvalue().splitlines()
        assert any(line.split()[:2] == ["t", "tags"] for line in shown)
        assert any(line.split()[:2] == ["N", "note"] for line in shown)
