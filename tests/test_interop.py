"""Exports read back by the real libraries (TensorBoard's EventAccumulator, MLflow's client on a SQLite
store, pyarrow, csv) and MLflow runs imported as read-only records; bad targets write nothing."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys

import pytest

from core import api
from core.registry import open_database, store
from tests.conftest import ROOT, run_scheduler_once, subprocess_env


@pytest.fixture
def db(module_registry):
    return module_registry[1]


@pytest.fixture
def db_path(module_registry):
    return module_registry[0]


@pytest.fixture(scope="module")
def trained(module_registry):
    """A plain run and a two-stage run, executed by the real scheduler, with a note and tags."""
    db = module_registry[1]
    plain = api.submit(db, "smoke", {"epochs": 4, "layers": 3}, tags=["exp-a"])
    staged = api.submit(db, "smoke", {"epochs": 3, "layers": 2, "stages": 2})
    done = run_scheduler_once(db.url)
    assert done.returncode == 0, done.stderr
    api.set_note(db, plain.id, "the baseline")
    return plain.id, staged.id


def _val_ppl(db, run_id, stage=0):
    return [(m["epoch"], m["value"]) for m in store.metrics(db, run_id)
            if m["key"] == "val_ppl" and m["stage"] == stage and m["kind"] == "epoch"]


def test_tensorboard_export_reads_back(db, trained, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plain, staged = trained
    target = tmp_path / "tb"
    target.mkdir()  # an empty folder is a fine target
    message = api.export_runs(db, [plain, staged], "tensorboard", str(target))
    assert "2 run(s)" in message
    folders = sorted(p.name for p in target.iterdir())
    assert folders == [f"{plain}-smoke", f"{staged}-smoke"]

    events = EventAccumulator(str(target / f"{plain}-smoke"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val_ppl", "train_loss", "best_val_ppl", "layers/loss/1", "layers/loss/3"} <= tags
    curve = [(e.step, e.value) for e in events.Scalars("val_ppl")]
    assert curve == [(epoch, pytest.approx(value, rel=1e-6)) for epoch, value in _val_ppl(db, plain)]
    assert [e.step for e in events.Scalars("layers/loss/2")] == [1, 2, 3, 4]
    assert events.Scalars("best_val_ppl")[0].step == 0
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    content = events.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    hparams = hparams_metadata.parse_session_start_info_plugin_data(content).hparams
    assert hparams["layers"].number_value == 3 and hparams["noisy"].bool_value is False
    assert hparams["variant"].string_value == "corrected"

    staged_events = EventAccumulator(str(target / f"{staged}-smoke"))
    staged_events.Reload()
    assert {"s1/val_ppl", "s2/val_ppl", "s2/layers/loss/2"} <= set(staged_events.Tags()["scalars"])
    assert [e.value for e in staged_events.Scalars("s2/val_ppl")] == pytest.approx(
        [v for _, v in _val_ppl(db, staged, stage=2)], rel=1e-6)
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_export_refuses_a_non_empty_target_and_writes_nothing(db, trained, tmp_path):
    plain, _ = trained
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    for to in ("tensorboard", "csv", "parquet"):
        with pytest.raises(api.UserError, match="exists and is not empty") as info:
            api.export_runs(db, [plain], to, str(target))
        assert info.value.exit_code == 1
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with pytest.raises(api.UserError, match="run 999 does not exist"):
        api.export_runs(db, [plain, 999], "csv", str(tmp_path / "new"))
    with pytest.raises(api.UserError, match="unknown export format") as info:
        api.export_runs(db, [plain], "excel", str(tmp_path / "new"))
    assert info.value.exit_code == 2
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_csv_and_parquet_exports(db, trained, tmp_path):
    import pyarrow.parquet as pq

    plain, staged = trained
    api.export_runs(db, [plain, staged], "csv", str(tmp_path / "csv"))
    api.export_runs(db, [plain, staged], "parquet", str(tmp_path / "pq"))
    with (tmp_path / "csv" / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert [int(r["id"]) for r in runs] == [plain, staged]
    assert runs[0]["note"] == "the baseline" and runs[0]["config.layers"] == "3" and runs[0]["tags"] == "exp-a"
    assert float(runs[0]["val_ppl.min"]) == pytest.approx(min(v for _, v in _val_ppl(db, plain)))
    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        metrics = list(csv.DictReader(handle))
    assert len(metrics) == len(store.metrics(db, plain)) + len(store.metrics(db, staged))

    table = pq.read_table(tmp_path / "pq" / "metrics.parquet").to_pylist()
    assert len(table) == len(metrics)
    layer_rows = [r for r in table if r["run"] == plain and r["kind"] == "layer"]
    assert sorted({r["layer"] for r in layer_rows}) == [1, 2, 3]
    runs_table = pq.read_table(tmp_path / "pq" / "runs.parquet").to_pylist()
    assert runs_table[1]["config.stages"] == 2 and runs_table[0]["note"] == "the baseline"
    assert runs_table[1]["s2/val_ppl.min"] == pytest.approx(min(v for _, v in _val_ppl(db, staged, stage=2)))


@pytest.mark.slow
def test_mlflow_round_trip_and_native_import(db, trained, tmp_path):
    """hrm → MLflow (read by MlflowClient) → a second hrm registry; and runs MLflow logged itself."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    plain, staged = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    api.export_runs(db, [plain, staged], "mlflow", uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("hrm/smoke")
    exported = {r.data.tags["hrm.run_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(exported) == {str(plain), str(staged)}
    first = exported[str(plain)]
    assert first.info.status == "FINISHED" and first.data.params["layers"] == "3"
    assert first.data.tags["mlflow.note.content"] == "the baseline"
    history = client.get_metric_history(first.info.run_id, "val_ppl")
    assert [(m.step, m.value) for m in history] == [(e, pytest.approx(v)) for e, v in _val_ppl(db, plain)]
    assert [m.step for m in client.get_metric_history(first.info.run_id, "layer3/loss")] == [1, 2, 3, 4]
    assert client.get_metric_history(exported[str(staged)].info.run_id, "s2/val_ppl")

    # a run MLflow logged itself, and one still running (skipped)
    native = client.create_experiment("lab-history")
    done = client.create_run(native, run_name="old-baseline")
    client.log_batch(done.info.run_id, params=[Param("lr", "0.001"), Param("optimizer", "adamw")],
                     metrics=[Metric("loss", 3.0 - step, 1_700_000_000_000 + step, step) for step in range(3)])
    client.log_batch(done.info.run_id, metrics=[Metric("accuracy", 0.9, 1_700_000_000_500, 0)])
    client.set_terminated(done.info.run_id, "FINISHED")
    client.create_run(native, run_name="still-going")

    other = open_database(tmp_path / "other.db", create=True)
    try:
        result = api.import_mlflow(other, uri, tags=["lab"])
        assert len(result.imported) == 3 and result.skipped_unfinished == 1 and result.skipped_existing == 0
        records = {r.imported_from.rsplit("#", 1)[1]: r for r in store.list_runs(other)}
        back = records[first.info.run_id]
        assert back.experiment == "smoke" and back.status.value == "completed"
        assert back.config["layers"] == 3 and back.note == "the baseline"
        assert set(back.tags) == {"imported", "lab"}
        assert back.headline_value == pytest.approx(min(v for _, v in _val_ppl(db, plain)))
        assert _val_ppl(other, back.id) == [(e, pytest.approx(v)) for e, v in _val_ppl(db, plain)]
        layers = [m for m in store.metrics(other, back.id) if m["kind"] == "layer"]
        assert sorted({m["layer"] for m in layers}) == [1, 2, 3]
        staged_back = records[exported[str(staged)].info.run_id]
        assert _val_ppl(other, staged_back.id, stage=2) == [
            (e, pytest.approx(v)) for e, v in _val_ppl(db, staged, stage=2)]

        lab = records[done.info.run_id]
        assert lab.experiment == "mlflow/lab-history" and lab.config == {"lr": 0.001, "optimizer": "adamw"}
        assert [(m["epoch"], m["value"]) for m in store.metrics(other, lab.id) if m["key"] == "loss"] == [
            (0, 3.0), (1, 2.0), (2, 1.0)]
        summary = [m for m in store.metrics(other, lab.id) if m["kind"] == "summary"]
        assert [(m["key"], m["value"]) for m in summary] == [("accuracy", 0.9)]
        assert [r.id for r in store.list_runs(other, where="imported == true and config.optimizer == 'adamw'")] == [lab.id]

        with pytest.raises(api.UserError, match="read-only record cannot be retried"):
            api.retry(other, lab.id)
        again = api.import_mlflow(other, uri)
        assert again.imported == [] and again.skipped_existing == 3
        assert len(store.list_runs(other)) == 3
    finally:
        other.dispose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_that_does_not_answer(db, trained, tmp_path):
    plain, _ = trained
    dead = f"http://127.0.0.1:{_closed_port()}"
    for call in (lambda: api.export_runs(db, [plain], "mlflow", dead), lambda: api.import_mlflow(db, dead)):
        with pytest.raises(api.UserError, match="does not answer") as info:
            call()
        assert info.value.exit_code == 1
    with pytest.raises(api.UserError, match="does not exist"):
        api.import_mlflow(db, f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
    assert len(store.list_runs(db)) == 2  # nothing imported


def test_missing_extra_is_one_line(db_path, trained, tmp_path):
    """Without tensorboard installed, the export says which extra to install."""
    probe = (
        "import sys\n"
        "sys.modules['tensorboard'] = None\n"
        "from core import api\n"
        f"db = api.open_registry({str(db_path)!r})\n"
        "try:\n"
        f"    api.export_runs(db, [1], 'tensorboard', {str(tmp_path / 'tb')!r})\n"
        "except api.UserError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=subprocess_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "tensorboard is not installed: pip install 'hrm-tui[interop]'", out.stderr
    assert not (tmp_path / "tb").exists()


def test_cli_export_and_import(db, db_path, trained, tmp_path):
    from typer.testing import CliRunner

    from hrm_tui.cli import app

    plain, staged = trained
    runner = CliRunner()
    result = runner.invoke(app, ["--db", str(db_path), "export", "--where", "tag == 'exp-a'", "--to", "csv",
                                 str(tmp_path / "sel")])
    assert result.exit_code == 0, result.output
    with (tmp_path / "sel" / "runs.csv").open() as handle:
        assert [int(r["id"]) for r in csv.DictReader(handle)] == [plain]
    again = runner.invoke(app, ["--db", str(db_path), "export", str(plain), "--to", "csv", str(tmp_path / "sel")])
    assert again.exit_code == 1 and again.output.strip().splitlines() == [
        f"error: export target {tmp_path / 'sel'} exists and is not empty: choose a new folder"]
    for args in (["export", str(plain)], ["export", str(plain), "--to", "excel", "x"],
                 ["export", "--to", "csv", str(tmp_path / "none")], ["import", "mlflow", ""]):
        bad = runner.invoke(app, ["--db", str(db_path), *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert bad.output.startswith("error: ") and len(bad.output.strip().splitlines()) == 1, bad.output
    assert not (tmp_path / "none").exists() and not (tmp_path / "x").exists()
    dead = runner.invoke(app, ["--db", str(db_path), "import", "mlflow", f"http://127.0.0.1:{_closed_port()}"])
    assert dead.exit_code == 1 and "does not answer" in dead.output


@pytest.mark.slow
def test_a_failed_mlflow_export_keeps_nothing(db, trained, tmp_path):
    """The second run carries a metric name MLflow refuses: the first run, already written, is removed."""
    from mlflow.tracking import MlflowClient

    plain, _ = trained
    odd = api.submit(db, "smoke", {"epochs": 1})
    store.append_metrics(db, odd.id, "epoch", {"top@1": 0.5}, epoch=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(api.UserError, match="failed \\(nothing kept\\)") as info:
        api.export_runs(db, [plain, odd.id], "mlflow", uri)
    assert info.value.exit_code == 1 and "top@1" in str(info.value)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("hrm/smoke")
    assert client.search_runs([experiment.experiment_id]) == []  # no active run left behind
    api.delete(db, odd.id)
