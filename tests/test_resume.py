"""Checkpoints and resume: atomic checkpoint writes, exact continuation of a deterministic run, and
``hrm resume`` / the retry policy through the real scheduler and worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from core.checkpoint import Checkpoints, NoCheckpoints, checkpoints_for, load_checkpoint
from core.experiments import RecordingEmitter, get_experiment

ROOT = Path(__file__).resolve().parent.parent
SMALL_LPT = dict(data="excerpt", max_epochs=5, patience=5, d_model=32, train_chars=3000, val_chars=1000)


# --- the checkpoint format --------------------------------------------------------------------------

def test_state_round_trips_exactly_with_shared_tensors_and_rng(tmp_path):
    import numpy as np

    model = torch.nn.Linear(4, 3)
    tied = {"a": model.weight, "b": model.weight, "slice": model.weight[:, 1]}  # shared memory, a non-contiguous view
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    store = Checkpoints(tmp_path)
    torch.manual_seed(5)
    np.random.seed(5)
    store.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "tied": tied,
                "counters": {"best": float("inf"), "bad": 2, 3: "int key", "t": (1, 2.5)}}, stage=2, epoch=7, score=1.5)
    expected_next = (torch.rand(3), np.random.rand(2))
    torch.manual_seed(99)
    np.random.seed(99)

    loaded = store.latest()
    assert (loaded.stage, loaded.epoch, loaded.score, loaded.seq) == (2, 7, 1.5, 1)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state["model"][key], value)
    restored = torch.optim.AdamW(torch.nn.Linear(4, 3).parameters(), lr=1e-3)
    restored.load_state_dict(loaded.state["optimizer"])
    assert restored.state_dict()["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert loaded.state["tied"]["a"] is loaded.state["tied"]["b"]
    assert torch.equal(loaded.state["tied"]["slice"], model.weight[:, 1])
    assert loaded.state["counters"] == {"best": float("inf"), "bad": 2, 3: "int key", "t": (1, 2.5)}
    loaded.restore_rng()
    assert torch.equal(torch.rand(3), expected_next[0])
    assert np.array_equal(np.random.rand(2), expected_next[1])


def test_keeps_the_last_two_and_the_best(tmp_path):
    store = Checkpoints(tmp_path)
    for epoch, score in enumerate([5.0, 1.0, 3.0, 4.0, 6.0], start=1):
        store.save({"x": torch.tensor([epoch])}, epoch=epoch, score=score)
    assert [load_checkpoint(p).epoch for p in store.folders()] == [2, 4, 5]


def test_nothing_is_saved_without_a_store():
    assert isinstance(checkpoints_for(RecordingEmitter()), NoCheckpoints)
    assert checkpoints_for(RecordingEmitter()).resume_point() is None


KILL_MID_SAVE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import torch
    import core.checkpoint as ck

    store = ck.Checkpoints(Path(sys.argv[1]))
    store.save({"w": torch.ones(50_000)}, epoch=1, score=2.0)

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[2] == "rename":
        ck._publish = die
    else:
        def half_then_die(path, tensors):
            from safetensors.torch import save
            data = save(tensors)
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            die()
        ck._write_tensors = half_then_die
    store.save({"w": torch.full((50_000,), 7.0)}, epoch=2, score=1.0)
""")


@pytest.mark.parametrize("where", ["tensor-write", "rename"])
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, where):
    proc = subprocess.run([sys.executable, "-c", KILL_MID_SAVE, str(tmp_path), where], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-ckpt-")]  # the half-written one
    store = Checkpoints(tmp_path)
    latest = store.latest()
    assert latest.epoch == 1 and torch.equal(latest.state["w"], torch.ones(50_000))
    store.save({"w": torch.zeros(3)}, epoch=2)  # the next save clears the debris and goes on
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-ckpt-")]
    assert store.latest().epoch == 2


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    store = Checkpoints(tmp_path)
    store.save({"w": torch.ones(10)}, epoch=1)
    newest = store.save({"w": torch.zeros(10)}, epoch=2)
    tensors = newest / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:20])
    assert store.latest().epoch == 1


# --- exact continuation, in process ---------------------------------------------------------------------

class _Died(Exception):
    pass


class _DiesAtEpoch(RecordingEmitter):
    """Records like RecordingEmitter, then 'dies' when an epoch event arrives for ``die_at`` (before it is recorded)."""

    def __init__(self, die_at: tuple[int, int]):
        super().__init__()
        self.die_at = die_at

    def epoch(self, epoch, metrics, *, stage=0, total=None, layers=None):
        if (stage, epoch) == self.die_at:
            raise _Died()
        super().epoch(epoch, metrics, stage=stage, total=total, layers=layers)


def _numbers(events):
    """Every recorded number except wall-clock times, in order."""
    out = []
    for e in events:
        if e["t"] == "epoch":
            out.append(("epoch", e["stage"], e["epoch"], {k: v for k, v in e["metrics"].items() if k != "epoch_time_s"}))
        elif e["t"] in ("layers", "summary", "table"):
            out.append({k: v for k, v in e.items() if k != "t"} | {"t": e["t"]})
    return out


def _interrupted_then_resumed(tmp_path, name, config, die_at):
    experiment = get_experiment(name)
    first = _DiesAtEpoch(die_at)
    first.checkpoints = Checkpoints(tmp_path, cursor=lambda: {"events": len(first.events)})
    with pytest.raises(_Died):
        experiment.run(config, first)
    second = RecordingEmitter()
    second.checkpoints = Checkpoints(tmp_path, resume=True)
    experiment.run(config, second)
    point = second.checkpoints.resume_point()
    assert point is not None
    return first.events[: point.cursor["events"]] + second.events, point


def _uninterrupted_and_resumed(checkpoint_dir, name, die_at, **settings):
    """``name`` run straight through, then killed at ``die_at`` and resumed from its checkpoint:
    (the whole run's events, the two attempts' events as a user sees them, the resume point)."""
    experiment = get_experiment(name)
    config = experiment.make_config(**settings)
    whole = RecordingEmitter()
    experiment.run(config, whole)
    events, point = _interrupted_then_resumed(checkpoint_dir, name, config, die_at=die_at)
    return whole.events, events, point


def test_lpt_resumed_from_a_checkpoint_ends_with_exactly_the_uninterrupted_numbers(tmp_path):
    whole, events, point = _uninterrupted_and_resumed(tmp_path, "lpt", (0, 4), **SMALL_LPT)
    assert point.epoch == 3
    assert _numbers(events) == _numbers(whole)


SMALL_GROWING = dict(variant="published", n_layers=3, d_model=32, max_epochs=2, patience=2)


@pytest.mark.slow
@pytest.mark.parametrize("die_at", [(2, 2), (3, 1)], ids=["mid-stage", "at-a-stage-boundary"])
def test_progressive_resumed_mid_stage_or_at_a_stage_boundary_matches_the_uninterrupted_run(tmp_path, die_at):
    whole, events, point = _uninterrupted_and_resumed(tmp_path, "progressive", die_at, **SMALL_GROWING)
    assert (point.stage, point.stage_done) == ((2, False) if die_at == (2, 2) else (2, True))
    assert _numbers(events) == _numbers(whole)


@pytest.mark.slow
def test_greedy_layerwise_resumed_in_its_fine_tune_stage_matches_the_uninterrupted_run(tmp_path):
    whole, events, point = _uninterrupted_and_resumed(tmp_path, "greedy-layerwise", (4, 2), **SMALL_GROWING)
    assert (point.stage, point.epoch) == (4, 1)
    assert _numbers(events) == _numbers(whole)


# --- through the real scheduler, worker and CLI ---------------------------------------------------------

def _recorded(db, run_id):
    """(kind, stage, epoch, layer, key, value) of every metric row, in order, wall-clock times left out."""
    from core.registry import store

    return [(r["kind"], r["stage"], r["epoch"], r["layer"], r["key"], r["value"])
            for r in store.metrics(db, run_id) if r["key"] != "epoch_time_s"]


def _latest(db, run_id):
    from core.registry import store

    return sorted((r["stage"], r["key"], r["last"], r["last_epoch"], r["min"], r["min_epoch"], r["max"], r["count"])
                  for r in store.latest_metrics(db, [run_id])[run_id] if r["key"] != "epoch_time_s")


def _kill_after_checkpoint(db, run_id, epoch):
    """SIGKILL the run's worker (its whole process group) once it has checkpointed ``epoch``."""
    from core.registry import store
    from tests.conftest import wait_for

    def checkpointed():
        run = store.get_run(db, run_id)
        saved = json.loads(run.checkpoint_json) if run.checkpoint_json else None
        return run.pid if saved and saved["epoch"] >= epoch and run.status == "running" else None

    pid = wait_for(checkpointed, timeout=300, interval=0.02)
    os.killpg(pid, signal.SIGKILL)
    return pid


@pytest.mark.slow
def test_lpt_killed_with_sigkill_resumes_by_hand_and_by_retry_policy_to_the_uninterrupted_numbers(db, tmp_path):
    from core import api
    from core.registry import store
    from tests.conftest import start_scheduler, subprocess_env, wait_for

    config = dict(SMALL_LPT, max_epochs=6, patience=6)
    whole = api.submit(db, "lpt", config)
    by_hand = api.submit(db, "lpt", config)
    retried = api.submit(db, "lpt", config)
    api.set_run_policy(db, retried.id, max_retries=1)
    scheduler = start_scheduler(db.url, "--max-parallel", "1")
    try:
        wait_for(lambda: store.get_run(db, whole.id).status == "completed", timeout=300)
        _kill_after_checkpoint(db, by_hand.id, 3)
        wait_for(lambda: store.get_run(db, by_hand.id).status == "failed", timeout=60)
        assert store.get_run(db, by_hand.id).attempt == 1, "no retries were asked for: it stays failed"
        _kill_after_checkpoint(db, retried.id, 3)
        wait_for(lambda: store.get_run(db, retried.id).status == "completed", timeout=300)

        cli = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(tmp_path / "runs.db"), "resume", str(by_hand.id),
                              "--wait", "--no-start-scheduler"], env=subprocess_env(), capture_output=True, text=True,
                             timeout=300)
        assert cli.returncode == 0, cli.stderr
    finally:
        scheduler.terminate()
        scheduler.wait(30)

    expected = _recorded(db, whole.id)
    assert sum(1 for row in expected if row[0] == "epoch" and row[4] == "val_ppl") == 6
    for run_id, how in ((by_hand.id, "resume"), (retried.id, "retry-policy")):
        run = store.get_run(db, run_id)
        assert run.status == "completed" and run.attempt == 2
        assert _recorded(db, run_id) == expected, f"run {run_id} ({how}) differs from the uninterrupted run"
        assert _latest(db, run_id) == _latest(db, whole.id)
        attempts = api.attempts(db, run_id)
        assert [(a["attempt"], a["status"], a["requeued_by"]) for a in attempts] == [(1, "failed", how), (2, "completed", None)]
        assert "SIGKILL" in attempts[0]["error"] and attempts[0]["epoch"] >= 3
        info = json.loads(run.info_json)
        assert info["resumed_from"]["epoch"] >= 3 and "params_without_gradient" in info

    shown = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(tmp_path / "runs.db"), "show", str(retried.id),
                            "--json"], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    record = json.loads(shown.stdout)["run"]
    assert [a["attempt"] for a in record["attempts"]] == [1, 2] and record["checkpoint"]["epoch"] == 6


def test_hrm_resume_refuses_what_cannot_be_resumed_with_one_line(db, db_path):
    from typer.testing import CliRunner

    from core import api
    from core.registry import RunStatus, store
    from hrm_tui.cli import app

    def hrm(*args):
        return CliRunner().invoke(app, ["--db", str(db_path), *args])

    done = api.submit(db, "smoke", {"epochs": 1})
    store.finish_run(db, done.id, RunStatus.COMPLETED)
    queued = api.submit(db, "smoke", {"epochs": 1})
    failed = api.submit(db, "smoke", {"epochs": 1})
    store.finish_run(db, failed.id, RunStatus.FAILED, error="worker killed by SIGKILL")
    for args, message in (((str(done.id),), f"run {done.id} completed: nothing to resume"),
                          ((str(queued.id),), f"run {queued.id} is queued"),
                          (("999",), "run 999 does not exist"),
                          ((str(failed.id), "--wait", "--follow"), "--follow and --wait cannot be combined")):
        result = hrm("resume", *args, "--no-start-scheduler")
        assert result.exit_code in (1, 2) and message in result.output and "Traceback" not in result.output
    assert [r.attempt for r in store.list_runs(db)] == [1, 1, 1], "nothing was requeued"

    result = hrm("resume", str(failed.id), "--no-start-scheduler")
    assert result.exit_code == 0, result.output
    run = store.get_run(db, failed.id)
    assert (run.status, run.attempt) == ("queued", 2)
    assert "from the start (no checkpoint recorded)" in result.output
    again = hrm("resume", str(failed.id), "--no-start-scheduler")
    assert again.exit_code == 1 and "is queued" in again.output


@pytest.mark.slow
@pytest.mark.parametrize("name, extra", [("irt", {"model": "irt"}), ("hrm", {}), ("infini-hrm", {"model": "infini-carry"})])
def test_other_char_experiments_resume_exactly(tmp_path, name, extra):
    whole, events, point = _uninterrupted_and_resumed(tmp_path, name, (0, 3), data="excerpt", max_epochs=4, patience=4,
                                                      train_chars=2000, val_chars=600, **extra)
    assert point.epoch == 2
    assert _numbers(events) == _numbers(whole)


@pytest.mark.slow
@pytest.mark.parametrize("variant, recipe", [("corrected", "000"), ("published", "001")])
def test_cascade_resumed_after_a_stage_replays_it_and_ends_with_the_uninterrupted_numbers(tmp_path, variant, recipe):
    from core.smollm2.alpaca import tiny_records
    from core.smollm2.model import build_tiny_model_dir

    model = build_tiny_model_dir(tmp_path / "model")
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(tiny_records(96).rows))
    whole, events, point = _uninterrupted_and_resumed(
        tmp_path / "ck", "cascade", (3, 1), variant=variant, recipe=recipe, num_samples=40, seq_len=32, epochs=2,
        hard_ratio=0.3, stages=3, model=model, data_file=str(data), device="cpu")
    assert (point.stage, point.stage_done) == (2, True) and sorted(point.state["addons"]) == [1, 2]
    strip = {"seconds", "train_tokens_per_s", "extract_tokens_per_s"}  # wall-clock times and rates

    def clean(evs):
        out = []
        for e in _numbers(evs):
            if isinstance(e, tuple):
                out.append(e[:3] + ({k: v for k, v in e[3].items() if k not in strip},))
            else:
                out.append(e | {"metrics": {k: v for k, v in e["metrics"].items() if k not in strip}} if "metrics" in e else e)
        return out

    assert clean(events) == clean(whole)


def test_a_checkpoint_that_cannot_be_written_is_reported_and_the_previous_one_stays(tmp_path):
    import resource

    problems = []
    store = Checkpoints(tmp_path, on_error=problems.append)
    store.save({"w": torch.ones(10)}, epoch=1)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # a "full disk" for files over 100 kB
    try:
        assert store.save({"w": torch.ones(1_000_000)}, epoch=2) is None
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert len(problems) == 1 and "checkpoint of epoch 2 not saved" in problems[0]
    assert store.latest().epoch == 1 and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


from tests.pg_fixture import pg_server, pg_url  # noqa: E402,F401  (PostgreSQL fixtures)


def test_attempts_and_series_truncation_on_postgresql(pg_url):  # noqa: F811
    from core import api
    from core.registry import RunStatus, open_database, store
    from core.registry import attempts as attempt_store
    from core.registry.emitter import RegistryEmitter

    db = open_database(pg_url, create=True)
    try:
        run = api.submit(db, "smoke", {"epochs": 4})
        emit = RegistryEmitter(db, run.id)
        for epoch in (1, 2):
            emit.epoch(epoch, {"val_ppl": 10.0 - epoch}, total=4)
        cursor = attempt_store.event_cursor(db, run.id)
        emit.epoch(3, {"val_ppl": 1.0}, total=4)  # after the "checkpoint": the dead attempt's row
        store.finish_run(db, run.id, RunStatus.LOST, error="worker pid 1 was gone")
        assert attempt_store.claim_notification(db, run.id) and not attempt_store.claim_notification(db, run.id)
        assert attempt_store.requeue(db, run.id, by="retry-policy").attempt == 2
        assert attempt_store.requeue(db, run.id) is None, "already queued"
        assert attempt_store.truncate_events(db, run.id, cursor) == 1
        assert [r["epoch"] for r in store.metrics(db, run.id)] == [1, 2]
        (latest,) = store.latest_metrics(db, [run.id])[run.id]
        assert (latest["last"], latest["min"], latest["min_epoch"], latest["count"]) == (8.0, 8.0, 2, 2)
        assert [(a["attempt"], a["status"], a["requeued_by"]) for a in api.attempts(db, run.id)] == [
            (1, "lost", "retry-policy"), (2, "queued", None)]
        store.delete_run(db, run.id)
        with db.read() as conn:
            left = conn.execute(attempt_store.ATTEMPT.select().where(attempt_store.ATTEMPT.c.run_id == run.id)).all()
        assert left == [], "a deleted run's attempts go with it"
    finally:
        db.dispose()
