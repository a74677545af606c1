"""The same registry, scheduler and worker on a PostgreSQL URL (a throwaway local cluster, see
:mod:`tests.pg_fixture`: a fresh database per test)."""

from __future__ import annotations

import math

import pytest

from core import api
from core.registry import open_database, store
from tests.conftest import run_scheduler_once
from tests.pg_fixture import pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture
def pg_db(pg_url):  # noqa: F811
    db = open_database(pg_url)
    yield db
    db.dispose()


def test_registry_lifecycle_on_postgres(pg_db):
    run = api.submit(pg_db, "smoke", {"epochs": 2}, tags=["pg"])
    assert store.claim_next(pg_db, host="h", gpu="0").id == run.id
    for epoch, ppl in ((1, 12.0), (2, math.nan)):
        store.append_metrics(pg_db, run.id, "epoch", {"val_ppl": ppl}, epoch=epoch)
    (latest,) = store.latest_metrics(pg_db, [run.id])[run.id]
    assert latest["min"] == 12.0 and latest["last"] is None and latest["count"] == 2
    assert math.isnan(store.metrics(pg_db, run.id)[-1]["value"])
    assert store.list_runs(pg_db, tag="pg")[0].id == run.id


@pytest.mark.slow
def test_scheduler_and_worker_on_postgres(pg_db):
    run = api.submit(pg_db, "smoke", {"epochs": 3, "layers": 2})
    result = run_scheduler_once(pg_db.url)
    assert result.returncode == 0, result.stderr
    final = store.get_run(pg_db, run.id)
    assert final.status == "completed", final.error
    assert len(store.metrics(pg_db, run.id)) == 3 * 3 + 3 * 2 + 2
