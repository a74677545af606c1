"""Seeded registries and pinned clocks for the dashboard's tests (``tests/test_tui_*.py``).

Runs are created through ``core.api.submit`` and driven through the store's own transitions;
metrics come from ``RegistryEmitter``, the worker's writer. Timestamps are then pinned so that
elapsed times, log times and snapshots never drift.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from sqlalchemy import update

from core import api
from core.registry import RunStatus, open_database, store
from core.registry.emitter import RegistryEmitter

T0 = 1_700_000_000.0
"""Runs were created from here on, one minute apart."""
NOW = T0 + 3_600.0
"""The pinned dashboard clock."""
SIZE = (120, 40)
"""The terminal the pilot tests run in, unless a test is about a small one."""


def frozen_clock() -> float:
    return NOW


def emit_epochs(db, run_id: int, epochs: range, *, stage: int = 0, total: int, layers: int = 4, offset: float = 0.0):
    """Smoke-like curves: a decaying loss, per-layer losses, written as the worker writes them."""
    emitter = RegistryEmitter(db, run_id)
    for epoch in epochs:
        loss = 2.0 + 3.0 * math.exp(-0.5 * epoch) + 0.1 * stage + offset
        emitter.epoch(epoch, {"train_loss": loss, "val_loss": loss + 0.05, "val_ppl": math.exp(loss + 0.05)},
                      stage=stage, total=total)
        emitter.layers(epoch, {i: {"loss": loss + 0.3 * (layers - i)} for i in range(1, layers + 1)}, stage=stage)


def start(db, run_id: int, gpu: str) -> None:
    claimed = store.claim_next(db, host="lab", gpu=gpu)
    assert claimed is not None and claimed.id == run_id
    assert store.mark_running(db, run_id, pid=4242, host="lab", info={"params": 4000})


def seed_registry(path) -> dict[str, int]:
    """Five runs: two completed (different seeds and lr), one staged running, one failed, one queued."""
    db = open_database(path, create=True)
    ids: dict[str, int] = {}

    ids["done_a"] = api.submit(db, "smoke", {"epochs": 6, "seed": 1}, tags=["sweep"]).id
    start(db, ids["done_a"], "0")
    emit_epochs(db, ids["done_a"], range(1, 7), total=6)
    emitter = RegistryEmitter(db, ids["done_a"])
    emitter.summary({"best_val_ppl": 12.5, "params": 4000.0})
    emitter.table("threshold sweep", [{"threshold": 0.5, "exit_rate": 0.41, "ppl": 13.2},
                                      {"threshold": 0.9, "exit_rate": 0.12, "ppl": 12.6}])
    emitter.log("training finished")
    store.finish_run(db, ids["done_a"], RunStatus.COMPLETED, exit_code=0)

    ids["done_b"] = api.submit(db, "smoke", {"epochs": 6, "seed": 2}, tags=["sweep"]).id
    start(db, ids["done_b"], "0")
    emit_epochs(db, ids["done_b"], range(1, 7), total=6, offset=0.2)
    RegistryEmitter(db, ids["done_b"]).summary({"best_val_ppl": 15.0, "params": 4000.0})
    store.finish_run(db, ids["done_b"], RunStatus.COMPLETED, exit_code=0)

    ids["staged"] = api.submit(db, "smoke", {"epochs": 4, "stages": 2, "seed": 3}).id
    start(db, ids["staged"], "1")
    RegistryEmitter(db, ids["staged"]).stage(1, "stage 1", epochs=4)
    emit_epochs(db, ids["staged"], range(1, 5), stage=1, total=4)
    RegistryEmitter(db, ids["staged"]).stage(2, "stage 2", epochs=4)
    emit_epochs(db, ids["staged"], range(1, 3), stage=2, total=4)

    ids["failed"] = api.submit(db, "smoke", {"epochs": 3, "fail_at_epoch": 2, "seed": 4}).id
    start(db, ids["failed"], "0")
    emit_epochs(db, ids["failed"], range(1, 2), total=3)
    store.finish_run(db, ids["failed"], RunStatus.FAILED, exit_code=1, error="RuntimeError: smoke failure requested")

    ids["queued"] = api.submit(db, "smoke", {"epochs": 3, "seed": 5}).id
    pin_times(db)
    db.dispose()
    return ids


def pin_times(db) -> None:
    """Fixed created/started/finished/updated times and log times (a minute per run)."""
    run, log = store.RUN, store.LOG
    with db.write() as conn:
        for (run_id,) in conn.execute(run.select().with_only_columns(run.c.id)).all():
            base = T0 + 60 * run_id
            conn.execute(update(run).where(run.c.id == run_id).values(created_at=base, updated_at=base + 30))
            conn.execute(update(run).where(run.c.id == run_id, run.c.started_at.is_not(None))
                         .values(started_at=base + 5))
            conn.execute(update(run).where(run.c.id == run_id, run.c.finished_at.is_not(None))
                         .values(finished_at=base + 125))
            conn.execute(update(log).where(log.c.run_id == run_id).values(ts=base + 10))


@contextmanager
def seeded_registry(tmp_path, monkeypatch) -> Iterator[tuple[Path, dict[str, int]]]:
    """(path, ids) of a seeded registry file, with times printed in UTC and no blinking cursors.

    Test modules wrap it in their own ``seeded`` fixture (a yield inside ``with``).
    """
    from textual.widgets import Input

    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None, raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    path = tmp_path / "runs.db"
    try:
        yield path, seed_registry(path)
    finally:
        monkeypatch.undo()
        time.tzset()


def make_app(path, **kwargs):
    from hrm_tui.tui.app import HrmApp

    kwargs.setdefault("poll_interval", None)
    kwargs.setdefault("clock", frozen_clock)
    kwargs.setdefault("start_scheduler", False)
    return HrmApp(db=path, **kwargs)


@asynccontextmanager
async def dashboard(path, size: tuple[int, int] = SIZE, **kwargs):
    """``(app, pilot)``: the dashboard on ``path`` under a pilot, its first poll already merged."""
    app = make_app(path, **kwargs)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        yield app, pilot


def run_table(app):
    """The runs table of the screen on top."""
    from hrm_tui.tui.widgets.run_table import RunTable

    return app.screen.query_one(RunTable)


async def press_on(pilot, run_id: int, *keys: str) -> None:
    """Put the cursor on ``run_id``'s row, then press ``keys``."""
    run_table(pilot.app).move_to(run_id)
    await pilot.press(*keys)


async def settle(pilot) -> None:
    """Every poll merged and every message handled."""
    await pilot.app.settle()
    await pilot.pause()
    await pilot.app.settle()
    await pilot.pause()


def text_of(static) -> str:
    """The plain text a Static shows (Rich renderables included)."""
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(static.content)
    return console.file.getvalue()
