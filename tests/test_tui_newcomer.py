"""What a newcomer trips over in the dashboard (issue #13), each checked the way a user meets it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tui_helpers import dashboard, press_on, run_table, seeded_registry, settle


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as found:
        yield found


def test_hrm_tui_refuses_a_missing_registry_instead_of_creating_one(tmp_path):
    """Like ``hrm ls``: one ``error:`` line, exit 1, and no ``runs.db`` left behind."""
    result = subprocess.run([sys.executable, "-m", "hrm_tui.tui.app"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(_root())})
    assert result.returncode == 1
    assert result.stderr.startswith("error: no registry at") and "hrm run" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs.db").exists()


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


async def refusal_after(pilot, run_id: int, key: str) -> list[str]:
    """Press ``key`` on ``run_id``'s row where the action cannot apply: no question is asked, and the
    notifications shown (the reason) are returned."""
    from hrm_tui.tui.screens.confirm import ConfirmScreen

    await press_on(pilot, run_id, key)
    await pilot.pause()
    assert not isinstance(pilot.app.screen, ConfirmScreen)
    return [n.message for n in pilot.app._notifications]


async def test_cancel_of_a_finished_run_says_why_instead_of_asking(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        assert await refusal_after(pilot, ids["done_a"], "x") == [f"run {ids['done_a']} is already completed"]


async def test_delete_of_a_running_run_says_why_instead_of_asking(seeded):
    from hrm_tui.tui.screens.confirm import ConfirmScreen

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        assert await refusal_after(pilot, ids["staged"], "d") == [
            f"run {ids['staged']} is running: cancel it before deleting"]
        await press_on(pilot, ids["failed"], "d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)  # a finished run: the question is real


async def test_compare_at_80x24_shows_the_comparison_columns(seeded):
    from textual.widgets import DataTable

    path, ids = seeded
    async with dashboard(path, size=(80, 24)) as (app, pilot):
        for run_id in (ids["done_a"], ids["done_b"]):
            await press_on(pilot, run_id, "space")
        await pilot.press("c")
        await settle(pilot)
        await pilot.pause(0.2)
        view = app.screen.query_one("#compare-table", DataTable)
        right = 0
        visible = []
        for column in view.ordered_columns:
            right += column.get_render_width(view)
            if right <= view.size.width:
                visible.append(column.label.plain)
        assert {"best_val_ppl (best)", f"vs run {ids['done_a']} %"} <= set(visible), visible


async def test_a_staged_run_shows_its_current_stage_best_while_it_trains(seeded):
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        row = app.runs.get(ids["staged"])
        assert row.stage == 2 and row.headline is not None and not row.headline_is_final
        line = next(i for i, r in enumerate(run_table(app).rows) if r.id == ids["staged"])
        text = "".join(segment.text for segment in run_table(app).render_line(line + 1))
        assert "s2 ep 2/4" in text and f"{row.headline:.4f}".rstrip("0") in text and " — " not in text


async def test_enter_in_a_form_field_moves_on_and_only_ctrl_s_queues(seeded):
    from textual.widgets import Input

    from hrm_tui.tui.screens.new_run import NewRunScreen

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        before = len(app.runs.rows)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, NewRunScreen)
        epochs = form.query_one("#field-epochs", Input)
        epochs.focus()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is form and app.focused is not epochs  # enter moved on, nothing queued
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is not form and len(app.runs.rows) == before + 1


async def test_the_focused_form_field_is_highlighted(seeded):
    from textual.widgets import Input

    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        epochs, layers = form.query_one("#field-epochs", Input), form.query_one("#field-layers", Input)
        epochs.focus()
        await pilot.pause()
        focused_bg, other_bg = epochs.styles.background, layers.styles.background
        assert focused_bg != other_bg
        name = epochs.parent.query_one(".field-name")
        other_name = layers.parent.query_one(".field-name")
        assert (name.styles.color, name.styles.text_style) != (other_name.styles.color, other_name.styles.text_style), (name.styles.text_style, name.parent.parent.pseudo_classes)


async def test_form_fields_say_what_to_type_in_words(seeded):
    """Placeholders and hints read 'numbers, comma separated', not Python's list[float]."""
    from textual.widgets import Input, Select

    from hrm_tui.tui.screens.new_run import input_hint

    assert input_hint("list[float]") == "numbers, comma separated" and input_hint("int") == "a whole number"
    path, ids = seeded
    async with dashboard(path) as (app, pilot):
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        form.query_one("#experiment", Select).value = "early-exit"
        await settle(pilot)
        placeholders = {editor.placeholder for editor in form.query(Input) if editor.id and editor.id.startswith("field-")}
        assert placeholders and not any("[" in p for p in placeholders), placeholders
