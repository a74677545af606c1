"""The ``--where`` filter language: parser errors with positions, SQL semantics on a real registry,
injection attempts that must stay plain values, and the store's tag and note edits."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from core.registry import open_database, store
from tests.pg_fixture import pg_server, pg_url  # noqa: F401
from core.registry.filter import FilterError, compile_filter, parse


@pytest.fixture
def runs(db):
    """Five runs with different configs, statuses, tags and metrics; returns their ids in order."""
    return make_runs(db)


def make_runs(db) -> list[int]:
    ids = []
    specs = [
        ("lpt", {"lr": 1e-3, "layers": 4, "method": "lpt-sum", "noisy": False}, ["sweep-1"], "completed", [14.0, 11.5]),
        ("lpt", {"lr": 1e-4, "layers": 2, "method": "standard", "noisy": True}, ["sweep-1", "keep"], "completed", [20.0, 13.0]),
        ("smoke", {"lr": 1e-3, "layers": 6, "method": "x", "opt": {"beta": 0.9}}, [], "failed", [9.0]),
        ("smoke", {"lr": 5e-3, "layers": 4}, ["it's"], "queued", []),
        ("cascade", {"lr": 1e-3, "hard_ratio": 0.3}, ["sweep-2"], "running", [30.0, 25.0, 26.0]),
    ]
    for experiment, config, tags, status, ppls in specs:
        run = store.create_run(db, experiment, config, tags=tags, headline_key="best_val_ppl")
        for epoch, ppl in enumerate(ppls, 1):
            store.append_metrics(db, run.id, "epoch", {"val_ppl": ppl}, epoch=epoch, total=len(ppls))
        if status == "completed":
            store.append_metrics(db, run.id, "summary", {"best_val_ppl": min(ppls)})
        if status == "running":
            store.append_metrics(db, run.id, "epoch", {"val_ppl": 7.0}, stage=2, epoch=1)
        if status != "queued":
            with db.write() as conn:
                conn.execute(store.RUN.update().where(store.RUN.c.id == run.id).values(status=status))
        ids.append(run.id)
    return ids


def select_ids(db, where: str) -> list[int]:
    return sorted(r.id for r in store.list_runs(db, where=where))


SELECTIONS = [
    ("best_val_ppl < 12", [0]),
    ("best_val_ppl < 12 and config.lr == 1e-3 and tag == 'sweep-1'", [0]),
    ("config.lr == 1e-3", [0, 2, 4]),
    ("config.lr == 0.001 and not experiment == 'cascade'", [0, 2]),
    ("config.layers >= 4", [0, 2, 3]),
    ("config.method == 'standard'", [1]),
    ("config.noisy == true", [1]),
    ("config.noisy == false", [0]),
    ("config.opt.beta > 0.5", [2]),
    ("config.hard_ratio == null", [0, 1, 2, 3]),
    ("config.hard_ratio != null", [4]),
    ("tag == 'sweep-1'", [0, 1]),
    ("tag != 'sweep-1'", [2, 3, 4]),
    ("tag in ('keep', 'sweep-2')", [1, 4]),
    ("tag not in ('sweep-1', 'sweep-2')", [2, 3]),
    ("tag ~ 'sweep'", [0, 1, 4]),
    ("tag == \"it's\"", [3]),
    ("status in ('failed', 'running')", [2, 4]),
    ("status == 'completed' or experiment == 'smoke'", [0, 1, 2, 3]),
    ("(status == 'completed' or experiment == 'smoke') and config.layers == 4", [0, 3]),
    ("NOT (experiment = 'lpt') AND val_ppl.min < 10", [2]),
    ("val_ppl < 13", [0, 2]),  # the last value, not the best
    ("val_ppl.max > 25", [4]),
    ("s2/val_ppl < 8", [4]),
    ("s2/val_ppl.min > 100", []),
    ("headline <= 11.5", [0]),
    ("headline == null", [2, 3, 4]),
    ("id > 2 and id <= 4", [2, 3]),
    ("experiment ~ 'asc'", [4]),
    ("imported == false", [0, 1, 2, 3, 4]),
    ("note == null", [0, 1, 2, 3, 4]),
]


@pytest.mark.parametrize("where, expected", SELECTIONS)
def test_filter_selects_the_runs_it_says(db, runs, where, expected):
    assert select_ids(db, where) == [runs[i] for i in expected]


@pytest.mark.parametrize("where, column, fragment", [
    ("", 1, "empty filter"),
    ("status ==", 10, "expected a value"),
    ("best_val_ppl < 12 and", 22, "expected a field name"),
    ("status == 'done", 11, "unterminated string"),
    ("status == 'done'", 1, "unknown status 'done'"),
    ("config.lr == 1e-3 & tag == 'x'", 19, "unexpected character '&'"),
    ("(status == 'failed'", 20, "expected ')'"),
    ("status == failed", 11, "quote text"),
    ("val_ppl.median < 3", 1, "takes .last, .min or .max"),
    ("tag < 'x'", 1, "tag supports"),
    ("val_ppl == 'x'", 1, "compare it with a number"),
    ("experiment == 3", 1, "experiment is text"),
    ("id == 'x'", 1, "id is a number"),
    ("status in 'x'", 11, "expected '('"),
    ("val_ppl < null", 1, "null can only be compared"),
    ("config. == 1", 7, "unexpected character '.'"),
    ("status == 'failed' status == 'lost'", 20, "expected 'and', 'or'"),
])
def test_malformed_filters_say_what_and_where(where, column, fragment):
    with pytest.raises(FilterError) as info:
        compile_filter(where)
    assert fragment in str(info.value)
    assert str(info.value).endswith(f"at column {column}"), str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("attack", [
    "x'; DROP TABLE run; --",
    "' OR '1'='1",
    "sweep-1' OR 1=1 --",
    "%",
    "_",
    "\\",
])
def test_values_are_bound_parameters_never_sql(db, runs, attack):
    quoted = "'" + attack.replace("\\", "\\\\").replace("'", "\\'") + "'"
    for where in (f"tag == {quoted}", f"note == {quoted}", f"config.method == {quoted}", f"tag ~ {quoted}",
                  f"experiment in ({quoted}, 'zzz')"):
        assert select_ids(db, where) == [], where
    assert len(store.list_runs(db)) == 5  # the table is still there
    compiled = compile_filter(f"tag == {quoted}").compile(dialect=sqlite.dialect())
    assert attack in compiled.params.values()
    if len(attack) > 3:
        assert attack not in str(compiled)


def test_contains_treats_like_wildcards_literally(db, runs):
    store.set_note(db, runs[0], "lr 100% too high")
    store.set_note(db, runs[1], "lr 1000 too high")
    assert select_ids(db, "note ~ '100%'") == [runs[0]]
    assert select_ids(db, "note ~ 'lr_1'") == []


def test_postgresql_compiles_config_through_jsonb():
    sql = str(compile_filter("config.lr == 1e-3 and tag == 'a' and val_ppl < 3", "postgresql").compile(dialect=postgresql.dialect()))
    assert "JSONB" in sql and "latestmetric" in sql and "runtag" in sql


def test_parse_keeps_the_structure():
    tree = parse("a < 1 or b > 2 and not c == 3")
    assert tree.op == "or" and tree.args[1].op == "and" and tree.args[1].args[1].op == "not"


def test_filter_combines_with_other_list_options(db, runs):
    assert [r.id for r in store.list_runs(db, where="config.lr == 1e-3", experiment="smoke")] == [runs[2]]
    assert [r.id for r in store.list_runs(db, where="config.lr == 1e-3", last=1)] == [runs[4]]


# --- tags and notes after submit ------------------------------------------------------------------

def test_tags_are_added_and_removed_after_submit(db, runs):
    assert store.set_tags(db, runs[0], add=["best", "sweep-1", "best"], remove=["nope"]) == ["best", "sweep-1"]
    assert store.set_tags(db, runs[0], remove=["sweep-1"]) == ["best"]
    assert select_ids(db, "tag == 'best'") == [runs[0]]
    assert select_ids(db, "tag == 'sweep-1'") == [runs[1]]
    assert store.set_tags(db, 999, add=["x"]) is None


def test_notes_are_set_replaced_and_cleared(db, runs):
    assert store.set_note(db, runs[2], "diverged at epoch 3: lr too high")
    assert store.get_run(db, runs[2]).note == "diverged at epoch 3: lr too high"
    assert select_ids(db, "note ~ 'diverged'") == [runs[2]]
    assert select_ids(db, "note != 'x'") == runs  # a run without a note is one whose note is not 'x'
    store.set_note(db, runs[2], None)
    assert store.get_run(db, runs[2]).note is None
    assert not store.set_note(db, 999, "x")


# --- the CLI: hrm ls / compare --where, hrm tag, hrm note -----------------------------------------

def _hrm(db_path, *args):
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    return CliRunner().invoke(app, ["--db", str(db_path), *args])


def test_cli_ls_where(db, db_path, runs):
    import json

    result = _hrm(db_path, "ls", "--where", "config.lr == 1e-3 and status != 'running'", "--json")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)["runs"]] == [runs[2], runs[0]]
    result = _hrm(db_path, "ls", "-w", "tag == 'sweep-1'", "--status", "completed", "--experiment", "lpt")
    assert result.exit_code == 0 and "lpt" in result.stdout
    bad = _hrm(db_path, "ls", "--where", "best_val_ppl < 12 and")
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "error: --where: expected a field name but found the end of the filter at column 22"]


def test_cli_compare_where_and_sort(db, db_path, runs):
    import json

    result = _hrm(db_path, "compare", "--where", "experiment == 'lpt'", "--sort", "val_ppl:min", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"]["runs"] == [runs[0], runs[1]]  # 11.5 before 13.0
    result = _hrm(db_path, "compare", "--where", "experiment == 'lpt'", "--sort", "val_ppl:max", "--format", "json")
    assert json.loads(result.stdout)["source"]["runs"] == [runs[1], runs[0]]  # 20 before 14
    for args in (["--where", "status =="], ["--where", "experiment == 'lpt'", "--sort", "val_ppl:best"],
                 ["1", "--where", "id > 0"]):
        bad = _hrm(db_path, "compare", *args)
        assert bad.exit_code == 2 and bad.output.startswith("error: ") and len(bad.output.strip().splitlines()) == 1
    none = _hrm(db_path, "compare", "--where", "tag == 'nothing'")
    assert none.exit_code == 1 and "no runs with --where" in none.output


def test_cli_tag_and_note(db, db_path, runs):
    result = _hrm(db_path, "tag", str(runs[0]), "+best", "-sweep-1", "+v2")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "best v2"
    assert store.tags_of(db, [runs[0]])[runs[0]] == ["best", "v2"]
    assert _hrm(db_path, "note", str(runs[0]), "lr too high after epoch 3").exit_code == 0
    shown = _hrm(db_path, "note", str(runs[0]))
    assert shown.stdout.strip() == "lr too high after epoch 3"
    assert select_ids(db, "note ~ 'too high' and tag == 'v2'") == [runs[0]]
    assert _hrm(db_path, "note", str(runs[0]), "--clear").exit_code == 0
    assert store.get_run(db, runs[0]).note is None
    for args, code in ([["tag", str(runs[0]), "best"], 2], [["tag", str(runs[0]), "+has space"], 2],
                       [["tag", "999", "+x"], 1], [["note", "999", "x"], 1],
                       [["note", str(runs[0]), "x", "--clear"], 2]):
        bad = _hrm(db_path, *args)
        assert bad.exit_code == code, (args, bad.output)
        assert bad.output.startswith("error: ") and len(bad.output.strip().splitlines()) == 1


def test_the_same_selections_on_postgresql(pg_url):
    """PostgreSQL reads config through JSONB and compares text, numbers and booleans the same way."""
    db = open_database(pg_url, create=True)
    try:
        runs = make_runs(db)
        for where, expected in SELECTIONS:
            assert select_ids(db, where) == [runs[i] for i in expected], where
        for attack in ("x'; DROP TABLE run; --", "' OR '1'='1"):
            quoted = "'" + attack.replace("'", "\\'") + "'"
            assert select_ids(db, f"config.method == {quoted} or tag == {quoted}") == []
        assert len(store.list_runs(db)) == 5
    finally:
        db.dispose()
