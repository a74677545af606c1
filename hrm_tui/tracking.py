"""The tracking client for scripts and notebooks: ``run = hrm_tui.init(experiment=..., config=...)``.

::

    import hrm_tui as hrm

    with hrm.init(experiment="my-exp", config={"lr": 1e-3, "layers": 4}, tags=["sweep-1"]) as run:
        for epoch in range(1, 11):
            run.log_epoch(epoch, {"train_loss": ..., "val_ppl": ...}, total=10,
                          layers={1: {"loss": ...}, 2: {"loss": ...}})  # one event: epoch + its layers
        run.summary({"best_val_ppl": ...})

Inside ``hrm exec`` the client attaches to the run the worker started (``$HRM_RUN_ID``, ``$HRM_DB``);
elsewhere it creates a run of its own in ``db`` (default ``$HRM_DB``, then ``./runs.db``), which
``hrm ls``, ``hrm show``, ``hrm compare`` and the dashboard show like any other. Every call is
durable when it returns. A crash leaves the run ``failed`` with the traceback tail, whether the code
used ``with`` or not (an ``sys.excepthook`` and an ``atexit`` hook cover the second case; a script
that ends without ``finish()`` is ``completed``; ``kill PID`` (SIGTERM) leaves it ``cancelled``). A call after ``finish()``, a non-integer layer or
a metric that is not a number raises :class:`TrackingError` with one line.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from core.api import start_tracking
from core.errors import RunCancelled, TrackingError

__all__ = ["Run", "RunCancelled", "TrackingError", "init"]

_OPEN: set[Run] = set()
"""Runs this process tracks and has not finished: the crash and exit hooks end them."""
_hooks_installed = False


class Run:
    """A tracked run (what :func:`init` returns); also a context manager that ends it."""

    def __init__(self, tracker) -> None:
        self._tracker = tracker

    def __repr__(self) -> str:
        state = "finished" if self.finished else "attached" if self.attached else "running"
        return f"<hrm run {self.id} ({state}) in {self._tracker.db.safe_url}>"

    @property
    def id(self) -> int:
        """The run id (``hrm show ID``)."""
        return self._tracker.run_id

    @property
    def attached(self) -> bool:
        """True inside ``hrm exec``: the run belongs to a worker, which writes its final status."""
        return self._tracker.attached

    @property
    def finished(self) -> bool:
        return self._tracker.finished

    @property
    def db_url(self) -> str:
        return self._tracker.db.url

    def log_epoch(self, epoch: int, metrics: Mapping[str, float], *, stage: int = 0,
                  total: int | None = None, layers: Mapping[int, Mapping[str, float]] | None = None) -> None:
        """Per-epoch numbers (``train_loss``, ``val_loss``, ``val_ppl``...); ``total``: epochs planned.

        ``layers``: the epoch's per-layer numbers ``{layer: {name: value}}``, written with it in one
        transaction (one commit instead of a ``log_layers`` call's second one).
        """
        self._tracker.epoch(epoch, metrics, stage=stage, total=total, layers=layers)

    def log_layers(self, epoch: int | None, per_layer: Mapping[int, Mapping[str, float]], *,
                   stage: int = 0) -> None:
        """Per-layer numbers of one epoch, ``{layer: {name: value}}`` (``epoch=None``: an analysis)."""
        self._tracker.layers(epoch, per_layer, stage=stage)

    def summary(self, metrics: Mapping[str, float], *, stage: int = 0) -> None:
        """Headline numbers (``best_val_ppl``, ``best_epoch``, ``params``...)."""
        self._tracker.summary(metrics, stage=stage)

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]], *, stage: int = 0) -> None:
        """An analysis table: a list of ``{column: value}`` rows (``hrm show`` prints it)."""
        self._tracker.table(name, rows, stage=stage)

    def stage(self, stage: int, name: str, *, epochs: int | None = None) -> None:
        """A new stage starts; later ``log_epoch(..., stage=k)`` calls belong to it."""
        self._tracker.stage(stage, name, epochs=epochs)

    def info(self, **fields: Any) -> None:
        """Run facts: ``params``, ``data_source``, ``device``..."""
        self._tracker.info(**fields)

    def log(self, message: str) -> None:
        """A line for the run's log (``hrm logs``)."""
        self._tracker.log(message)

    def finish(self) -> None:
        """The run completed (idempotent). Later tracking calls raise :class:`TrackingError`."""
        self._tracker.finish()
        _OPEN.discard(self)

    def fail(self, error: str, traceback_tail: str | None = None) -> None:
        """End the run as failed with ``error`` (and a traceback or log tail)."""
        self._tracker.finish(error=error, traceback_tail=traceback_tail)
        _OPEN.discard(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or (exc_type is SystemExit and exc.code in (None, 0)):
            self.finish()
        elif issubclass(exc_type, RunCancelled):
            _OPEN.discard(self)
        elif issubclass(exc_type, KeyboardInterrupt):
            self._tracker.finish(error="interrupted (KeyboardInterrupt)", cancelled=True)
            _OPEN.discard(self)
        elif exc_type is SystemExit:
            self.fail(f"exited with code {exc.code}")
        else:
            self.fail(_error_line(exc_type, exc), "".join(traceback.format_exception(exc_type, exc, tb)))
        return False


def _error_line(exc_type, exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc_type.__name__}: {text[0]}" if text else exc_type.__name__


def _on_uncaught(exc_type, exc, tb) -> None:
    """sys.excepthook: a crash outside ``with`` still leaves every open run failed with its traceback."""
    if not issubclass(exc_type, KeyboardInterrupt):
        tail = "".join(traceback.format_exception(exc_type, exc, tb))
        for run in list(_OPEN):
            try:
                run.fail(_error_line(exc_type, exc), tail)
            except Exception:  # noqa: BLE001 - the original error matters more than ours
                pass
    else:
        for run in list(_OPEN):
            try:
                run._tracker.finish(error="interrupted (KeyboardInterrupt)", cancelled=True)
            except Exception:  # noqa: BLE001
                pass
    _previous_excepthook(exc_type, exc, tb)


def _at_exit() -> None:
    """A script that ended without ``finish()`` (and without a crash) completed its run."""
    for run in list(_OPEN):
        try:
            run.finish()
        except Exception:  # noqa: BLE001 - the registry may be gone at exit; nothing else to do
            pass


_previous_excepthook = sys.excepthook


def _on_sigterm(signum, frame) -> None:
    """``kill PID`` of a script with runs of its own: they end ``cancelled``, then the process dies as it would have."""
    for run in list(_OPEN):
        if not run.attached:
            try:
                run._tracker.finish(error="terminated by SIGTERM", cancelled=True)
            except Exception:  # noqa: BLE001 - dying anyway; the registry may be unreachable
                pass
            _OPEN.discard(run)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_hooks(run: Run) -> None:
    global _hooks_installed, _previous_excepthook
    if not run.attached and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)  # inside hrm exec the worker owns the run's end instead
    if _hooks_installed:
        return
    _hooks_installed = True
    _previous_excepthook = sys.excepthook
    sys.excepthook = _on_uncaught
    atexit.register(_at_exit)


def init(experiment: str | None = None, config: Mapping[str, Any] | None = None, *, tags: Sequence[str] = (),
         db: str | None = None, headline: str | None = "best_val_ppl", run_id: int | None = None) -> Run:
    """Start tracking: attach to the ``hrm exec`` run this process belongs to, or create a new run.

    ``experiment`` names what the script runs (required for a new run); ``config`` its settings
    (shown and compared like an experiment's config); ``db`` a registry path or URL; ``headline`` the
    summary metric listings show; ``run_id`` attaches to that active run explicitly.
    """
    run = Run(start_tracking(db, experiment=experiment, config=config, tags=tags, headline=headline, run_id=run_id))
    _OPEN.add(run)
    _install_hooks(run)
    return run
