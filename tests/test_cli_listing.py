"""``hrm ls`` pages: the newest 50 by default, --last / --offset / --all, and a line saying what is hidden."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from core.registry import open_database, store
from hrm_tui.cli import app

runner = CliRunner()


def seeded(db_path, count: int):
    db = open_database(db_path, create=True)
    for i in range(count):
        store.create_run(db, "smoke", {"seed": i}, tags=["even"] if i % 2 == 0 else [])
    db.dispose()


def ls(db_path, *args):
    return runner.invoke(app, ["--db", str(db_path), "ls", *args], env={"COLUMNS": "120"})


def ids(result):
    return [r["id"] for r in json.loads(result.stdout)["runs"]]


def test_newest_50_by_default_and_a_line_about_the_rest(db_path):
    seeded(db_path, 60)
    result = ls(db_path, "--json")
    assert result.exit_code == 0
    assert ids(result) == list(range(60, 10, -1))
    assert result.stderr.strip() == "50 of 60 runs: 10 older not shown (--all, --last N or --offset 50)"
    table = ls(db_path)
    assert "10 older not shown" in table.stderr and table.stdout.count("smoke") == 50


def test_all_last_and_offset(db_path):
    seeded(db_path, 60)
    assert ids(ls(db_path, "--json", "--all")) == list(range(60, 0, -1))
    assert ids(ls(db_path, "--json", "--last", "3")) == [60, 59, 58]
    page = ls(db_path, "--json", "--last", "5", "--offset", "50")
    assert ids(page) == [10, 9, 8, 7, 6] and page.stderr == "", "a script that asked for a page gets no note"
    table = ls(db_path, "--offset", "58")
    assert table.stdout.count("smoke") == 2 and "58 newer skipped (--offset)" in table.stderr
    empty = ls(db_path, "--offset", "60")
    assert empty.exit_code == 0 and "--offset 60 skips them all" in empty.stderr
    contradiction = ls(db_path, "--all", "--last", "3")
    assert contradiction.exit_code == 2 and contradiction.output.startswith("error: --all and --last")


def test_filters_count_what_they_match(db_path):
    seeded(db_path, 120)
    result = ls(db_path, "--json", "--tag", "even")
    assert len(ids(result)) == 50 and all(i % 2 == 1 for i in ids(result))
    assert "50 of 60 runs: 10 older not shown" in result.stderr
