"""Time ``hrm-tui`` start-up on a large registry, and measure what it costs while nobody touches it.

Seeds a SQLite registry with N runs and a few million metric rows through direct ``executemany``
(seconds, not minutes), then measures, with ``App.run_test``:

* first render: the app's first screen is painted (the table may still be empty);
* first rows shown: the first poll (the newest 200 runs) is on screen;
* all runs loaded: the full read is merged and the table holds every run;
* scrolling: the cost of a page-down and of an ``end`` on the full table;
* a poll tick with nothing new (the steady-state cost of watching the registry);
* typing a filter over every run, and opening a run view (its whole metric history).

    python benchmarks/bench_tui.py [--runs 10000] [--epochs 30] [--layers 4] [--db PATH]

``--idle`` measures instead, in a real terminal (tmux, 120×40), with a real scheduler training a real
``smoke`` run beside a registry of ``--runs`` finished runs: rows on screen after launch; the CPU
the dashboard uses over 10 s (``/proc/PID/stat``) on the runs list and on the run view of the
training run; and how long a registry event (the run's next epoch) takes to reach the screen.
``--before REV`` runs the same measurement on another revision of the dashboard (extracted with
``git archive``) in the same session, so the figures print side by side:

    python benchmarks/bench_tui.py --idle --runs 200 --before 378c452
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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
    names = ["id", "experiment", "variant", "config_json", "status", "priority", "created_at", "updated_at",
             "started_at", "finished_at", "host", "pid", "gpu", "cancel_requested", "info_json", "stage", "epoch",
             "total_epochs", "headline_key", "headline_value"]
    defaults = _column_defaults("run", names)  # columns newer schema versions added, at their defaults
    con.executemany(
        f"INSERT INTO run ({', '.join(names + list(defaults))}) VALUES ({', '.join('?' * (len(names) + len(defaults)))})",
        [row + tuple(defaults.values()) for row in run_rows])
    con.executemany("INSERT INTO latestmetric (run_id, stage, key, last, last_epoch, min, min_epoch, max, max_epoch,"
                    " count, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)", latest_rows)
    con.executemany("INSERT INTO metric (run_id, kind, stage, epoch, layer, key, value, is_nan, ts)"
                    " VALUES (?,?,?,?,?,?,?,?,?)", metric_rows)
    con.commit()
    con.close()
    return len(metric_rows)


def _column_defaults(table: str, given: list[str]) -> dict[str, object]:
    """Scalar defaults of the table's other columns (the registry declares them client-side)."""
    from sqlmodel import SQLModel

    import core.registry.models  # noqa: F401  (declares the tables)

    out = {}
    for column in SQLModel.metadata.tables[table].columns:
        if column.name not in given and column.default is not None and column.default.is_scalar:
            out[column.name] = column.default.arg
    return out


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


# --- idle cost in a real terminal ---------------------------------------------------------------

IDLE_TARGETS = {"runs list": 2.0, "run view": 5.0}
"""Idle CPU ceilings, % of one core (issue #13)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def _wait_for(session: str, pattern: str, timeout: float) -> float | None:
    """Seconds until ``pattern`` (a regex) is on screen, or None."""
    t0 = time.perf_counter()
    regex = re.compile(pattern, re.MULTILINE)
    while time.perf_counter() - t0 < timeout:
        if regex.search(_screen(session)):
            return time.perf_counter() - t0
        time.sleep(0.02)
    return None


def _cpu_percent(pid: int, seconds: float) -> float:
    c0, t0 = _cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return 100 * (_cpu_seconds(pid) - c0) / (time.perf_counter() - t0)


def _epoch(path: Path, run_id: int) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT epoch FROM run WHERE id = ?", (run_id,)).fetchone()[0] or 0
    finally:
        con.close()


def _event_to_screen(session: str, path: Path, run_id: int, pattern: str, samples: int = 3) -> float | None:
    """Worst latency from the worker's epoch commit to the screen showing that epoch (``pattern`` % epoch)."""
    worst = 0.0
    for _ in range(samples):
        start = _epoch(path, run_id)
        deadline = time.perf_counter() + 30
        while (epoch := _epoch(path, run_id)) == start:
            if time.perf_counter() > deadline:
                return None
            time.sleep(0.005)
        committed = time.perf_counter()
        seen = _wait_for(session, pattern % epoch, timeout=10)
        if seen is None:
            return None
        worst = max(worst, time.perf_counter() - committed)
    return worst


def _launch(command: str, env: dict[str, str]) -> tuple[str, int]:
    """Start ``command`` in a new detached 120×40 tmux session; (session name, the pane's pid)."""
    session = f"hrm-bench-{os.getpid()}-{time.monotonic_ns()}"
    _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40",
          *(a for k, v in env.items() for a in ("-e", f"{k}={v}")), command)
    return session, int(_tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())


def idle_session(tree: Path, path: Path, run_id: int, seconds: float = 10.0, samples: int = 3) -> dict[str, float | None]:
    """Start the dashboard of ``tree`` in tmux over ``path`` and measure it (see the module docstring)."""
    command = f"cd {shlex.quote(str(tree))} && exec {shlex.quote(sys.executable)} -m hrm_tui.tui.app --db {shlex.quote(str(path))}"
    session, pid = _launch(command, {"PYTHONPATH": str(tree), "TERM": "xterm-256color"})
    out: dict[str, float | None] = {}
    try:
        out["rows on screen after launch (s)"] = _wait_for(session, rf"^\W*{run_id} smoke", timeout=20)
        time.sleep(3)  # the full read and the first repaint are start-up, not idling
        out["runs list: idle CPU (% of a core)"] = _cpu_percent(pid, seconds)
        out["runs list: epoch → screen (s)"] = _event_to_screen(session, path, run_id, r"^\W*%s\b.*ep %%d/" % run_id,
                                                                samples)
        _tmux("send-keys", "-t", session, "Home", "Enter")
        _wait_for(session, rf"run {run_id} smoke", timeout=10)
        time.sleep(3)
        out["run view: idle CPU (% of a core)"] = _cpu_percent(pid, seconds)
        out["run view: epoch → screen (s)"] = _event_to_screen(session, path, run_id, rf"run {run_id} smoke.* ep %d/",
                                                               samples)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return out


_BARE_TEXTUAL = """
from textual.app import App
from textual.widgets import Static

class Bare(App):
    def compose(self):
        yield Static("bare textual app ready")

Bare().run()
"""


def bare_textual(seconds: float = 10.0) -> dict[str, float | None]:
    """The floor under the dashboard's figures: an empty Textual app (one static line) in the same
    kind of tmux terminal, its first paint after launch (s) and its idle CPU (% of a core)."""
    session, pid = _launch(f"exec {shlex.quote(sys.executable)} -c {shlex.quote(_BARE_TEXTUAL)}",
                           {"TERM": "xterm-256color"})
    try:
        shown = _wait_for(session, "bare textual app ready", timeout=20)
        time.sleep(3)
        return {"on screen after launch (s)": shown, "idle CPU (% of a core)": _cpu_percent(pid, seconds)}
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def measure_idle(runs: int = 200, epochs: int = 50, layers: int = 4, *, before: str | None = None,
                 seconds: float = 10.0, samples: int = 3) -> dict[str, dict[str, float | None]]:
    """{tree name: :func:`idle_session`'s figures} for this checkout ("now") and, with ``before``, another
    revision (a git revision or a directory holding a checkout of it), over one registry of ``runs``
    finished runs plus a ``smoke`` run a real scheduler trains (one epoch every 0.7 s)."""
    from core import api

    workdir = Path(tempfile.mkdtemp(prefix="hrm-bench-idle-"))
    path = workdir / "runs.db"
    seed(path, runs=runs, epochs=epochs, layers=layers, active=0, queued=0)
    db = api.open_registry(str(path))
    run_id = api.submit(db, "smoke", {"epochs": 10_000, "sleep": 0.7, "layers": layers}, priority=10).id
    with (workdir / "scheduler.log").open("wb") as log:
        scheduler = subprocess.Popen([sys.executable, "-m", "core.scheduler", "--db", str(path), "--max-parallel",
                                      "1", "--gpus", ""], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    trees = {"now": ROOT}
    if before and Path(before).is_dir():  # a checkout of the other revision
        trees = {f"before ({Path(before).name})": Path(before), **trees}
    elif before:
        other = workdir / "before"
        other.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", before], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(other)], input=archive.stdout, check=True)
        trees = {f"before ({before})": other, **trees}
    try:
        deadline = time.monotonic() + 120
        while _epoch(path, run_id) < 2:
            if time.monotonic() > deadline or scheduler.poll() is not None:
                raise RuntimeError(f"the smoke run never trained: see {workdir / 'scheduler.log'}")
            time.sleep(0.1)
        return {name: idle_session(tree, path, run_id, seconds, samples) for name, tree in trees.items()}
    finally:
        api.cancel(db, run_id)  # the worker outlives its scheduler by design: stop the training run first
        deadline = time.monotonic() + 30
        while api.require_run(db, run_id).status not in ("cancelled", "completed", "failed", "lost") \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(scheduler.pid, signal.SIGTERM)
        scheduler.wait(timeout=30)
        db.dispose()


def idle(args: argparse.Namespace) -> None:
    results = measure_idle(args.runs, args.epochs, args.layers, before=args.before)
    print(f"idle dashboard over {args.runs:,} runs + 1 training smoke run (load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs):")
    names = list(results)
    print(f"  {'':<36}" + "".join(f"{n:>22}" for n in names) + "   target")
    for key in results[names[-1]]:
        target = next((f"≤ {v:g} %" for k, v in IDLE_TARGETS.items() if key.startswith(k) and "CPU" in key),
                      "≤ 1 s" if "(s)" in key else "")
        cells = "".join(f"{'—' if results[n].get(key) is None else format(results[n][key], '.2f'):>22}" for n in names)
        print(f"  {key:<36}{cells}   {target}")
    floor = bare_textual()
    print("  an empty Textual app in the same terminal: " + ", ".join(
        f"{k} {'—' if v is None else format(v, '.2f')}" for k, v in floor.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--db", help="reuse (or create) this registry instead of a temporary one")
    parser.add_argument("--repeat", type=int, default=3, help="start the app this many times; report the best")
    parser.add_argument("--idle", action="store_true", help="measure idle CPU and event latency in tmux instead")
    parser.add_argument("--before", help="with --idle: also measure this git revision's dashboard (or a directory "
                                         "holding a checkout of it)")
    args = parser.parse_args()
    if args.idle:
        idle(args)
        return
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
