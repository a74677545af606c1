"""What the engine demos (``slurm_demo.py``, ``ray_demo.py``) print about each run once it ended."""

from __future__ import annotations

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
