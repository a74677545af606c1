"""What the engine demos (``slurm_demo.py``, ``ray_demo.py``) print once their runs ended: one line a run, then the times."""

from __future__ import annotations

import time

from core.registry import attempts, store


def epochs_and_error(db, run) -> tuple[int, str]:
    """How many epochs the run logged, and why it ended: its own error, or for a retried run why its
    first attempt ended (the engine's reason: a lost node, a killed actor)."""
    epochs = len({r["epoch"] for r in store.metrics(db, run.id, kind="epoch")})
    error = run.error or ""
    if run.attempt > 1:
        first = attempts.attempts(db, run.id)[0]
        error = f"attempt 1 {first['status']}: {first['error']}"
    return epochs, error


def print_endings(db, finals: dict, engine_id: str, engine_state: str, timings: list[tuple[str, float]]) -> None:
    """One line per run (``label → its final view``): status, the engine's id and state, epochs logged and
    why it ended; then each measured step's seconds."""
    width = max(len(label) for label in finals) + 2
    id_width = max([len(engine_id)] + [len(run.external_id or "-") for run in finals.values()])
    print(f"{'how it ended':<{width}} {'run':>4} {'status':<10} {engine_id:<{id_width}} {engine_state:<12} "
          f"{'epochs':>6}  error")
    for label, final in finals.items():
        epochs, error = epochs_and_error(db, final)
        print(f"{label:<{width}} {final.id:>4} {final.status.value:<10} {final.external_id or '-':<{id_width}} "
              f"{final.external_state or '-':<12} {epochs:>6}  {error}")
    print()
    step_width = max(len(what) for what, _ in timings) + 2
    for what, seconds in timings:
        print(f"{what:<{step_width}} {seconds:6.1f} s")


def wait(what: str, predicate, timeout: float) -> float:
    """Seconds until ``predicate()`` holds; a one-line error (exit) after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"error: {what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started
