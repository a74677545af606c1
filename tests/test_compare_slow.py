"""The acceptance test of ``hrm reproduce`` + ``hrm compare --report``: report 004's Exp 5–11 re-run for real.

``hrm reproduce 004 --only 5-11 --variant published`` queues the 15 runs (toy-fox text, CPU, 2 threads),
they run to completion through ``core.worker.execute`` (in parallel worker processes when the machine
has the cores), and ``hrm compare --report 004 --exp 5-11 --check`` must mark every published number
within its tolerance: exact for Exp 5, 6, 8–11 and Exp 7's stage 1 and scratch rows, ordering only for
Exp 7's chaotic stages 2–4 (spec F5). Takes a few minutes of CPU (about 15 CPU-minutes on 2 loaded cores).
"""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from core.registry import open_database, store
from hrm_tui.cli import app
from tests.compare_helpers import execute_runs

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.mark.timeout(3600)  # minutes on an idle machine; far more when its cores are shared
def test_004_exp5_to_11_published_on_cpu_is_within_tolerance(db_path):
    queued = runner.invoke(app, ["--db", str(db_path), "reproduce", "004", "--only", "5-11", "--no-start-scheduler"])
    assert queued.exit_code == 0, queued.output
    tag = queued.stdout.strip()
    assert tag == "reproduce-004-published"
    db = open_database(db_path)
    runs = store.list_runs(db, tag=tag)
    assert len(runs) == 15 and all(r.variant == "published" for r in runs)
    codes = execute_runs(db.url, [r.id for r in reversed(runs)], workers=max(1, (os.cpu_count() or 2) // 2))
    assert set(codes.values()) == {0}, {i: store.get_run(db, i).error for i, c in codes.items() if c}

    result = runner.invoke(app, ["--db", str(db_path), "compare", "--report", "004", "--exp", "5-11", "--check",
                                 "--format", "json"])
    doc = json.loads(result.stdout)
    bad = [n for t in doc["tables"] for n in t["numbers"] if n["status"] not in ("ok", "info", "ref")]
    assert result.exit_code == 0 and not bad, json.dumps(bad[:10], indent=1, ensure_ascii=False)
    counts = doc["summary"]["counts"]
    assert counts.get("ok", 0) >= 150
    assert set(doc["source"]["runs"].values()) == {r.id for r in runs}
    # The quirks the published variant reproduces are recorded next to the results.
    infos = {r.experiment: json.loads(store.get_run(db, r.id).info_json) for r in runs}
    assert all("B11" in info.get("quirks", []) for info in infos.values())
