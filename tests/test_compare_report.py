"""Published vs ours: the published-numbers files, tolerance classes, report matching, ``hrm compare --report``.

Runs are written to a real SQLite registry with ``api.submit`` + ``RegistryEmitter``; "published" runs
print exactly the report's numbers (built from the published files themselves), then single numbers
are pushed inside / outside their tolerance.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core import api, published
from core.compare import COMPARE_JSON_SCHEMA
from core.published import PUBLISHED_SCHEMA, parse_printed
from core.reproduce import compare_report, within
from hrm_tui.cli import app
from tests.compare_helpers import fake_run, seed_published
from tests.schema_check import problem

runner = CliRunner()


def hrm(*args: str):
    return runner.invoke(app, list(args))


def statuses(result, table_id: str | None = None) -> dict[tuple[str, str], str]:
    return {(n["row"], n["column"]): n["status"] for n in result.numbers
            if table_id is None or n["table"] == table_id}


# --- the published files ----------------------------------------------------------------------

@pytest.mark.parametrize("report", published.REPORTS)
def test_published_file_validates_and_maps_every_number(report):
    doc = published.load(report)
    assert problem(doc, PUBLISHED_SCHEMA) is None
    assert published.check(doc) == []
    for table in doc["tables"]:
        for row in table["rows"]:
            for col, text in zip(table["columns"], row["values"]):
                pub = parse_printed(text)
                ref = row.get("refs", {}).get(col["name"], col.get("ref"))
                if pub.numeric and row.get("reproducible", True):
                    assert ref is not None, f"{table['id']}/{row['label']}/{col['name']} has no ref"
                    assert row.get("run") or ref.get("run"), f"{table['id']}/{row['label']}: no run"


def test_published_004_contents_match_the_report():
    doc = published.load("004")
    runs = doc["runs"]
    # Exp 1–11 all have runs; the external rows are reference-only.
    assert {spec["exp"] for spec in runs.values()} == {str(i) for i in range(1, 12)}
    rows = {(t["id"], r["label"]): r for t in doc["tables"] for r in t["rows"]}
    assert rows[("exp1.results", "LCT+OACD (1-Layer)")]["reproducible"] is False
    assert rows[("exp2.results", "HRM+Memory (carry)")]["values"] == ["193K", "23.24", "-92.1%"]
    assert rows[("exp2.results", "HRM+Memory (reset)")]["reproducible"] is False
    assert rows[("exp11.thresholds.full-lpt", "0.90")]["values"] == ["50.70", "86.3%", "56.8%"]
    assert rows[("exp7.lpt", "Layer 4")]["classes"] == {"Best PPL": "chaotic", "Epoch": "chaotic"}
    assert "classes" not in rows[("exp7.lpt", "Layer 1")]
    assert rows[("exp6.final", "Greedy + Fine-tune")]["values"] == ["266K", "423.65"]
    exp10 = [r["values"][0] for t in doc["tables"] if t["id"] == "exp10.thresholds" for r in t["rows"]]
    assert exp10 == ["40.63", "40.45", "40.07", "40.31", "40.31"]
    numbers = sum(parse_printed(v).numeric for t in doc["tables"] for r in t["rows"] for v in r["values"])
    assert numbers == 282  # 286 cells less "baseline" ×3 and "—"


@pytest.mark.parametrize(("text", "value", "decimals", "scale", "suffix"), [
    ("152K", 152, 0, 1e3, "K"), ("12.10", 12.10, 2, 1, ""), ("+5.3%", 5.3, 1, 1, "%"), ("-86.9%", -86.9, 1, 1, "%"),
    ("24,343.01", 24343.01, 2, 1, ""), ("≤ 0.04", 0.04, 2, 1, ""), ("134.5M", 134.5, 1, 1e6, "M"),
    ("-0.1107", -0.1107, 4, 1, ""), ("100%", 100, 0, 1, "%"),
])
def test_parse_printed(text, value, decimals, scale, suffix):
    p = parse_printed(text)
    assert p.value == pytest.approx(value) and p.decimals == decimals and p.scale == scale and p.suffix == suffix


@pytest.mark.parametrize("text", ["baseline", "—", "", "n/a"])
def test_parse_printed_non_numbers(text):
    assert not parse_printed(text).numeric


@pytest.mark.parametrize(("ours", "text", "tol", "ok"), [
    (11.42, "11.31", {"rel": 0.01, "digits": 1}, True),     # exact PPL: within 1 %
    (11.43, "11.31", {"rel": 0.01, "digits": 1}, False),
    (50.69, "50.70", {"rel": 0.01, "digits": 1}, True),     # the spec's last-digit case
    (80.9, "80.4%", {"abs": 0.5}, True),                    # exact %: 0.5 points
    (80.91, "80.4%", {"abs": 0.5}, False),
    (69.504, "69K", {"digits": 0}, True),                   # the scripts truncated thousands
    (68.4, "69K", {"digits": 0}, False),
    (3.0, "3", {"digits": 0}, True), (4.0, "3", {"digits": 0}, False),
    (0.185, "0.18", {"digits": 1}, True), (0.195, "0.18", {"digits": 1}, False),
    (13.0, "11.31", {"rel": 0.25}, True), (14.2, "11.31", {"rel": 0.25}, False),   # loose
])
def test_tolerance_bands(ours, text, tol, ok):
    assert within(ours, parse_printed(text), tol) is ok


# --- report comparison on a registry ----------------------------------------------------------

@pytest.mark.parametrize("report", published.REPORTS)
def test_runs_printing_the_published_numbers_are_all_within_tolerance(db, report):
    seed_published(db, report)
    result = compare_report(db, report)
    counts = result.summary["counts"]
    assert counts.get("out", 0) == 0 and counts.get("missing", 0) == 0, [
        n for n in result.numbers if n["status"] in ("out", "missing")][:3]
    assert result.summary["within_tolerance"]
    assert all(n["status"] in ("ok", "ref", "info") for n in result.numbers)
    assert problem(json.loads(_json(result)), COMPARE_JSON_SCHEMA) is None


def _json(result) -> str:
    from core.compare import to_json

    return to_json(result.tables, summary=result.summary)


PERTURB_10 = {
    ("exp10.models", "Confidence-Routed", "PPL"): 13.20 / 12.98,        # +1.7 %: outside close (1 %)
    ("exp10.models", "Standard 4-layer", "PPL"): 16.95 / 16.87,         # +0.5 %: inside close, not the digit
    ("exp10.models", "Standard 2-layer", "PPL"): 15.394 / 15.39,        # rounds to the printed 15.39
    ("exp10.thresholds", "0.80", "Shallow%"): 81.0 / 80.4,              # +0.6 pt: outside close (0.5 pt)
    ("exp10.thresholds", "0.90", "Shallow%"): 76.8 / 76.4,              # +0.4 pt: inside close, not the digit
}


def test_report_004_gpu_runs_are_checked_close(db):
    seed_published(db, "004", perturb=PERTURB_10, device="cuda")
    result = compare_report(db, "004", exps=["10"])
    s = statuses(result)
    assert s[("Confidence-Routed", "PPL")] == "out"
    assert s[("Standard 4-layer", "PPL")] == "ok" and s[("Standard 2-layer", "PPL")] == "ok"
    assert s[("0.80", "Shallow%")] == "out" and s[("0.90", "Shallow%")] == "ok"
    assert result.summary["counts"] == {"ok": 30, "out": 2}  # 12 model numbers + 20 threshold numbers
    assert result.summary["checked_by_class"] == {"close": 32}
    entry = next(n for n in result.numbers if (n["row"], n["column"]) == ("Confidence-Routed", "PPL"))
    assert entry["published"] == 12.98 and entry["ours"] == pytest.approx(13.20)
    assert entry["diff"] == pytest.approx(0.22) and entry["class"] == "close"
    assert entry["tolerance"] == "±1% or ±1 in the last digit (not a CPU run: close, not digit-exact)"
    assert entry["why"].startswith("outside")
    table = next(t for t in result.tables if t.id == "report.004.exp10.models")
    row = table.rows[0]
    assert row["PPL.pub"] == "12.98" and row["PPL.ours"] == pytest.approx(13.20) and row["PPL.status"] == "out"
    assert table.cell_text(0, table.column("PPL.diff")) == "+0.22"
    assert table.cell_text(0, table.column("Parameters.ours")) == "266.0K"  # built from "266K"
    assert table.cell_text(1, table.column("Compute.ours")) == "100%"


def test_report_004_cpu_runs_are_checked_to_the_printed_digit(db):
    seed_published(db, "004", perturb=PERTURB_10)  # the published configs: device cpu
    result = compare_report(db, "004", exps=["10"])
    s = statuses(result)
    assert s[("Confidence-Routed", "PPL")] == "out"
    assert s[("Standard 4-layer", "PPL")] == "out" and s[("Standard 2-layer", "PPL")] == "ok"
    assert s[("0.80", "Shallow%")] == "out" and s[("0.90", "Shallow%")] == "out"
    assert result.summary["counts"] == {"ok": 28, "out": 4}
    from core.compare import summary_line

    assert summary_line(result.summary) == "32 published numbers: 28 ok, 4 out; checked 32 to the printed digit"
    entry = next(n for n in result.numbers if (n["row"], n["column"]) == ("Standard 4-layer", "PPL"))
    assert entry["class"] == "digits" and entry["tolerance"] == "to the printed digit"
    params = next(n for n in result.numbers if n["column"] == "Parameters")
    assert params["class"] == "digits" and params["status"] == "ok"  # "266K" for 266,496


def test_001_hard_counts_are_the_rule_on_our_own_tokens_and_304_3m_is_the_reports_rounding(db):
    # Our data has other token totals than the report: the counts differ from the printed ones by far,
    # yet they are right if they are the quantile rule's arithmetic on our own totals.
    from core.registry.emitter import RegistryEmitter

    ids = seed_published(db, "001")
    stage1 = {"train_hard_tokens": 57_600.0, "train_hard_expected": 57_600.0}
    stage2 = {"val_hard_tokens": 5_184.0, "val_hard_expected": 5_185.0}  # one token off the rule
    emit = RegistryEmitter(db, ids["001"])
    emit.summary(stage1, stage=1)
    emit.summary(stage2, stage=2)
    result = compare_report(db, "001", exps=["001"])
    by = {(n["table"], n["row"], n["column"]): n for n in result.numbers}
    train = by[("001.stages", "Stage 1", "Train hard")]
    assert train["class"] == "rule" and train["status"] == "ok" and train["rule"] == 57_600
    assert train["diff"] == pytest.approx(57_600 - 115_200)  # shown, not checked
    val = by[("001.stages", "Stage 2", "Val hard")]
    assert val["status"] == "out" and "5,185" in val["why"] and "own tokens" in val["why"]
    rounded = by[("001.cumulative", "Stage 3", "Cumulative")]
    assert rounded["status"] == "ok" and rounded["published_text"] == "304.3M"
    assert "report's rounding" in rounded["why"] and "304.41M" in rounded["tolerance"]


def test_derived_baseline_column_and_reference_rows(db):
    seed_published(db, "004", perturb={("exp3.results", "IRT Transformer", "Best PPL"): 10.70 / 11.52})
    result = compare_report(db, "004", exps=["1", "2", "3"])
    s = statuses(result)
    # vs baseline: (12.17 − 10.70)/12.17 = +12.1 % against the published +5.3 %: outside the loose 5 points
    entry = next(n for n in result.numbers if (n["row"], n["column"]) == ("IRT Transformer", "vs baseline"))
    assert entry["ours"] == pytest.approx(100 * (12.17 - 10.70) / 12.17)
    assert s[("IRT Transformer", "vs baseline")] == "out"
    assert s[("IRT Transformer", "Best PPL")] == "ok"            # loose ±10 %: 10.70 vs 11.52
    assert s[("HRM", "vs baseline")] == "ok"
    assert s[("LCT+OACD (1-Layer)", "Best Val PPL")] == "ref"
    assert s[("HRM+Memory (reset)", "Improvement")] == "ref"
    assert ("Standard Transformer", "vs baseline") not in s     # "baseline" is not a number


def test_chaotic_numbers_check_ordering_only(db):
    # Exp 7's stage 2–4 numbers off by 20 % keep their order: fine. Swapping the final LPT/Std order is not.
    far = {("exp7.lpt", "Layer 4", "Best PPL"): 1.2, ("exp7.std", "Layer 3", "Best PPL"): 0.8,
           ("exp7.final", "LPT Progressive (final)", "Best PPL"): 1.2}
    seed_published(db, "004", perturb=far)
    s = statuses(compare_report(db, "004", exps=["7"]))
    assert s[("Layer 4", "Best PPL")] == "ok" and s[("LPT Progressive (final)", "Best PPL")] == "ok"


def test_chaotic_order_violation_is_out(db):
    swap = {("exp7.final", "LPT Progressive (final)", "Best PPL"): 130.0 / 96.85}
    seed_published(db, "004", perturb=swap)
    result = compare_report(db, "004", exps=["7"])
    entry = next(n for n in result.numbers if n["table"] == "exp7.final" and n["row"] == "LPT Progressive (final)"
                 and n["column"] == "Best PPL")
    assert entry["status"] == "out" and entry["class"] == "chaotic"
    assert "Standard Progressive (final)" in entry["why"]


def test_missing_runs_and_the_corrected_variant(db):
    seed_published(db, "004", skip={"exp10.std2"})
    s = statuses(compare_report(db, "004", exps=["10"]))
    assert s[("Standard 2-layer", "PPL")] == "missing" and s[("Standard 4-layer", "PPL")] == "ok"
    # Corrected runs: the toy-text numbers of Exp 5–11 are not comparable (n/a), Exp 1–4 still are.
    seed_published(db, "004", variant="corrected")
    corrected = compare_report(db, "004", variant="corrected", exps=["4", "10"])
    cs = statuses(corrected)
    assert cs[("Confidence-Routed", "PPL")] == "n/a" and cs[("LPT (sum)", "Best PPL")] == "ok"
    entry = next(n for n in corrected.numbers if n["status"] == "n/a")
    assert "WikiText-2" in entry["why"]


def test_matching_ignores_runs_with_other_settings_and_failed_runs(db):
    ids = seed_published(db, "004")
    # A newer routed run with a different lr, and a newer failed faithful one: neither replaces the match.
    fake_run(db, "confidence-routing", {"model": "routed", "variant": "published", "lr": 5e-4},
             summaries={0: {"best_val_ppl": 99.0}})
    fake_run(db, "confidence-routing", {"model": "routed", "variant": "published"},
             summaries={0: {"best_val_ppl": 99.0}}, status="failed")
    result = compare_report(db, "004", exps=["10"])
    assert result.matches["exp10.routed"]["id"] == ids["exp10.routed"]
    # ... while a newer faithful run on another device / thread count does.
    newer = fake_run(db, "confidence-routing", {"model": "routed", "variant": "published", "device": "cpu",
                                                "cpu_threads": 4}, summaries={0: {"best_val_ppl": 12.99}})
    assert compare_report(db, "004", exps=["10"]).matches["exp10.routed"]["id"] == newer
    # --use pins a key to any run.
    pinned = compare_report(db, "004", exps=["10"], use={"exp10.routed": ids["exp10.std4"]})
    assert pinned.matches["exp10.routed"]["id"] == ids["exp10.std4"]


def test_cli_report_table_marks_numbers_outside_tolerance(db_path, db):
    seed_published(db, "004", perturb={("exp11.best", "Full LPT", "PPL"): 14.0 / 13.59})
    result = hrm("--db", str(db_path), "compare", "--report", "004", "--exp", "11")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "004 runs used" in out and "004 Exp 11: at the best epoch" in out
    assert "13.59" in out and "14.00" in out and "+0.41 ✗" in out
    assert "48 published numbers: 47 ok, 1 out" in out
    check = hrm("--db", str(db_path), "compare", "--report", "004", "--exp", "11", "--check", "--format", "json")
    assert check.exit_code == 1
    doc = json.loads(check.stdout)
    assert problem(doc, COMPARE_JSON_SCHEMA) is None
    assert doc["summary"]["counts"] == {"ok": 47, "out": 1} and doc["summary"]["within_tolerance"] is False
    out_numbers = [n for t in doc["tables"] for n in t["numbers"] if n["status"] == "out"]
    assert [(n["row"], n["column"], n["published"], n["ours"]) for n in out_numbers] == [
        ("Full LPT", "PPL", 13.59, pytest.approx(14.0))]


def test_cli_report_markdown_and_bad_input(db_path, db):
    seed_published(db, "003")
    md = hrm("--db", str(db_path), "compare", "--report", "003", "--format", "markdown")
    assert md.exit_code == 0
    lines = md.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| row |"))
    assert lines[header + 1].startswith("|---|---|---|---:|---:|")
    assert any(line.startswith("| Layer 25 | ") and "| 0.8408 | 0.8408 |" in line for line in lines)
    assert "224 published numbers: 224 ok" in md.stdout
    for args, code, message in [
        (["--report", "005"], 2, "unknown report '005'"),
        (["--report", "004", "--exp", "12"], 2, "report 004 has no experiment 12"),
        (["--report", "004", "1"], 2, "--report selects its own runs"),
        (["--report", "004", "--use", "exp10.routed"], 2, "expected KEY=RUN_ID"),
        (["--report", "004", "--use", "nope=1"], 2, "report 004 has no run key nope"),
        (["--exp", "4", "--tag", "x"], 2, "--exp needs --report"),
    ]:
        bad = hrm("--db", str(db_path), "compare", *args)
        assert bad.exit_code == code, (args, bad.output)
        assert message in bad.output and bad.output.count("\n") == 1, bad.output


def test_report_document_with_plots(db_path, db, tmp_path):
    from core.registry.emitter import RegistryEmitter

    ids = seed_published(db, "004")
    # Give two runs histories, per-layer rows and a threshold sweep to plot.
    for key in ("exp4.standard", "exp10.routed"):  # (these runs' published numbers are summaries only)
        emit = RegistryEmitter(db, ids[key])
        emit.info(quirks=["B11", "B12"] if key.startswith("exp10") else ["B19"])
        for e in range(1, 8):
            emit.epoch(e, {"val_ppl": 20.0 / e + 10})
            emit.layers(e, {i: {"loss": 4.0 / (e + i)} for i in range(1, 5)})
    RegistryEmitter(db, ids["exp10.routed"]).table("threshold_sweep", [
        {"threshold": t, "val_ppl": 40 + t, "val_acc_pct": 50 - t, "compute_pct": 50 + 10 * t} for t in (0.5, 0.7, 0.9)])
    out = tmp_path / "doc"
    result = hrm("--db", str(db_path), "report", "004", "--out", str(out), "--exp", "4,10")
    assert result.exit_code == 0, result.output
    text = (out / "report-004.md").read_text()
    assert text.startswith("# Report 004 regenerated")
    assert "## Experiment 4" in text and "## Experiment 10" in text and "## Experiment 5" not in text
    assert "| LPT (sum) |" in text and "| 0.80 |" in text
    assert "63 published numbers: 63 ok" in text  # Exp 4: 15 + 16 per-layer losses; Exp 10: 32
    assert "| B12 | best weights never restored" in text and "| B19 |" in text
    assert f"- run {ids['exp10.routed']} `confidence-routing`" in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(["loss-4.png", "loss-10.png", f"layers-run{ids['exp4.standard']}.png",
                           f"layers-run{ids['exp4.lpt-sum']}.png",  # its published per-layer losses
                           f"layers-run{ids['exp10.routed']}.png", f"tradeoff-run{ids['exp10.routed']}.png"])
    for name in pngs:
        assert f"]({name})" in text
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_api_user_error_for_unknown_variant():
    from core.reproduce import plan_reproduce

    with pytest.raises(api.UserError) as exc:
        plan_reproduce("004", "fixed")
    assert exc.value.exit_code == 2


def test_report_003_document_has_the_saturation_bar_chart(db_path, db, tmp_path):
    ids = seed_published(db, "003")
    out = tmp_path / "doc003"
    result = hrm("--db", str(db_path), "report", "003", "--out", str(out))
    assert result.exit_code == 0, result.output
    text = (out / "report-003.md").read_text()
    charts = sorted(p.name for p in out.glob("saturation-run*.png"))
    assert charts and all(f"]({name})" in text for name in charts), (charts, sorted(ids))
    assert (out / charts[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
