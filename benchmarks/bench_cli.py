"""Whole-process start-up cost of ``hrm`` commands, as ratios to a bare ``python -c pass``.

    python benchmarks/bench_cli.py [--repeats 15] [--runs 200] [--many 20000]

Issue #13's targets: ``hrm ls --json`` (200 runs) and ``hrm show RUN --json`` <= 4x a bare
interpreter start of the same Python; ``hrm --help`` and ``hrm experiments`` <= 6x; ``hrm ls --json``
over 20k runs < 2x its 200-run cost, and so ``hrm ls`` (the table: it shows the newest 50, which is
counted too) and ``hrm compare -e smoke --last 50`` (the same 50 runs picked out of 20k). The figure is CPU seconds (user + system) of each whole
process, from ``os.wait4``: wall time on a shared machine swings with other load, CPU time much
less. Commands are interleaved (every repeat runs each command once, in a shuffled order) and the
median is reported, so a burst of load hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import BARE_PYTHON, hrm_argv, interleaved_cpu  # noqa: E402

TARGETS = {  # case -> (reference case, largest ratio allowed)
    "ls --json (200 runs)": ("python -c pass", 4.0),
    "show RUN --json": ("python -c pass", 4.0),
    "--help": ("python -c pass", 6.0),
    "experiments": ("python -c pass", 6.0),
    "ls --json (20k runs)": ("ls --json (200 runs)", 2.0),
    "ls (20k runs, table)": ("ls (200 runs, table)", 2.0),
    "compare -e smoke --last 50 (20k runs)": ("compare -e smoke --last 50 (200 runs)", 2.0),
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


@dataclass
class CliFigures:
    """What :func:`measure` found: median CPU seconds per case, and how many runs ``hrm ls`` listed."""

    medians: dict[str, float]
    repeats: int
    runs: int
    many: int
    listed_table: int | None = None  # data rows of a plain `hrm ls` (table) on the ``runs`` registry
    listed_json: int | None = None  # records of a plain `hrm ls --json` on it

    def ratio(self, case: str) -> float:
        """The case's median over its reference's (``TARGETS``), or over bare python."""
        reference = TARGETS.get(case, (BARE, 0.0))[0]
        return self.medians[case] / self.medians[reference]


BARE = "python -c pass"
TABLE_ROW = re.compile(r"^\s*\d+\s+smoke\s", re.MULTILINE)


def _cases(hrm: list[str], small: Path, large: Path | None, detail: int) -> dict[str, list[str]]:
    cases = {
        BARE: list(BARE_PYTHON),
        "ls --json (200 runs)": [*hrm, "--db", str(small), "ls", "--json"],
        "show RUN --json": [*hrm, "--db", str(small), "show", str(detail), "--json"],
        "--help": [*hrm, "--help"],
        "experiments": [*hrm, "experiments"],
        "ls (200 runs, table)": [*hrm, "--db", str(small), "ls"],
        "ls --json --all (200 runs)": [*hrm, "--db", str(small), "ls", "--json", "--all"],
        "compare -e smoke --last 50 (200 runs)": [*hrm, "--db", str(small), "compare", "-e", "smoke", "--last", "50"],
    }
    if large is not None:
        cases |= {
            "ls --json (20k runs)": [*hrm, "--db", str(large), "ls", "--json"],
            "ls (20k runs, table)": [*hrm, "--db", str(large), "ls"],
            "compare -e smoke --last 50 (20k runs)": [*hrm, "--db", str(large), "compare", "-e", "smoke", "--last", "50"],
        }
    return cases


def measure(repeats: int = 15, runs: int = 200, many: int | None = 20_000) -> CliFigures:
    """Median CPU seconds of every case (``many=None``: skip the large registry and its cases).

    Also counts what a plain ``hrm ls`` and ``hrm ls --json`` list on the ``runs`` registry (the
    default page is the newest 50).
    """
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        small = Path(tmp) / "small.db"
        large = Path(tmp) / "large.db" if many else None
        detail = fill_registry(small, runs)
        if large is not None:
            fill_registry(large, many)
        hrm = hrm_argv()
        # byte code as an installed tool has it (written once into the git-ignored __pycache__
        # folders), even where the shell sets PYTHONDONTWRITEBYTECODE; a private catalog cache
        env = {**os.environ, "COLUMNS": "120", "HRM_DB": str(small), "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        for name in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "HRM_NO_CACHE"):
            env.pop(name, None)
        cases = _cases(hrm, small, large, detail)
        samples = interleaved_cpu(cases, env, repeats)
        table = subprocess.run(cases["ls (200 runs, table)"], env=env, capture_output=True, text=True, check=True)
        listed = subprocess.run(cases["ls --json (200 runs)"], env=env, capture_output=True, text=True, check=True)
    return CliFigures(medians={name: statistics.median(values) for name, values in samples.items()},
                      repeats=repeats, runs=runs, many=many or 0, listed_table=len(TABLE_ROW.findall(table.stdout)),
                      listed_json=len(json.loads(listed.stdout)["runs"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--many", type=int, default=20_000)
    args = parser.parse_args()

    figures = measure(args.repeats, args.runs, args.many)
    median = figures.medians
    print(f"CPU seconds per whole process, median of {args.repeats} interleaved repeats ({sys.executable})")
    print(f"{'command':40} {'CPU s':>8} {'x bare':>8}   target")
    failed = []
    for name, value in median.items():
        line = f"{name:40} {value:8.3f} {value / median[BARE]:8.2f}"
        if name in TARGETS:
            ref, limit = TARGETS[name]
            ratio = figures.ratio(name)
            ok = ratio <= limit
            failed += [] if ok else [name]
            line += f"   {ratio:.2f}x {ref} (<= {limit:g}x) {'ok' if ok else 'MISSED'}"
        print(line)
    print(f"plain `hrm ls` of {args.runs} runs lists {figures.listed_table} (table), {figures.listed_json} (--json); "
          f"target: the newest 50")
    if failed:
        print(f"missed: {', '.join(failed)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
