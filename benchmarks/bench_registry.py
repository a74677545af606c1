"""Registry benchmark: ingest rate vs MLflow, emit→read latency, ``hrm ls --json``, ``hrm run`` → first event.

    python benchmarks/bench_registry.py [--runs 200] [--epochs 50] [--layers 8] [--skip-mlflow]

Workload (the issue's): 200 runs × 50 epochs × 8 per-layer metrics, each epoch's rows arriving
as one event, the way a live worker sends them (one ``RegistryEmitter.layers`` call per epoch,
one committed transaction each). The same workload goes through MLflow's ``log_batch`` per
epoch on a SQLite store in the same run (``pip install -e .[bench]``), and the ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import api  # noqa: E402
from core.registry import open_database, store  # noqa: E402
from core.registry.emitter import RegistryEmitter  # noqa: E402


def ingest_hrm(db_path: Path, runs: int, epochs: int, layers: int) -> tuple[float, list[int]]:
    db = open_database(db_path)
    ids = [store.create_run(db, "smoke", {"epochs": epochs}, headline_key="best_val_ppl").id for _ in range(runs)]
    start = time.perf_counter()
    for run_id in ids:
        emit = RegistryEmitter(db, run_id)
        for epoch in range(1, epochs + 1):
            emit.layers(epoch, {layer: {"loss": 1.0 / (epoch + layer)} for layer in range(1, layers + 1)})
    elapsed = time.perf_counter() - start
    # Give every run a few run-level metrics too, so `ls` has latest values to show.
    for run_id in ids:
        RegistryEmitter(db, run_id).epoch(epochs, {"train_loss": 2.0, "val_loss": 2.1, "val_ppl": 8.2}, total=epochs)
    db.dispose()
    return runs * epochs * layers / elapsed, ids


def ingest_mlflow(tmp: Path, runs: int, epochs: int, layers: int) -> float | None:
    try:
        import logging

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError:
        return None
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.create_experiment("bench")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(runs)]
    start = time.perf_counter()
    for run_id in run_ids:
        for epoch in range(1, epochs + 1):
            ts = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(f"layer{layer}/loss", 1.0 / (epoch + layer), ts, epoch)
                                              for layer in range(1, layers + 1)])
    return runs * epochs * layers / (time.perf_counter() - start)


def emit_to_read_latency(db_path: Path, events: int = 200) -> list[float]:
    """Writer emits an epoch every 5 ms; a reader on its own connection polls for it."""
    writer_db, reader_db = open_database(db_path), open_database(db_path)
    run_id = store.create_run(writer_db, "smoke", {}).id
    emitted: dict[int, float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def reader() -> None:
        after = 0
        while not done.is_set() or len(latencies) < events:
            for row in store.metrics(reader_db, run_id, after_id=after):
                after = row["id"]
                latencies.append(time.perf_counter() - emitted[int(row["epoch"])])
            time.sleep(0.0005)

    thread = threading.Thread(target=reader)
    thread.start()
    emit = RegistryEmitter(writer_db, run_id)
    for epoch in range(1, events + 1):
        emitted[epoch] = time.perf_counter()
        emit.epoch(epoch, {"val_ppl": 10.0})
        time.sleep(0.005)
    done.set()
    thread.join(timeout=10)
    return latencies


def time_ls_json(db_path: Path, repeats: int = 20) -> tuple[float, float]:
    """(in-process median ms, whole `hrm ls --json` command median ms)."""
    db = open_database(db_path)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        json.dumps({"schema": api.RUNS_JSON_SCHEMA, "runs": api.list_records(db)}, default=str)
        samples.append((time.perf_counter() - start) * 1000)
    hrm = [sys.executable, "-m", "hrm_tui", "--db", str(db_path), "ls", "--json"]
    cli = []
    for _ in range(3):
        start = time.perf_counter()
        out = subprocess.run(hrm, capture_output=True, text=True, cwd=ROOT, check=True).stdout
        cli.append((time.perf_counter() - start) * 1000)
    assert len(json.loads(out)["runs"]) > 0
    return statistics.median(samples), statistics.median(cli)


def time_to_first_event(tmp: Path, repeats: int = 3) -> list[float]:
    """`hrm run smoke` with a live scheduler → the run's first metric row is readable."""
    db_path = tmp / "first.db"
    db = open_database(db_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    scheduler = subprocess.Popen([sys.executable, "-m", "core.scheduler", "--db", str(db_path)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    try:
        while not api.scheduler_alive(db):
            time.sleep(0.05)
        results = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_path), "run", "smoke", "--epochs", "1"],
                                 capture_output=True, text=True, env=env, cwd=tmp, check=True).stdout
            run_id = int(out.strip().splitlines()[-1])
            while not store.metrics(db, run_id, limit=1):
                time.sleep(0.005)
            results.append(time.perf_counter() - start)
        return results
    finally:
        scheduler.terminate()
        scheduler.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = args.runs * args.epochs * args.layers
        print(f"workload: {args.runs} runs × {args.epochs} epochs × {args.layers} per-layer metrics = {rows:,} rows, "
              f"one event (transaction) per epoch")
        hrm_rate, _ = ingest_hrm(tmp / "runs.db", args.runs, args.epochs, args.layers)
        print(f"hrm registry ingest:   {hrm_rate:>10,.0f} rows/s")
        mlflow_rate = None if args.skip_mlflow else ingest_mlflow(tmp, args.runs, args.epochs, args.layers)
        if mlflow_rate:
            print(f"mlflow log_batch:      {mlflow_rate:>10,.0f} rows/s")
            print(f"ratio hrm / mlflow:    {hrm_rate / mlflow_rate:>10.1f}×   (target ≥ 20×)")
        else:
            print("mlflow: not installed (pip install -e '.[bench]') — ratio not measured")
        lat = sorted(emit_to_read_latency(tmp / "latency.db"))
        print(f"emit → readable:       p50 {lat[len(lat) // 2] * 1000:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.2f} ms "
              f"({len(lat)} events)")
        in_proc, cli = time_ls_json(tmp / "runs.db")
        print(f"hrm ls --json ({args.runs} runs + latest metrics): {in_proc:.1f} ms in-process (target < 50 ms), "
              f"{cli:.0f} ms as a whole command incl. Python start-up")
        first = time_to_first_event(tmp)
        print(f"hrm run → first event: " + ", ".join(f"{t:.2f} s" for t in first) + " (scheduler alive, smoke)")


if __name__ == "__main__":
    main()
