"""Registry benchmark: worker-pattern ingest vs MLflow and raw sqlite3, emit→read latency, ``hrm ls --json``, ``hrm run`` → first event.

    python benchmarks/bench_registry.py [--runs 200] [--epochs 50] [--layers 8] [--skip-mlflow]

Ingest workload (issue #13's real worker pattern): runs × epochs, each epoch sent the way a live
worker sends it through its numbered ``RegistryEmitter`` (spool path set, so every event also claims
its sequence number): one ``epoch`` event carrying the run-level metrics (train_loss, val_loss,
val_ppl: metric rows + latest-metric upkeep + the run's progress) and the per-layer losses
(``emit.epoch(..., layers=...)``), one committed transaction per epoch. The former pattern (an
``epoch`` event, then a ``layers`` event: two commits) is measured alongside for comparison.
Measured in both durability modes (``HRM_DURABILITY`` normal and full), against two baselines in
the same run, all timed run by run in rotating order (a shared machine's load falls on all alike),
as wall-clock epochs/s and as CPU µs per epoch (the steadier figure on a loaded machine): MLflow's ``log_batch`` of the same numbers
once per epoch on its SQLite store (``pip install -e .[bench]``; SQLite's default
``synchronous=FULL``, so hrm's ``full`` is the equal-durability comparison), and raw ``sqlite3``
in WAL mode inserting the same rows with one commit per epoch at the same ``synchronous`` setting.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.registry import open_database, store  # noqa: E402
from core.registry.emitter import RegistryEmitter  # noqa: E402


RUN_LEVEL = ("train_loss", "val_loss", "val_ppl")


def _epoch_values(epoch: int, layers: int) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    run_level = {"train_loss": 2.0 / epoch, "val_loss": 2.1 / epoch, "val_ppl": 8.0 + 1.0 / epoch}
    return run_level, {layer: {"loss": 1.0 / (epoch + layer)} for layer in range(1, layers + 1)}


# Each contender is set up once (untimed) and returns ``(one_run, close)``: ``one_run(i)`` ingests all
# epochs of its i-th run. The race below times the contenders run by run, in rotating order, so a
# neighbour's burst of load on the shared machine falls on all of them alike.
Contender = tuple[Callable[[int], None], Callable[[], None]]


def hrm_contender(db_path: Path, runs: int, epochs: int, layers: int, durability: str, *,
                  separate: bool = False) -> Contender:
    """The worker's numbered emitter: one committed event per epoch (``separate``: the former two,
    an epoch event and a layers event)."""
    os.environ["HRM_DURABILITY"] = durability
    try:
        db = open_database(db_path)
    finally:
        os.environ.pop("HRM_DURABILITY", None)
    ids = [store.create_run(db, "smoke", {"epochs": epochs}, headline_key="best_val_ppl").id for _ in range(runs)]
    # Set up like the worker (once per run, before its first epoch); spools stay empty while the registry answers.
    emitters = [RegistryEmitter(db, run_id, spool_path=db_path.with_name(f"{db_path.stem}-spool-{run_id}.jsonl"))
                for run_id in ids]

    def one_run(index: int) -> None:
        emit = emitters[index]
        for epoch in range(1, epochs + 1):
            run_level, per_layer = _epoch_values(epoch, layers)
            if separate:
                emit.epoch(epoch, run_level, total=epochs)
                emit.layers(epoch, per_layer)
            else:
                emit.epoch(epoch, run_level, total=epochs, layers=per_layer)

    return one_run, db.dispose


def raw_sqlite_contender(db_path: Path, runs: int, epochs: int, layers: int, durability: str) -> Contender:
    """Plain ``sqlite3``: the same rows, WAL, one commit per epoch (the floor)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("CREATE TABLE metric (id INTEGER PRIMARY KEY, run_id INTEGER, kind TEXT, stage INTEGER, "
                 "epoch INTEGER, layer INTEGER, key TEXT, value REAL, is_nan INTEGER, ts REAL)")
    conn.execute("CREATE INDEX ix_metric_run_id_id ON metric (run_id, id)")
    sql = "INSERT INTO metric (run_id, kind, stage, epoch, layer, key, value, is_nan, ts) VALUES (?,?,?,?,?,?,?,?,?)"

    def one_run(index: int) -> None:
        run_id = index + 1
        for epoch in range(1, epochs + 1):
            run_level, per_layer = _epoch_values(epoch, layers)
            now = time.time()
            rows = [(run_id, "epoch", 0, epoch, None, k, v, 0, now) for k, v in run_level.items()]
            rows += [(run_id, "layer", 0, epoch, layer, k, v, 0, now)
                     for layer, values in per_layer.items() for k, v in values.items()]
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")

    return one_run, conn.close


def mlflow_contender(db_path: Path, runs: int, epochs: int, layers: int, durability: str) -> Contender | None:
    """MLflow: one ``log_batch`` of the epoch's numbers per epoch, on its SQLite store.

    ``full`` is MLflow as shipped (SQLite's rollback journal, ``synchronous=FULL``); ``normal`` puts
    its store in WAL + ``synchronous=NORMAL`` (a connect hook on SQLAlchemy's engines for its file
    only, removed on close), hrm's default, so both comparisons are at equal durability.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # not its "creating tables" lines
    try:
        import logging

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        logging.getLogger("alembic").setLevel(logging.ERROR)
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
    except ImportError:
        return None

    def wal_normal(dbapi_connection, _record) -> None:
        files = [row[2] for row in dbapi_connection.execute("PRAGMA database_list")]
        if str(db_path) in files:
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    if durability == "normal":
        event.listen(Engine, "connect", wal_normal)
    client = MlflowClient(tracking_uri=f"sqlite:///{db_path}")
    experiment = client.create_experiment("bench")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(runs)]

    def one_run(index: int) -> None:
        for epoch in range(1, epochs + 1):
            ts = int(time.time() * 1000)
            run_level, per_layer = _epoch_values(epoch, layers)
            batch = [Metric(k, v, ts, epoch) for k, v in run_level.items()]
            batch += [Metric(f"layer{layer}/{k}", v, ts, epoch) for layer, values in per_layer.items()
                      for k, v in values.items()]
            client.log_batch(run_ids[index], metrics=batch)

    def close() -> None:
        if durability == "normal":
            event.remove(Engine, "connect", wal_normal)

    return one_run, close


def ingest_race(tmp: Path, round_: int, mode: str, runs: int, mlflow_runs: int, epochs: int,
                layers: int, *, two_event: bool = True) -> dict[str, list[float]]:
    """{contender: [epochs, wall s, CPU s]} for one durability mode, timed run by run in rotating order.

    MLflow (``mlflow_runs`` > 0; it is ~100× slower) runs one of its runs after every
    ``runs // mlflow_runs`` rounds of the others, so it too is measured at the same moments.
    """
    contenders: dict[str, Contender] = {
        "hrm": hrm_contender(tmp / f"hrm-{mode}-{round_}.db", runs, epochs, layers, mode),
        "raw": raw_sqlite_contender(tmp / f"raw-{mode}-{round_}.db", runs, epochs, layers, mode),
    }
    if two_event:
        contenders["hrm 2-event"] = hrm_contender(tmp / f"hrm2-{mode}-{round_}.db", runs, epochs, layers, mode,
                                                  separate=True)
    mlflow = mlflow_contender(tmp / f"mlflow-{mode}-{round_}.db", mlflow_runs, epochs, layers, mode) \
        if mlflow_runs else None
    totals = {name: [0.0, 0.0, 0.0] for name in [*contenders, *(["mlflow"] if mlflow else [])]}

    def timed(name: str, one_run: Callable[[int], None], index: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        one_run(index)
        total = totals[name]
        total[0] += epochs
        total[1] += time.perf_counter() - wall
        total[2] += time.process_time() - cpu

    names = list(contenders)
    every = max(1, runs // mlflow_runs) if mlflow else 0
    try:
        for index in range(runs):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                timed(name, contenders[name][0], index)
            if mlflow and index % every == 0 and index // every < mlflow_runs:
                timed("mlflow", mlflow[0], index // every)
    finally:
        for _, close in [*contenders.values(), *([mlflow] if mlflow else [])]:
            close()
    return totals


def measure_ingest(tmp: Path, *, runs: int = 200, epochs: int = 50, layers: int = 8, rounds: int = 3,
                   mlflow: bool = True, two_event: bool = True) -> dict[str, list[float]]:
    """{"<contender> <mode>": [epochs, wall s, CPU s]} summed over ``rounds`` fresh rounds of both modes.

    ``full`` syncs every commit, so it runs a tenth of the runs; MLflow a tenth of those (a
    fortieth in ``full``). Contenders: ``hrm``, ``raw``, ``mlflow`` (when installed and asked for)
    and ``hrm 2-event`` (the former two-commit pattern, unless ``two_event`` is false).
    """
    totals: dict[str, list[float]] = {}
    for round_ in range(rounds):
        for mode in ("normal", "full"):
            mode_runs = runs if mode == "normal" else max(1, runs // 10)
            mlflow_runs = max(1, runs // (10 if mode == "normal" else 40)) if mlflow else 0
            race = ingest_race(tmp, round_, mode, mode_runs, mlflow_runs, epochs, layers, two_event=two_event)
            for name, (done, wall, cpu) in race.items():
                total = totals.setdefault(f"{name} {mode}", [0.0, 0.0, 0.0])
                total[0] += done
                total[1] += wall
                total[2] += cpu
    return totals


def ingest_rates(totals: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, float]]:
    """(epochs per wall second, CPU µs per epoch) of each contender in :func:`measure_ingest`'s totals."""
    rate = {name: done / wall for name, (done, wall, _) in totals.items()}
    cpu_us = {name: cpu / done * 1e6 for name, (done, _, cpu) in totals.items()}
    return rate, cpu_us


_POLLING_READER = """
import sqlite3, sys, time
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
while True:
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM metric WHERE run_id = 1 AND id > 0").fetchall()
    time.sleep(0.01)
    conn.execute("COMMIT")
"""


def wal_under_burst(db_path: Path, events: int = 3_000, layers: int = 64) -> tuple[float, float]:
    """(peak WAL MB, final WAL MB) while one writer bursts and three dashboards poll without pause.

    With some read transaction nearly always open, SQLite's passive checkpoints never reset the
    WAL; hrm truncates it once it passes ``WAL_TRUNCATE_ABOVE`` (it grew to hundreds of MB before).
    """
    db = open_database(db_path)
    run_id = store.create_run(db, "smoke", {}).id
    readers = [subprocess.Popen([sys.executable, "-c", _POLLING_READER, str(db_path)]) for _ in range(3)]
    wal, peak = Path(f"{db_path}-wal"), 0.0
    try:
        time.sleep(0.5)
        emit = RegistryEmitter(db, run_id)
        for epoch in range(1, events + 1):
            emit.layers(epoch, {layer: {"loss": 1.0, "norm": 2.0} for layer in range(1, layers + 1)})
            if epoch % 25 == 0 and wal.exists():
                peak = max(peak, wal.stat().st_size / 2**20)
    finally:
        for reader in readers:
            reader.kill()
            reader.wait()
    db.dispose()
    return peak, (wal.stat().st_size / 2**20 if wal.exists() else 0.0)


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
    from core import api
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
    from core import api
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
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds, fresh databases each (summed)")
    parser.add_argument("--ingest-only", action="store_true", help="stop after the ingest and WAL figures")
    parser.add_argument("--tmp", default=None, help="folder for the scratch databases (default: the system's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        print(f"workload: {args.runs} runs × {args.epochs} epochs ({max(1, args.runs // 10)} runs in full); "
              f"each epoch = one numbered epoch event ({len(RUN_LEVEL)} run-level metrics, latest-metric upkeep, "
              f"progress, {args.layers} per-layer losses), one committed transaction; "
              f"'hrm 2-event' = the former epoch event + layers event, two commits")
        totals = measure_ingest(tmp, runs=args.runs, epochs=args.epochs, layers=args.layers, rounds=args.rounds,
                                mlflow=not args.skip_mlflow)
        rate, cpu_us = ingest_rates(totals)
        rows_per_epoch = len(RUN_LEVEL) + args.layers
        for name in totals:
            print(f"{name + ' ingest:':<28}{rate[name]:>10,.0f} epochs/s ({rate[name] * rows_per_epoch:>9,.0f} rows/s), "
                  f"{cpu_us[name]:8.1f} CPU µs/epoch")
        for mode in ("normal", "full"):
            hrm, raw, two = f"hrm {mode}", f"raw {mode}", f"hrm 2-event {mode}"
            print(f"hrm {mode} / raw sqlite3 WAL {mode}: {rate[hrm] / rate[raw] * 100:5.1f} % of its epochs/s, "
                  f"{cpu_us[raw] / cpu_us[hrm] * 100:5.1f} % by CPU   (target ≥ 50 %; one commit per epoch each; "
                  f"the 2-event pattern: {rate[two] / rate[raw] * 100:.1f} %, {cpu_us[raw] / cpu_us[two] * 100:.1f} % by CPU)")
        for mode in ("normal", "full"):
            if f"mlflow {mode}" in rate:
                ratio, by_cpu = rate[f"hrm {mode}"] / rate[f"mlflow {mode}"], cpu_us[f"mlflow {mode}"] / cpu_us[f"hrm {mode}"]
                print(f"ratio hrm {mode} / mlflow {mode} log_batch (equal durability): {ratio:6.1f}× epochs/s, "
                      f"{by_cpu:6.1f}× by CPU   (target ≥ 30×)")
        if not args.skip_mlflow and not any(name.startswith("mlflow") for name in totals):
            print("mlflow: not installed (pip install -e '.[bench]') — ratio not measured")
        peak, final = wal_under_burst(tmp / "burst.db")
        print(f"WAL under a write burst with 3 polling readers: peak {peak:.1f} MB, after {final:.1f} MB")
        if args.ingest_only:
            return
        lat = sorted(emit_to_read_latency(tmp / "latency.db"))
        print(f"emit → readable:       p50 {lat[len(lat) // 2] * 1000:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.2f} ms "
              f"({len(lat)} events)")
        in_proc, cli = time_ls_json(tmp / "hrm-normal-0.db")
        print(f"hrm ls --json ({args.runs} runs + latest metrics): {in_proc:.1f} ms in-process (target < 50 ms), "
              f"{cli:.0f} ms as a whole command incl. Python start-up")
        first = time_to_first_event(tmp)
        print("hrm run → first event: " + ", ".join(f"{t:.2f} s" for t in first) + " (scheduler alive, smoke)")


if __name__ == "__main__":
    main()
