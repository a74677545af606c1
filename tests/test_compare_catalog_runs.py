"""Real catalog runs, tiny and in-process (``core.worker.execute``): every published number of report 004
finds its metric / table cell in what the experiments really emit (names, stages, table columns).

The runs are far too small to be within tolerance; only "missing" is checked here. The slow test in
``test_compare_slow.py`` runs the real configurations and checks the tolerances.
"""

from __future__ import annotations

import time

import torch

from core import api
from core.reproduce import compare_report
from core.worker import execute

TINY = dict(d_model=16, n_heads=2, max_epochs=1, patience=1, cpu_threads=1, device="cpu", variant="published")
WIKI = dict(data="excerpt", train_chars=1500, val_chars=700)
CASES = {
    "exp1.hrm": ("hrm", {**WIKI, "update": "sequential"}),
    "exp2.infini-reset": ("infini-hrm", {**WIKI, "model": "infini-reset"}),
    "exp3.hrm": ("irt", {**WIKI, "model": "hrm", "hrm_d_model": 16}),
    "exp4.lpt-sum": ("lpt", {**WIKI, "method": "lpt-sum"}),
    "exp5.layer-freezing": ("layer-freezing", {}),
    "exp6.greedy": ("greedy-layerwise", {"method": "greedy"}),
    "exp7.lpt-progressive": ("progressive", {"method": "lpt-progressive"}),
    "exp8.layer-contribution": ("layer-contribution", {}),
    "exp9.early-exit": ("early-exit", {}),
    "exp10.routed": ("confidence-routing", {"model": "routed"}),
    "exp11.full-lpt": ("lpt-routing", {"loss": "full-lpt"}),
}


def test_every_number_of_004_resolves_from_real_runs(db):
    pinned = {}
    for key, (experiment, config) in CASES.items():
        run = api.submit(db, experiment, {**TINY, **config})
        assert execute(db.url, run.id) == 0, api.require_run(db, run.id).error
        pinned[key] = run.id
    result = compare_report(db, "004", use=pinned)
    checked = 0
    for number in result.numbers:
        table = number["table"]
        row_key = next((r.get("run") for t in _tables() if t["id"] == table for r in t["rows"]
                        if r["label"] == number["row"]), None)
        if row_key not in pinned or number["status"] in ("ref", "info"):
            continue
        if number["column"] in ("Improvement", "vs baseline"):
            continue  # derived from the baseline row's run, which is not among the tiny runs
        if table == "exp4.layer-losses" and number["row"] != "Epoch 1":
            continue  # one epoch only: epochs 5, 10, 15 do not exist in the tiny run
        checked += 1
        assert number["status"] != "missing" or number["why"] == "undefined (NaN) in our run", number
    assert checked >= 150


def _tables():
    from core import published

    return published.load("004")["tables"]


def test_every_number_of_000_to_003_resolves_from_tiny_smollm2_runs(db, tmp_path):
    """The SmolLM2 reports on a tiny random Llama (4 layers) and generated Alpaca records."""
    import json

    from core.smollm2.alpaca import tiny_records
    from core.smollm2.model import build_tiny_model_dir

    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(tiny_records(96).rows))
    files = {"model": build_tiny_model_dir(tmp_path / "model"), "data_file": str(data), "device": "cpu",
             "variant": "published"}
    cases = {
        ("000", "000"): ("cascade", dict(recipe="000", num_samples=40, seq_len=32, epochs=2, patience=10,
                                         hard_ratio=0.3)),
        ("001", "001"): ("cascade", dict(recipe="001", num_samples=40, val_samples=8, seq_len=32, stages=3,
                                         stage_layers=2, epochs=2, patience=5)),
        ("002", "002"): ("hard-tokens", dict(num_samples=24, val_samples=8, seq_len=32, epochs=2, threshold=0.97)),
        ("003", "003"): ("saturation", dict(num_samples=24, seq_len=32, threshold_layer=3)),
    }
    torch.set_num_threads(1)
    for (report, key), (experiment, config) in cases.items():
        run = api.submit(db, experiment, {**files, **config})
        started = time.perf_counter()
        assert execute(db.url, run.id) == 0, api.require_run(db, run.id).error
        print(f"{report}: {time.perf_counter() - started:.1f} s")
        result = compare_report(db, report, use={key: run.id})
        for number in result.numbers:
            if number["status"] in ("ref", "info"):
                continue
            if report == "003" and number["table"] in ("003.layers", "003.outliers") and \
                    int(number["row"].split()[-1]) > 4:
                continue  # the tiny model has 4 layers
            if number["table"] in ("000.epochs", "001.epochs") and number["row"].split()[-1] == "3" or \
                    number["table"] == "000.epochs" and int(number["row"].split()[-1]) > 2:
                continue  # two epochs per stage
            assert number["status"] != "missing", (report, number)
