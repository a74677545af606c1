"""Runs and metrics for notebooks and scripts: ``hrm.runs(...)`` and ``hrm.metrics(...)``.

::

    import hrm_tui as hrm
    runs = hrm.runs("runs.db", experiment="lpt", where="best_val_ppl < 12")
    df = runs.to_pandas()                 # one row per run: config.*, metrics (last, .min, .max), ...
    long = hrm.metrics("runs.db", runs.ids)  # run, stage, epoch, layer, key, value (+ kind, ts)

Records are the ``hrm.runs/v1`` shape of ``hrm ls --json`` (plus ``note`` and ``imported_from``),
so what a notebook reads and what the CLI prints agree. Column names follow the ``--where``
language: ``config.lr``, ``val_ppl`` (its last value), ``val_ppl.min``, ``s2/val_ppl.max``.
pandas is optional (``pip install 'hrm-tui[analysis]'``): records work without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

RUN_COLUMNS = ("id", "experiment", "variant", "status", "tags", "note", "created_at", "started_at",
               "finished_at", "elapsed_s", "epoch", "total_epochs", "headline_key", "headline", "error",
               "retry_of", "imported_from")
"""The first columns of :meth:`Runs.to_pandas`; ``config.*`` and the metrics follow."""
METRIC_COLUMNS = ("run", "stage", "epoch", "layer", "key", "value", "kind", "ts")


def _pandas():
    try:
        import pandas
    except ImportError:
        from core.errors import UserError

        raise UserError("pandas is not installed: pip install 'hrm-tui[analysis]'", 1) from None
    return pandas


def _open(db):
    """A path, URL or opened registry → (Database, whether we opened it)."""
    from core import api

    if hasattr(db, "read") and hasattr(db, "engine"):
        return db, False
    return api.open_registry(None if db is None else os.fspath(db)), True


class Runs(list):
    """A list of run records (dicts, newest first) that turns into a DataFrame."""

    @property
    def ids(self) -> list[int]:
        return [r["id"] for r in self]

    def to_pandas(self):
        """One row per run, indexed by id: run fields, ``config.*`` and each metric's last/min/max."""
        pandas = _pandas()
        from core import api

        rows = [api.flatten_record(r) for r in self]
        columns = list(RUN_COLUMNS)
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        frame = pandas.DataFrame(rows, columns=columns)
        for name in ("created_at", "started_at", "finished_at"):
            frame[name] = pandas.to_datetime(frame[name])
        return frame.set_index("id")


def runs(db=None, *, experiment: str | None = None, tag: str | None = None,
         status: str | Sequence[str] | None = None, where: str | None = None, last: int | None = None,
         ids: Sequence[int] | None = None) -> Runs:
    """The runs of a registry (a path, URL or None for ``$HRM_DB``/``./runs.db``), newest first.

    ``where`` is the ``hrm ls --where`` filter language; ``status`` is one status or several.
    """
    from core import api

    database, owned = _open(db)
    try:
        statuses = [status] if isinstance(status, str) else list(status or ())
        found = api.list_runs(database, experiment=experiment, tag=tag, statuses=statuses, where=where,
                              last=last, ids=ids)
        latest = api.latest_summaries(database, [r.id for r in found])
        records = Runs()
        for run in found:
            record = api.run_record(run, latest.get(run.id, []))
            record["note"] = getattr(run, "note", None)
            record["imported_from"] = getattr(run, "imported_from", None)
            records.append(record)
        return records
    finally:
        if owned:
            database.dispose()


def metrics(db=None, run_ids: int | Iterable[int] | Runs | None = None, *, kinds: Sequence[str] = (),
            keys: Sequence[str] = ()):
    """Every metric row of the runs as a long DataFrame: run, stage, epoch, layer, key, value, kind, ts.

    ``kinds`` keeps epoch / layer / summary rows only; ``keys`` keeps those metric names.
    Per-layer rows carry their layer index; run-level rows have ``layer`` missing (<NA>).
    """
    from core import api

    pandas = _pandas()
    if isinstance(run_ids, Runs):
        run_ids = run_ids.ids
    elif isinstance(run_ids, int):
        run_ids = [run_ids]
    database, owned = _open(db)
    try:
        ids = list(run_ids) if run_ids is not None else [r.id for r in api.list_runs(database, enriched=False)]
        rows = api.metric_rows(database, ids, kinds=kinds)
    finally:
        if owned:
            database.dispose()
    if keys:
        wanted = set(keys)
        rows = [r for r in rows if r["key"] in wanted]
    frame = pandas.DataFrame(rows, columns=["run_id", *METRIC_COLUMNS[1:]]).rename(columns={"run_id": "run"})
    for name in ("epoch", "layer"):
        frame[name] = frame[name].astype("Int64")
    frame["value"] = frame["value"].astype("float64")
    return frame
