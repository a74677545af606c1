"""Time ``hrm-tui`` start-up on a large registry.

Seeds a SQLite registry with N runs and a few million metric rows through direct ``executemany``
(seconds, not minutes), then measures, with ``App.run_test``:

* first render: the app's first screen is painted (the table may still be empty);
* first rows shown: the first poll (the newest 200 runs) is on screen;
* all runs loaded: the full read is merged and the table holds every run;
* scrolling: the cost of a page-down and of an ``end`` on the full table;
* a poll tick with nothing new (the steady-state cost of watching the registry);
* typing a filter over every run, and opening a run view (its whole metric history).

    python benchmarks/bench_tui.py [--runs 10000] [--epochs 30] [--layers 4] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.registry.db import open_database  # noqa: E402

STATUSES = ["completed"] * 8 + ["failed", "cancelled"]
EPOCH_KEYS = ("train_loss", "val_loss", "val_ppl")


def seed(path: Path, *, runs: int, epochs: int, layers: int, active: int = 4, queued: int = 20) -> int:
    """Fill ``path`` with ``runs`` smoke-like runs; returns the number of metric rows."""
    open_database(str(path), create=True).dispose()
    rng = random.Random(0)
    base = 1_700_000_000.0
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = OFF")
    run_rows, latest_rows, metric_rows = [], [], []
    for run_id in range(1, runs + 1):
        status = STATUSES[run_id % len(STATUSES)]
        if run_id > runs - queued:
            status = "queued"
        elif run_id > runs - queued - active:
            status = "running"
        config = {"epochs": epochs, "layers": layers, "lr": rng.choice([1e-3, 3e-4, 1e-4]), "seed": run_id % 5,
                  "sleep": 0.0, "stages": 1, "variant": "corrected", "device": "auto", "fail_at_epoch": 0,
                  "noisy": False}
        created = base + run_id * 60
        done = status != "queued"
        best = 10 + rng.random() * 20
        run_rows.append((run_id, "smoke", "corrected", json.dumps(config, sort_keys=True), status, 0, created,
                         created + 50, created + 1 if done else None,
                         created + 50 if status in ("completed", "failed", "cancelled") else None,
                         "host", None, str(run_id % 4) if done else None, 0, "{}", 0,
                         epochs if done else 0, epochs, "best_val_ppl",
                         best if status == "completed" else None))
        if not done:
            continue
        for key in EPOCH_KEYS:
            latest_rows.append((run_id, 0, key, best, epochs, best, epochs, best + 5, 1, epochs, created + 50))
        for epoch in range(1, epochs + 1):
            loss = 2.0 + 3.0 / epoch + rng.random() * 0.1
            for key, value in zip(EPOCH_KEYS, (loss, loss + 0.05, 2.718 ** (loss + 0.05)), strict=True):
                metric_rows.append((run_id, "epoch", 0, epoch, None, key, value, 0, created + epoch))
            for layer in range(1, layers + 1):
                metric_rows.append((run_id, "layer", 0, epoch, layer, "loss", loss + 0.3 * layer, 0, created + epoch))
    con.executemany(
        "INSERT INTO run (id, experiment, variant, config_json, status, priority, created_at, updated_at, started_at,"
        " finished_at, host, pid, gpu, cancel_requested, info_json, stage, epoch, total_epochs, headline_key,"
        " headline_value) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", run_rows)
    con.executemany("INSERT INTO latestmetric VALUES (?,?,?,?,?,?,?,?,?,?,?)", latest_rows)
    con.executemany("INSERT INTO metric (run_id, kind, stage, epoch, layer, key, value, is_nan, ts)"
                    " VALUES (?,?,?,?,?,?,?,?,?)", metric_rows)
    con.commit()
    con.close()
    return len(metric_rows)


async def measure(db: str) -> dict[str, float]:
    from hrm_tui.tui.app import HrmApp
    from hrm_tui.tui.widgets.run_table import RunTable

    out: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    app = HrmApp(db=db, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        out["first render"] = time.perf_counter() - t0
        out["first render (CPU)"] = time.process_time() - c0
        table = app.screen.query_one(RunTable)
        while table.row_count == 0:
            await asyncio.sleep(0.002)
        out["first rows shown"] = time.perf_counter() - t0
        await app.settle()
        await pilot.pause()
        out["all runs loaded"] = time.perf_counter() - t0
        out["all runs loaded (CPU)"] = time.process_time() - c0
        out["rows shown"] = table.row_count
        t1 = time.perf_counter()
        for _ in range(10):
            await pilot.press("f12")  # unbound: what a key press costs the test harness itself
        out["unbound key (harness)"] = (time.perf_counter() - t1) / 10
        t1 = time.perf_counter()
        for _ in range(10):
            await pilot.press("pagedown")
        out["page-down (each)"] = (time.perf_counter() - t1) / 10
        c1 = time.process_time()
        for start in range(5000, 5400, 40):  # ten never-seen screens
            table.scroll_to(y=start, animate=False, immediate=True)
            for y in range(40):
                table.render_line(y)
        out["render a new screen of rows (CPU)"] = (time.process_time() - c1) / 10
        t1 = time.perf_counter()
        await pilot.press("end")
        out["end"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        app.poll_once()
        await app.settle()
        await pilot.pause()
        out["idle poll"] = time.perf_counter() - t1
        screen = app.screen
        t1 = time.process_time()
        for _ in range(10):
            screen._refresh_table(force=True)
        out["re-sort+redraw (UI thread, each)"] = (time.process_time() - t1) / 10
        t1 = time.perf_counter()
        await pilot.press("slash", *"lr=0.001", "enter")
        out["filter (8 keys)"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        await pilot.press("home", "enter")
        await app.settle()
        await pilot.pause()
        out["open run view"] = time.perf_counter() - t1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--db", help="reuse (or create) this registry instead of a temporary one")
    parser.add_argument("--repeat", type=int, default=3, help="start the app this many times; report the best")
    args = parser.parse_args()
    path = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="hrm-bench-")) / "runs.db"
    if not path.exists():
        t0 = time.perf_counter()
        rows = seed(path, runs=args.runs, epochs=args.epochs, layers=args.layers)
        print(f"seeded {args.runs:,} runs / {rows:,} metric rows in {time.perf_counter() - t0:.1f}s → {path}")
    con = sqlite3.connect(path)
    n_runs, n_metrics = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("run", "metric"))
    con.close()
    print(f"registry: {n_runs:,} runs, {n_metrics:,} metric rows")
    trials = [asyncio.run(measure(str(path))) for _ in range(args.repeat)]
    print(f"best of {args.repeat} (wall clock; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):")
    for name in trials[0]:
        value = min(t[name] for t in trials)
        print(f"  {name:<34} {value:,.0f}" if name == "rows shown" else f"  {name:<34} {value * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
