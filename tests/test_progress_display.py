"""A pass before the first epoch (cascade's frozen base pass, ``info.progress``) in ``hrm ls``, ``hrm show``,
the JSON records of both read paths and the dashboard, until the epochs take over."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core import api
from core.registry import fastread, open_database, store
from core.registry.emitter import RegistryEmitter
from core.registry.status import RunStatus
from core.registry.view import RunView, pass_progress_of
from hrm_tui import render
from hrm_tui.cli import app as cli_app

PASS = {"phase": "frozen base pass", "tokens_done": 4_100, "tokens_total": 10_000, "tokens_per_s": 34.2,
        "eta_s": 725.0, "elapsed_s": 120.0}


def running(db, tags=()) -> int:
    """A run claimed and running, as the scheduler and worker leave it."""
    run_id = api.submit(db, "smoke", {"epochs": 3}, tags=list(tags)).id
    claimed = store.claim_next(db, host="lab", gpu="0")
    assert claimed is not None and claimed.id == run_id
    assert store.mark_running(db, run_id, pid=4242, host="lab", info={"params": 4000})
    return run_id


@pytest.fixture
def registry(db_path):
    """Run 1 in its base pass, run 2 past it (epoch 1 recorded), run 3 failed in it, run 4 queued."""
    db = open_database(db_path, create=True)
    ids = {}
    ids["passing"] = running(db)
    RegistryEmitter(db, ids["passing"]).info(progress=PASS)
    ids["epochs"] = running(db)
    emitter = RegistryEmitter(db, ids["epochs"])
    emitter.info(progress={**PASS, "tokens_done": 10_000, "eta_s": 0.0})
    emitter.epoch(1, {"val_ppl": 20.0}, total=3)
    ids["failed"] = running(db)
    RegistryEmitter(db, ids["failed"]).info(progress=PASS)
    store.finish_run(db, ids["failed"], RunStatus.FAILED, exit_code=1, error="killed")
    ids["queued"] = api.submit(db, "smoke", {"epochs": 3}).id
    yield db, ids
    db.dispose()


def test_the_rule_shows_an_unfinished_pass_until_the_first_epoch(registry):
    db, ids = registry
    views = {v.id: v for v in api.list_runs(db)}
    assert views[ids["passing"]].progress["pass"] == PASS
    assert views[ids["epochs"]].progress == {"stage": 0, "stage_name": None, "epoch": 1, "total_epochs": 3,
                                             "pass": None}
    assert views[ids["failed"]].progress["pass"] == PASS  # where it stopped
    assert views[ids["queued"]].progress["pass"] is None
    # a stage restarts epochs at 0: a pass already over stays over
    store.set_stage(db, ids["epochs"], 2, "stage 2", 3)
    assert api.list_runs(db, ids=[ids["epochs"]])[0].progress["pass"] is None


@pytest.mark.parametrize("info", [None, "text", [], {"tokens_done": 5}, {"tokens_done": "5", "tokens_total": 9},
                                  {"tokens_done": 5, "tokens_total": 0}, {"tokens_done": True, "tokens_total": 9},
                                  {"tokens_done": 9, "tokens_total": 9}])
def test_anything_but_an_unfinished_pass_record_is_no_pass(info):
    assert pass_progress_of(info) is None


def test_odd_fields_of_a_pass_become_none():
    got = pass_progress_of({"tokens_done": 1, "tokens_total": 4, "tokens_per_s": "fast", "eta_s": float("nan")})
    assert got == {"phase": "pass", "tokens_done": 1, "tokens_total": 4, "tokens_per_s": None, "eta_s": None,
                   "elapsed_s": None}
    assert render.pass_text(got) == "pass 25%"


def test_damaged_info_is_no_pass_and_no_error():
    row = {"id": 1, "experiment": "smoke", "variant": "corrected", "status": "running", "config_json": "{}",
           "priority": 0, "created_at": 0.0, "updated_at": 0.0, "stage": 0, "epoch": 0,
           "info_json": '{"progress": '}
    assert RunView.from_row(row).progress["pass"] is None


def test_both_read_paths_give_the_same_records(registry, db_path):
    db, ids = registry
    conn = fastread.connect(db_path)
    assert conn is not None
    try:
        fast = fastread.list_records(conn)
        details = fastread.run_details(conn, ids["passing"])
    finally:
        conn.close()
    full = api.list_records(db)
    for record in fast + full:  # a live run's elapsed time is read at two moments
        record.pop("elapsed_s")
    assert fast == full
    assert details["progress"]["pass"] == PASS
    assert [r["progress"]["pass"] is not None for r in full] == [False, True, False, True]  # newest first


@pytest.mark.parametrize(("rate", "text"), [(3.44, "3.4"), (34.2, "34"), (1234.0, "1.2k"), (61_000.0, "61k"),
                                            (612_345.0, "612k"), (2_500_000.0, "2.5M")])
def test_rates_stay_short(rate, text):
    assert render.rate(rate) == text


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0s"), (45, "45s"), (725, "12m"), (3599, "1h00m"),
                                               (11_100, "3h05m")])
def test_eta_to_the_minute(seconds, text):
    assert render.short_duration(seconds) == text


def hrm(*args: str):
    return CliRunner().invoke(cli_app, list(args))


def test_hrm_ls_shows_the_pass_then_the_epochs(registry, db_path):
    _db, ids = registry
    result = hrm("--db", str(db_path), "ls", "--wide")
    assert result.exit_code == 0, result.output
    lines = {int(line.split()[0]): line for line in result.output.splitlines() if line.strip()[:1].isdigit()}
    assert "base 41% 34 tok/s ETA 12m" in lines[ids["passing"]]
    assert "ep 1/3" in lines[ids["epochs"]] and "base" not in lines[ids["epochs"]]
    assert "base 41%" in lines[ids["failed"]] and "tok/s" not in lines[ids["failed"]]  # over: no rate, no ETA
    # the full read path (a filter) prints the same cell
    filtered = hrm("--db", str(db_path), "ls", "--wide", "--where", f"id == {ids['passing']}")
    assert filtered.exit_code == 0, filtered.output
    assert "base 41% 34 tok/s ETA 12m" in filtered.output


def test_hrm_show_says_where_the_pass_is(registry, db_path):
    db, ids = registry
    api.set_note(db, ids["passing"], "slow [cpu] box")
    result = hrm("--db", str(db_path), "show", str(ids["passing"]), "--wide")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.replace("│", " ").split())
    assert "progress base 41% 34 tok/s ETA 12m" in out
    assert "frozen base pass 4,100/10,000 tokens (41%), 34 tok/s, ETA 12m05s, elapsed 2m00s" in out
    assert "note slow [cpu] box" in out
    assert "'tokens_done'" not in out  # not also dumped raw among the info fields
    over = " ".join(hrm("--db", str(db_path), "show", str(ids["epochs"]), "--wide").output.replace("│", " ").split())
    assert "progress ep 1/3" in over
    assert "frozen base pass 10,000/10,000 tokens (100%), 34 tok/s, elapsed 2m00s" in over  # no ETA once over
    shown = hrm("--db", str(db_path), "show", str(ids["passing"]), "--json")
    assert shown.exit_code == 0 and '"tokens_done": 4100' in shown.output and '"note": "slow [cpu] box"' in shown.output


async def test_dashboard_progress_column_and_run_view(registry, db_path):
    from tui_helpers import make_app, settle, text_of

    from hrm_tui.tui.widgets.run_table import RunTable

    db, ids = registry
    app = make_app(db_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(RunTable)
        strips = {row.id: "".join(s.text for s in table._row_strip(row)) for row in table.rows}
        assert "base 41% 34 tok/s ETA 12m" in strips[ids["passing"]]
        assert "ep 1/3" in strips[ids["epochs"]]
        assert "base 41%" in strips[ids["failed"]] and "tok/s" not in strips[ids["failed"]]
        table.move_to(ids["passing"])
        await pilot.press("enter")
        await settle(pilot)
        assert "base 41% 34 tok/s ETA 12m" in text_of(app.screen.query_one("#run-header"))
        # the next report moves the header on; the first epoch replaces the pass
        RegistryEmitter(db, ids["passing"]).info(progress={**PASS, "tokens_done": 8_000, "eta_s": 60.0})
        app.poll_once()
        await settle(pilot)
        assert "base 80% 34 tok/s ETA 1m" in text_of(app.screen.query_one("#run-header"))
        RegistryEmitter(db, ids["passing"]).epoch(1, {"val_ppl": 30.0}, total=3)
        app.poll_once()
        await settle(pilot)
        header = text_of(app.screen.query_one("#run-header"))
        assert "ep 1/3" in header and "base" not in header


def test_follow_view_shows_the_pass_with_a_bar_of_tokens(registry):
    import io

    from rich.console import Console

    db, ids = registry
    record = api.list_records(db, ids=[ids["passing"]])[0]
    console = Console(width=120, file=io.StringIO(), color_system=None)
    console.print(render.follow_view(record, [], {}, []))
    out = console.file.getvalue()
    assert "running  base 41% 34 tok/s ETA 12m" in out
    assert "━" in out and "frozen base pass 4,100/10,000 tokens (41%), 34 tok/s, ETA 12m05s" in out
