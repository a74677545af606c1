"""``hrm compare`` benchmark: the main comparison table over 1,000 runs must take under 0.5 s.

    python benchmarks/bench_compare.py [--runs 1000] [--epochs 30] [--layers 4] [--repeat 5]

Workload: a SQLite registry with ``--runs`` completed runs of one experiment (configs differing in
lr and seed), each with a full history (``--epochs`` epochs of train_loss/val_loss/val_ppl plus
``--layers`` per-layer losses per epoch: the rows a real run leaves) and a summary. The history is
bulk-inserted (how it got there is not what is measured). Measured, end to end as ``hrm compare
--experiment X`` does it: ``api.list_records`` (runs + latest-metric summaries + tags, never the
histories) → :func:`core.compare.runs_table` → markdown export; and the same for the aggregated
(mean ± std over seeds) table. Prints the median of ``--repeat`` timings and fails (exit 1) when the
main table takes 0.5 s or more.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import api, compare  # noqa: E402
from core.registry import open_database, store  # noqa: E402
from core.registry.models import RunStatus  # noqa: E402

LIMIT_S = 0.5


def seed(db_path: Path, runs: int, epochs: int, layers: int) -> None:
    db = open_database(db_path)
    now = time.time()
    run_rows, latest, history = [], [], []
    for i in range(1, runs + 1):
        lr, seed_ = [1e-3, 5e-4, 1e-4, 5e-5][i % 4], 42 + i % 5
        run_rows.append({
            "id": i, "experiment": "smoke", "variant": "corrected", "status": RunStatus.COMPLETED.value,
            "config_json": f'{{"epochs": {epochs}, "layers": {layers}, "lr": {lr}, "seed": {seed_}, "variant": "corrected"}}',
            "priority": 0, "created_at": now, "updated_at": now, "started_at": now, "finished_at": now + 60,
            "headline_key": "best_val_ppl", "headline_value": 10.0 + i % 7, "info_json": '{"params": 4000}',
            "cancel_requested": False,
        })
        for epoch in range(1, epochs + 1):
            for key, value in (("train_loss", 3.0 / epoch), ("val_loss", 3.1 / epoch), ("val_ppl", 10 + 20 / epoch)):
                history.append({"run_id": i, "kind": "epoch", "stage": 0, "epoch": epoch, "layer": None, "key": key,
                                "value": value, "is_nan": False, "ts": now})
            for layer in range(1, layers + 1):
                history.append({"run_id": i, "kind": "layer", "stage": 0, "epoch": epoch, "layer": layer, "key": "loss",
                                "value": 1.0 / (epoch + layer), "is_nan": False, "ts": now})
        for key, last, lo, hi in (("train_loss", 0.1, 0.1, 3.0), ("val_loss", 0.11, 0.11, 3.1),
                                  ("val_ppl", 10.7, 10.6, 30.0), ("best_val_ppl", 10.6, 10.6, 10.6),
                                  ("best_epoch", 28.0, 28.0, 28.0), ("params", 4000.0, 4000.0, 4000.0)):
            latest.append({"run_id": i, "stage": 0, "key": key, "last": last + i % 7, "last_epoch": epochs,
                           "min": lo + i % 7, "min_epoch": epochs - 2, "max": hi, "max_epoch": 1, "count": epochs,
                           "ts": now})
    with db.write() as conn:
        conn.execute(store.RUN.insert(), run_rows)
        conn.execute(store.LATEST.insert(), latest)
        conn.execute(store.METRIC.insert(), history)
        conn.execute(store.TAG.insert(), [{"run_id": i, "tag": "bench"} for i in range(1, runs + 1)])
    db.dispose()


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.db"
        seed(path, args.runs, args.epochs, args.layers)
        db = open_database(path)
        n_hist = args.runs * args.epochs * (3 + args.layers)

        def main_table():
            records = api.list_records(db, experiment="smoke")
            table = compare.runs_table(records, baseline=records[-1]["id"])
            return table, compare.to_markdown([table])

        def aggregated():
            records = api.list_records(db, tag="bench")
            return compare.aggregate_table(records)

        t_main, (table, _) = timed(main_table, args.repeat)
        t_agg, agg = timed(aggregated, args.repeat)
        db.dispose()
    assert len(table.rows) == args.runs
    print(f"registry: {args.runs} runs, {n_hist:,} history rows (not read)")
    print(f"compare --experiment (runs table + markdown, {len(table.rows)} rows, "
          f"{len(table.columns)} columns): {t_main * 1000:.0f} ms (limit {LIMIT_S * 1000:.0f} ms)")
    print(f"compare --tag (mean ± std over seeds, {len(agg.rows)} groups): {t_agg * 1000:.0f} ms")
    if t_main >= LIMIT_S:
        print("FAIL: the main comparison table is too slow", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
