"""``hrm compare RUN... | --experiment | --tag``: table contents and every export format, on a real registry."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest
from typer.testing import CliRunner

from core import api, compare
from core.compare import COMPARE_JSON_SCHEMA
from core.registry import store
from hrm_tui.cli import app
from tests.compare_helpers import fake_run
from tests.schema_check import problem

runner = CliRunner()


def hrm(*args: str):
    return runner.invoke(app, list(args))


def smoke(db, *, epochs=3, layers=2, ppl=(30.0, 20.0, 25.0), best=None, seed=42, tags=(), stages=None, status="completed",
          tables=()):
    """A smoke run whose val_ppl goes through ``ppl`` (best = min unless given), with per-layer losses."""
    config = {"epochs": epochs, "layers": layers, "seed": seed}
    summaries = {0: {"best_val_ppl": best if best is not None else min(ppl), "params": 1000.0 * layers,
                     "best_epoch": float(ppl.index(min(ppl)) + 1)}}
    summaries.update(stages or {})
    return fake_run(db, "smoke", config, tags=tags, status=status, summaries=summaries, tables=tables,
                    epochs={0: [(e, {"val_ppl": v, "train_loss": math.log(v)}) for e, v in enumerate(ppl, start=1)]},
                    layers={(0, e): {i: {"loss": 3.0 - 0.1 * e - 0.2 * i} for i in range(1, layers + 1)}
                            for e in range(1, len(ppl) + 1)})


def records(db, ids):
    found = {r["id"]: r for r in api.list_records(db, ids=ids)}
    return [found[i] for i in ids]


def test_runs_table_columns_values_and_baseline(db):
    a = smoke(db, epochs=3, ppl=(30.0, 20.0, 25.0))
    b = smoke(db, epochs=5, ppl=(28.0, 18.0, 16.0))
    c = smoke(db, epochs=5, layers=4, ppl=(40.0, 24.0, 22.0), status="running")
    table = compare.runs_table(records(db, [a, b, c]), baseline=a, metrics=["val_ppl:max", "train_loss:min_epoch"])
    keys = [col.key for col in table.columns]
    assert keys == ["run", "status", "config.epochs", "config.layers", "best", "best_epoch", "last_val_ppl", "params",
                    "metric.val_ppl:max", "metric.train_loss:min_epoch", "vs_baseline_pct"]
    rows = {r["run"]: r for r in table.rows}
    assert rows[a]["best"] == 20.0 and rows[a]["best_epoch"] == 2 and rows[a]["last_val_ppl"] == 25.0
    assert rows[b]["config.epochs"] == "5" and rows[c]["config.layers"] == "4" and rows[c]["status"] == "running"
    assert rows[c]["params"] == 4000 and rows[b]["metric.val_ppl:max"] == 28.0 and rows[b]["metric.train_loss:min_epoch"] == 3
    assert rows[a]["vs_baseline_pct"] == 0.0
    assert rows[b]["vs_baseline_pct"] == pytest.approx(100 * (20 - 16) / 20)      # +20 %: better
    assert rows[c]["vs_baseline_pct"] == pytest.approx(100 * (20 - 22) / 20)      # −10 %: worse
    assert table.cell_text(2, table.column("vs_baseline_pct")) == "-10.0%"
    assert table.cell_text(1, table.column("vs_baseline_pct")) == "+20.0%"
    assert any("quirk B12" in note for note in table.notes)


def test_runs_table_reads_summaries_not_histories(db, monkeypatch):
    ids = [smoke(db) for _ in range(3)]
    monkeypatch.setattr(store, "metrics", lambda *a, **k: pytest.fail("the main table read a metric history"))
    table = compare.runs_table(api.list_records(db, ids=ids))
    assert len(table.rows) == 3


def test_best_falls_back_to_val_ppl_while_training(db):
    run = fake_run(db, "smoke", {"epochs": 9}, status="running",
                   epochs={0: [(1, {"val_ppl": 50.0}), (2, {"val_ppl": 40.0}), (3, {"val_ppl": 45.0})]})
    (row,) = compare.runs_table(api.list_records(db, ids=[run])).rows
    assert row["best"] == 40.0 and row["best_epoch"] == 2 and row["last_val_ppl"] == 45.0


def test_a_staged_run_while_training_shows_its_current_stage_best_and_epoch(db):
    """As the headline rule: no summary yet, so the best val_ppl of the stage it is in, and that epoch."""
    run = fake_run(db, "smoke", {"epochs": 9}, status="running",
                   epochs={1: [(1, {"val_ppl": 90.0}), (2, {"val_ppl": 80.0})],
                           2: [(1, {"val_ppl": 60.0}), (2, {"val_ppl": 50.0}), (3, {"val_ppl": 55.0})]})
    (row,) = compare.runs_table(api.list_records(db, ids=[run])).rows
    assert row["best"] == 50.0 and row["best_epoch"] == 2


def test_errors_of_the_table_builders(db):
    a = smoke(db)
    with pytest.raises(compare.CompareError, match="baseline run 999"):
        compare.runs_table(records(db, [a]), baseline=999)
    with pytest.raises(compare.CompareError, match="bad metric"):
        compare.runs_table(records(db, [a]), metrics=["val_ppl:median"])


def test_aggregate_over_seeds(db):
    lr_small = [smoke(db, seed=s, tags=["sw"], ppl=p) for s, p in ((1, (12.0,)), (2, (14.0,)), (3, (16.0,)))]
    lr_big = [smoke(db, epochs=5, seed=s, tags=["sw"], ppl=p) for s, p in ((1, (20.0,)), (2, (22.0,)))]
    table = compare.aggregate_table(api.list_records(db, tag="sw")[::-1], baseline=lr_small[0])
    by_n = {r["n"]: r for r in table.rows}
    assert [col.key for col in table.columns][:3] == ["runs", "n", "config.epochs"]
    three, two = by_n[3], by_n[2]
    assert three["runs"] == ",".join(map(str, lr_small)) and two["runs"] == ",".join(map(str, lr_big))
    assert three["best.mean"] == pytest.approx(14.0) and three["best.std"] == pytest.approx(2.0)
    assert two["best.mean"] == pytest.approx(21.0) and two["best.std"] == pytest.approx(math.sqrt(2.0))
    assert two["vs_baseline_pct"] == pytest.approx(100 * (14 - 21) / 14)
    i3 = table.rows.index(three)
    assert table.cell_text(i3, table.column("best.mean")) == "14 ± 2"
    assert "best_val_ppl (best) std" not in compare.to_markdown([table])  # shown after ±
    assert "best_val_ppl (best) std" in compare.to_csv([table]).splitlines()[0]
    single = compare.aggregate_table(api.list_records(db, ids=[lr_small[0]]))
    assert single.rows[0]["best.std"] is None
    assert single.cell_text(0, single.column("best.mean")) == "12"


def test_layer_tables_one_run_and_several(db):
    a = smoke(db, layers=3, ppl=(30.0, 20.0, 25.0))
    b = smoke(db, layers=2, ppl=(30.0, 20.0))
    rows = {i: store.metrics(db, i, kind="layer") for i in (a, b)}
    (one,) = compare.layer_tables(records(db, [a]), rows)
    assert [c.label for c in one.columns] == ["layer", "ep 1", "ep 2", "ep 3"]
    assert [r["layer"] for r in one.rows] == [1, 2, 3]
    assert one.rows[0]["ep1"] == pytest.approx(2.7) and one.rows[2]["ep3"] == pytest.approx(2.1)
    (picked,) = compare.layer_tables(records(db, [a]), rows, epochs=[1, 3])
    assert [c.key for c in picked.columns] == ["layer", "ep1", "ep3"]
    (several,) = compare.layer_tables(records(db, [a, b]), rows)
    assert [c.label for c in several.columns] == ["layer", f"run {a} (ep 3)", f"run {b} (ep 2)"]
    assert several.rows[2][f"run.{a}"] == pytest.approx(2.1) and several.rows[2][f"run.{b}"] is None
    assert several.rows[1][f"run.{b}"] == pytest.approx(2.4)


def test_stage_and_threshold_tables(db):
    stages = {1: {"best_val_ppl": 9.98, "best_epoch": 3.0, "params": 200832.0, "trainable_params": 200832.0},
              2: {"best_val_ppl": 25.08, "best_epoch": 1.0, "params": 266496.0, "trainable_params": 67584.0}}
    sweep = [{"threshold": 0.5, "val_ppl": 40.63, "shallow_pct": 91.1}, {"threshold": 0.8, "val_ppl": 40.31, "shallow_pct": 80.4}]
    a = smoke(db, stages=stages, tables=[("thresholds", 0, sweep), ("difficulty", 0, [{"class": "Easy"}])])
    b = smoke(db, tables=[("thresholds", 0, sweep[:1])])
    st = compare.stages_table(records(db, [a, b]))
    assert [(r["run"], r["stage"], r["best_val_ppl"], r["trainable_params"]) for r in st.rows] == [
        (a, 1, 9.98, 200832), (a, 2, 25.08, 67584)]
    by_run = {i: store.result_tables(db, i) for i in (a, b)}
    (th,) = compare.threshold_tables(records(db, [a, b]), by_run)
    assert [c.label for c in th.columns] == ["run", "threshold", "val_ppl", "shallow_pct"]
    assert [(r["run"], r["col.threshold"], r["col.val_ppl"]) for r in th.rows] == [
        (a, 0.5, 40.63), (a, 0.8, 40.31), (b, 0.5, 40.63)]


# --- exporters --------------------------------------------------------------------------------

@pytest.fixture
def tables(db):
    a = smoke(db, ppl=(30.0, 20.0, 25.0))
    b = smoke(db, epochs=5, ppl=(28.0, 18.0, 16.0))
    recs = records(db, [a, b])
    main = compare.runs_table(recs, baseline=a)
    layers = compare.layer_tables(recs, {i: store.metrics(db, i, kind="layer") for i in (a, b)})
    return [main, *layers]


def test_markdown_is_a_pipe_table(tables):
    text = compare.to_markdown(tables[:1])
    lines = text.strip().splitlines()
    assert lines[0] == "### runs" and lines[1] == ""
    header, rule, *body = lines[2:]
    body, notes = body[:2], body[2:]
    assert notes[0] == "" and notes[1].startswith("- vs run")
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:3] == ["run", "status", "epochs"] and cells[-1].startswith("vs run")
    assert re.fullmatch(r"\|(---:?\|)+", rule) and rule.count("|") == len(cells) + 1
    assert len(body) == 2 and all(line.count("|") == len(cells) + 1 for line in body)
    assert body[1].endswith("| +20.0% |") and "| 16 |" in body[1]


def test_csv_parses(tables):
    rows = list(csv.DictReader(io.StringIO(compare.to_csv(tables[:1]))))
    assert [float(r["best_val_ppl (best)"]) for r in rows] == [20.0, 16.0]
    assert float(rows[1][next(k for k in rows[1] if k.startswith("vs run"))]) == pytest.approx(20.0)
    long = list(csv.DictReader(io.StringIO(compare.to_csv(tables))))
    assert {r["table"] for r in long} == {"runs", "layers.loss"}
    assert len(long) == 2 + 2  # two runs, two layers


def test_json_validates_against_the_schema(tables):
    doc = json.loads(compare.to_json(tables, source={"runs": [1, 2]}))
    assert problem(doc, COMPARE_JSON_SCHEMA) is None
    assert doc["schema"] == "hrm.compare/v1" and [t["kind"] for t in doc["tables"]] == ["runs", "layers"]
    assert doc["tables"][0]["rows"][1]["best"] == 16.0
    broken = dict(doc, tables=[dict(doc["tables"][0], kind="pie")])
    assert "pie" in problem(broken, COMPARE_JSON_SCHEMA)
    nan = compare.Table("t", "t", "runs", [compare.Column("x", "x")], [{"x": float("nan")}])
    assert json.loads(compare.to_json([nan]))["tables"][0]["rows"][0]["x"] is None


def test_latex_is_a_valid_tabular(tables):
    text = compare.to_latex(tables)
    blocks = re.findall(r"\\begin\{tabular\}\{([lr]+)\}\n(.*?)\\end\{tabular\}", text, flags=re.S)
    assert len(blocks) == 2 and text.count("\\begin{tabular}") == text.count("\\end{tabular}") == 2
    for spec, body in blocks:
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert len(rows) >= 3
        for line in rows:
            cells = re.split(r"(?<!\\)&", line[:-2])
            assert len(cells) == len(spec), line
    assert r"\_" in text or "_" not in text.replace(r"\_", "")
    assert compare.latex_escape("50% & τ_1 ≥ 0.8 #x") == r"50\% \& $\tau$\_1 $\geq$ 0.8 \#x"
    bad = re.sub(r"\\[%&_#$]", "", text)
    assert not re.search(r"(?<!\\)[%&_#$]", "\n".join(l for l in bad.splitlines() if not l.startswith("%")).replace("&", "")), \
        "unescaped special character"


def test_latex_compiles_when_pdflatex_exists(tables, tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (structure is checked by test_latex_is_a_valid_tabular)")
    doc = "\\documentclass{article}\n\\begin{document}\n" + compare.to_latex(tables) + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "t.tex"], cwd=tmp_path, capture_output=True)
    assert result.returncode == 0, result.stdout[-2000:]


# --- the CLI ----------------------------------------------------------------------------------

def test_cli_compare_runs_every_format(db_path, db, tmp_path):
    a = smoke(db, ppl=(30.0, 20.0, 25.0))
    b = smoke(db, epochs=5, ppl=(28.0, 18.0, 16.0))
    shown = hrm("--db", str(db_path), "compare", str(a), str(b), "--baseline", str(a), "--layers")
    assert shown.exit_code == 0, shown.output
    assert "epochs" in shown.output and "+20.0%" in shown.output and "per-layer loss (layer × run)" in shown.output
    for fmt in ("markdown", "csv", "json", "latex"):
        out = tmp_path / f"c.{fmt}"
        result = hrm("--db", str(db_path), "compare", str(a), str(b), "--format", fmt, "--out", str(out))
        assert result.exit_code == 0 and out.exists(), result.output
    assert problem(json.loads((tmp_path / "c.json").read_text()), COMPARE_JSON_SCHEMA) is None
    by_suffix = hrm("--db", str(db_path), "compare", str(a), "--out", str(tmp_path / "x.md"))
    assert by_suffix.exit_code == 0 and (tmp_path / "x.md").read_text().startswith("### runs")
    stdout = hrm("--db", str(db_path), "compare", "--experiment", "smoke", "--last", "1", "--format", "csv")
    assert [r["run"] for r in csv.DictReader(io.StringIO(stdout.stdout))] == [str(b)]


def test_cli_compare_tag_shows_mean_and_std(db_path, db):
    for seed, ppl in ((1, 12.0), (2, 14.0), (3, 16.0)):
        smoke(db, seed=seed, tags=["sweep-x"], ppl=(ppl,))
    result = hrm("--db", str(db_path), "compare", "--tag", "sweep-x", "--format", "json")
    doc = json.loads(result.stdout)
    (row,) = doc["tables"][0]["rows"]
    assert doc["tables"][0]["kind"] == "aggregate" and row["n"] == 3
    assert row["best.mean"] == pytest.approx(14.0) and row["best.std"] == pytest.approx(2.0)
    plain = hrm("--db", str(db_path), "compare", "--tag", "sweep-x", "--no-aggregate", "--format", "json")
    assert len(json.loads(plain.stdout)["tables"][0]["rows"]) == 3


@pytest.mark.parametrize(("args", "code", "message"), [
    ([], 2, "nothing to compare"),
    (["1", "--experiment", "smoke"], 2, "give run ids or --experiment"),
    (["99"], 1, "no run 99"),
    (["--experiment", "nope"], 1, "no runs with experiment nope"),
    (["--tag", "x", "--exp", "4"], 2, "--exp needs --report"),
    (["1", "--metric", "val_ppl:median"], 2, "bad metric"),
    (["1", "--baseline", "77"], 1, "no run 77"),
    (["1", "--format", "yaml"], 2, "yaml"),
    (["1", "--out", "x.txt"], 2, "give --format"),
])
def test_cli_compare_bad_input(db_path, db, args, code, message):
    smoke(db)
    result = hrm("--db", str(db_path), "compare", *args)
    assert result.exit_code == code, result.output
    assert message in result.output and result.output.count("\n") == 1, result.output
