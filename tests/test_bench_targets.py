"""``benchmarks/targets.py``: issue #13's targets in one table, each with a ratio to a same-run
baseline and a verdict that says when a limit is missed."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import targets  # noqa: E402
from targets import Limit, Row  # noqa: E402

RATIO = re.compile(r"^(> )?(\d+(\.\d+)?)(×| %)$")


def table_rows(stdout: str) -> dict[str, list[str]]:
    """{target: [measured, baseline, ratio, limit, verdict]} from the printed markdown table."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| target |"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_a_missed_limit_is_flagged_in_each_direction():
    at_most = Limit("ratio", "<=", 4.0, "≤ 4×")
    assert Row("cli", "x", 0.12, "CPU s", 0.03, "bare", 4.0, limit=at_most).verdict == "ok"
    assert Row("cli", "x", 0.13, "CPU s", 0.03, "bare", 4.3, limit=at_most).verdict == "MISSED"
    at_least = Limit("ratio", ">=", 30.0, "≥ 30×")
    assert Row("ingest", "x", 3000, "epochs/s", 110, "MLflow", 27.3, limit=at_least).verdict == "MISSED"
    assert Row("ingest", "x", 3000, "epochs/s", 90, "MLflow", 33.3, limit=at_least).verdict == "ok"
    on_value = Limit("measured", "<=", 0.4, "≤ 0.4 s")  # an absolute limit ignores the ratio
    assert Row("latency", "x", 0.41, "s", 0.02, "bare", 20.5, limit=on_value).verdict == "MISSED"
    assert Row("listing", "x", 49, "runs", 200, "registry", limit=Limit("measured", "==", 50, "= 50")).verdict == "MISSED"
    assert Row("ingest", "x", None, "epochs/s", limit=at_least).verdict == "not measured"
    assert Row("ingest", "ceiling", 5000, "epochs/s", 100, "MLflow", 50.0).verdict == "info"


def test_the_table_shows_ratio_limit_verdict_and_shared_notes():
    rows = [Row("cli", "`hrm --help`", 0.2, "CPU s", 0.025, "bare", 8.0, limit=Limit("ratio", "<=", 6.0, "≤ 6×"),
                note="same note"),
            Row("ingest", "raw share", 3000, "epochs/s", 6000, "raw", 50.0, "%", Limit("ratio", ">=", 50.0, "≥ 50 %"),
                note="same note"),
            Row("dashboard", "idle", 1.0, "%", 0.1, "empty app", 10.0, limit=Limit("measured", "<=", 2.0, "≤ 2 %"),
                below=True)]
    printed = targets.table(rows)
    cells = table_rows(printed)
    assert cells["`hrm --help`"] == ["0.200 CPU s", "bare: 0.025 CPU s", "8.00×", "≤ 6×", "MISSED (1)"]
    assert cells["raw share"][2:] == ["50.0 %", "≥ 50 %", "ok (1)"]
    assert cells["idle"][1:3] == ["empty app: < 0.1 %", "> 10.00×"]
    assert printed.count("(1) same note") == 1 and "(2)" not in printed


def test_an_unknown_group_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        targets.main(["--only", "cli,nope"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"error: unknown target group nope: choose from {', '.join(targets.GROUPS)}\n")


@pytest.mark.slow
def test_the_cli_and_listing_targets_print_with_numeric_ratios(tmp_path):
    out = tmp_path / "targets.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "targets.py"), "--quick", "--only", "cli,listing",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "[1/1] cli + listing:" in done.stderr  # progress, as it goes
    rows = table_rows(done.stdout)
    ratios = ["`hrm ls --json`, 200 runs: whole-process CPU", "`hrm show RUN --json`: whole-process CPU",
              "`hrm --help`: whole-process CPU", "`hrm experiments`: whole-process CPU",
              "`hrm ls --json`, 20k vs 200 runs", "`hrm ls` (table), 20k vs 200 runs",
              "`hrm compare -e smoke --last 50`, 20k vs 200 runs"]
    counts = ["`hrm ls` (table): runs shown by default", "`hrm ls --json`: runs listed by default"]
    assert set(rows) == set(ratios + counts), rows.keys()
    for target in ratios:
        measured, baseline, ratio, limit, verdict = rows[target]
        assert RATIO.match(ratio), (target, ratio)
        assert verdict.split()[0] in ("ok", "MISSED"), (target, verdict)
        assert measured.endswith("CPU s") and baseline.endswith("CPU s")
    for target in counts:  # the default page: the newest 50 of the registry's 200
        assert rows[target][0] == "50 runs" and rows[target][-1].split()[0] == "ok", rows[target]
    record = json.loads(out.read_text())
    assert {row["target"] for row in record["rows"]} == set(rows)
    assert all(row["verdict"] in ("ok", "MISSED") for row in record["rows"])
    assert record["load_average"]["before"] >= 0
