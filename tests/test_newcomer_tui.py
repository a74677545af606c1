"""The dashboard as a newcomer saw it in a 100-column terminal: the footer's keys ran under the
``^p palette`` hint (``d d▏^p palettet``). Every width shows only keys that fit."""

from __future__ import annotations

import pytest

from tests.tui_helpers import dashboard, seeded_registry, settle


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    with seeded_registry(tmp_path, monkeypatch) as (path, ids):
        yield path, ids


async def footer_overlap(app) -> list[str]:
    """Keys the footer shows (wholly or partly) right of where the palette hint starts, or past the screen."""
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    footer = app.screen.query_one(Footer)
    keys = list(footer.query(FooterKey))
    palette = next(k for k in keys if k.has_class("-command-palette"))
    limit = min(palette.region.x, app.size.width)
    return [f"{k.key} {k.description}" for k in keys
            if k is not palette and k.display and k.region.width and k.region.right > limit]


@pytest.mark.parametrize("width", [80, 96, 100, 104, 108, 111, 112, 120, 140])
async def test_dashboard_footer_keys_never_run_under_the_palette_hint(seeded, width):
    path, _ = seeded
    async with dashboard(path, size=(width, 30)) as (app, pilot):
        assert await footer_overlap(app) == []
        shown = {k.description for k in app.screen.query("FooterKey") if k.display and k.region.width}
        assert {"open", "mark", "compare", "quit"} <= shown
        if width >= 120:
            assert {"logs", "cancel", "retry", "delete"} <= shown


@pytest.mark.parametrize("width", [80, 90, 100, 120])
async def test_run_view_footer_keys_never_run_under_the_palette_hint(seeded, width):
    path, ids = seeded
    async with dashboard(path, size=(width, 30)) as (app, pilot):
        from tests.tui_helpers import press_on

        await press_on(pilot, ids["staged"], "enter")
        await settle(pilot)
        assert app.screen.id != "dashboard"
        assert await footer_overlap(app) == []


async def test_filter_hash_id_is_that_run_and_config_words_read_as_the_table_shows_them(tmp_path):
    """`#2` listed runs 2, 20-29 and 12 (a substring); `noisy=yes`, as the config column prints it, found nothing."""
    from core.registry import open_database, store
    from tests.tui_helpers import run_table

    path = tmp_path / "runs.db"
    db = open_database(path, create=True)
    for i in range(1, 24):
        store.create_run(db, "smoke", {"epochs": 3 + i, "noisy": i == 12}, headline_key="best_val_ppl")
    db.dispose()
    async with dashboard(path, size=(120, 40)) as (app, pilot):
        for words, expected in (("#2", {2}), ("#12", {12}), ("noisy=yes", {12}), ("noisy=true", {12}),
                                ("epochs=2", {17, 18, 19, 20, 21, 22, 23}), ("#2 noisy=yes", set())):
            await pilot.press("slash", *words, "enter")
            await pilot.pause(0.3)
            assert {r.id for r in run_table(app).rows} == expected, words
            await pilot.press("escape")
            assert run_table(app).row_count == 23


async def test_log_screen_title_keeps_what_it_shows_readable_at_80_columns(seeded):
    from tests.tui_helpers import press_on, text_of

    path, ids = seeded
    async with dashboard(path, size=(80, 24)) as (app, pilot):
        await press_on(pilot, ids["done_a"], "l")
        await settle(pilot)
        title = text_of(app.screen.query_one("#log-title"))
        assert title.strip().startswith(f"run {ids['done_a']} logs (last 64 kB, then live) · ")


async def test_the_keys_panel_hides_the_footer_that_no_longer_fits_beside_it(seeded):
    """At 80×24, `?` left a 48-column footer whose keys ran under the palette hint (`/ filter▏^p paletteu▏`)."""
    from textual.widgets import Footer

    path, _ = seeded
    async with dashboard(path, size=(80, 24)) as (app, pilot):
        await pilot.press("question_mark")
        await settle(pilot)
        assert app.screen.query("HelpPanel") and not app.screen.query_one(Footer).display
        await pilot.press("question_mark")
        await settle(pilot)
        assert not app.screen.query("HelpPanel") and app.screen.query_one(Footer).display
        assert await footer_overlap(app) == []


def test_hrm_tui_bad_arguments_are_one_error_line_and_version_matches_hrm(tmp_path):
    """argparse printed its usage and `hrm-tui: error: ...`; every hrm command says one `error: ...` line."""
    import subprocess
    import sys

    def hrm_tui(*args):
        return subprocess.run([sys.executable, "-c", "from hrm_tui.tui.app import main; main()", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)

    for args in (["--dbb", "x"], ["--poll", "abc"]):
        bad = hrm_tui(*args)
        assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.splitlines()) == 1, bad.stderr
        assert bad.stderr.startswith("error: ")
    version = hrm_tui("--version")
    hrm = subprocess.run([sys.executable, "-m", "hrm_tui", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout == hrm.stdout and version.stdout.startswith("hrm-tui ")
    assert not (tmp_path / "runs.db").exists()
