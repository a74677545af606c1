"""Whole-process start-up cost of ``hrm`` commands, as ratios to a bare ``python -c pass``.

    python benchmarks/bench_cli.py [--repeats 15] [--runs 200] [--many 20000]

Issue #13's targets: ``hrm ls --json`` (200 runs) and ``hrm show RUN --json`` <= 4x a bare
interpreter start of the same Python; ``hrm --help`` and ``hrm experiments`` <= 6x; ``hrm ls --json``
over 20k runs < 2x its 200-run cost. The figure is CPU seconds (user + system) of each whole
process, from ``os.wait4``: wall time on a shared machine swings with other load, CPU time much
less. Commands are interleaved (every repeat runs each command once, in a shuffled order) and the
median is reported, so a burst of load hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {  # case -> (reference case, largest ratio allowed)
    "ls --json (200 runs)": ("python -c pass", 4.0),
    "show RUN --json": ("python -c pass", 4.0),
    "--help": ("python -c pass", 6.0),
    "experiments": ("python -c pass", 6.0),
    "ls --json (20k runs)": ("ls --json (200 runs)", 2.0),
    "ls (20k runs, table)": ("ls (200 runs, table)", 2.0),
}


def fill_registry(path: Path, runs: int, *, epochs: int = 10, layers: int = 4) -> int:
    """A registry of ``runs`` finished runs (tags, latest metrics) plus one run with a full history.

    Bulk rows go in through the registry's own tables in one transaction; the detailed run goes
    through the store functions a worker uses. Returns the detailed run's id.
    """
    from core.registry import open_database, store
    from core.registry.models import LatestMetric, Run, RunTag

    db = open_database(path, create=True)
    now = time.time()
    with db.write() as conn:
        conn.execute(Run.__table__.insert(), [
            {"experiment": "smoke", "variant": "corrected", "config_json": f'{{"epochs": 3, "seed": {i}}}',
             "status": "completed", "priority": 0, "created_at": now - runs + i, "updated_at": now - runs + i,
             "started_at": now - runs + i, "finished_at": now - runs + i + 5, "info_json": "{}",
             "headline_key": "best_val_ppl", "headline_value": 9.0 + (i % 7) / 10, "epoch": 3, "total_epochs": 3}
            for i in range(runs)])
        ids = [r for (r,) in conn.exec_driver_sql("SELECT id FROM run ORDER BY id")]
        conn.execute(RunTag.__table__.insert(), [{"run_id": i, "tag": f"group-{i % 10}"} for i in ids])
        conn.execute(LatestMetric.__table__.insert(), [
            {"run_id": i, "stage": 0, "key": "val_ppl", "last": 9.5, "last_epoch": 3, "min": 9.0, "min_epoch": 2,
             "max": 12.0, "max_epoch": 1, "count": 3, "ts": now} for i in ids])
    run = store.create_run(db, "smoke", {"epochs": epochs, "layers": layers}, tags=["detail"],
                           headline_key="best_val_ppl")
    for epoch in range(1, epochs + 1):
        store.append_metrics(db, run.id, "epoch", {"train_loss": 2 / epoch, "val_loss": 2.1 / epoch,
                                                   "val_ppl": 8 + 1 / epoch}, epoch=epoch, total=epochs)
        store.append_metrics(db, run.id, "layer", {k: {"loss": 1 / (epoch + k)} for k in range(1, layers + 1)},
                             epoch=epoch)
    db.dispose()
    return run.id


def cpu_seconds(argv: list[str], env: dict[str, str]) -> float:
    """User + system CPU seconds of one whole process (output discarded)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-500:]}")
    return usage.ru_utime + usage.ru_stime


def hrm_argv() -> list[str]:
    script = Path(sys.executable).parent / "hrm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hrm_tui"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--many", type=int, default=20_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        small, large = Path(tmp) / "small.db", Path(tmp) / "large.db"
        detail = fill_registry(small, args.runs)
        fill_registry(large, args.many)
        hrm = hrm_argv()
        # byte code as an installed tool has it (written once into the git-ignored __pycache__
        # folders), even where the shell sets PYTHONDONTWRITEBYTECODE; a private catalog cache
        env = {**os.environ, "COLUMNS": "120", "HRM_DB": str(small), "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        for name in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "HRM_NO_CACHE"):
            env.pop(name, None)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "ls --json (200 runs)": [*hrm, "--db", str(small), "ls", "--json"],
            "show RUN --json": [*hrm, "--db", str(small), "show", str(detail), "--json"],
            "--help": [*hrm, "--help"],
            "experiments": [*hrm, "experiments"],
            "ls (200 runs, table)": [*hrm, "--db", str(small), "ls"],
            "ls --json (20k runs)": [*hrm, "--db", str(large), "ls", "--json"],
            "ls (20k runs, table)": [*hrm, "--db", str(large), "ls"],
            "ls --json --all (200 runs)": [*hrm, "--db", str(small), "ls", "--json", "--all"],
        }
        for _ in range(2):  # compile byte code, fill the catalog cache, warm the page cache
            for argv in cases.values():
                cpu_seconds(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        order = list(cases)
        for _ in range(args.repeats):
            random.shuffle(order)
            for name in order:
                samples[name].append(cpu_seconds(cases[name], env))

    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"CPU seconds per whole process, median of {args.repeats} interleaved repeats ({sys.executable})")
    print(f"{'command':34} {'CPU s':>8} {'x bare':>8}   target")
    failed = []
    for name, value in median.items():
        line = f"{name:34} {value:8.3f} {value / median['python -c pass']:8.2f}"
        if name in TARGETS:
            ref, limit = TARGETS[name]
            ratio = value / median[ref]
            ok = ratio <= limit
            failed += [] if ok else [name]
            line += f"   {ratio:.2f}x {ref} (<= {limit:g}x) {'ok' if ok else 'MISSED'}"
        print(line)
    if failed:
        print(f"missed: {', '.join(failed)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
