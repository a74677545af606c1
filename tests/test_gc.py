"""``hrm gc``: checkpoints of completed runs beyond the best and the last, debris of killed saves and
folders of deleted runs go; resumable runs keep every checkpoint; ``--dry-run`` removes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from core import api
from core.checkpoint import Checkpoints, folder_bytes
from core.paths import run_dir, runs_root
from core.registry import RunStatus, store
from core.resume import checkpoint_dir


def _with_checkpoints(db, status: RunStatus, scores):
    run = api.submit(db, "smoke", {"epochs": 3})
    store.finish_run(db, run.id, status, error=None if status == RunStatus.COMPLETED else "worker killed by SIGKILL")
    checkpoints = Checkpoints(checkpoint_dir(db, run.id), keep_last=100)
    for epoch, score in enumerate(scores, start=1):
        checkpoints.save({"w": torch.full((20_000,), float(epoch))}, epoch=epoch, score=score)
    return run, checkpoints


def _layout(db):
    completed, completed_ck = _with_checkpoints(db, RunStatus.COMPLETED, [4.0, 2.0, 3.0, 5.0, 6.0])
    failed, failed_ck = _with_checkpoints(db, RunStatus.FAILED, [4.0, 3.0, 2.0])
    debris = failed_ck.directory / ".tmp-ckpt-000009-123"
    debris.mkdir()
    (debris / "tensors.safetensors").write_bytes(b"\0" * 1000)
    orphan = runs_root(db) / "999"
    (orphan / "checkpoints").mkdir(parents=True)
    (orphan / "worker.log").write_bytes(b"x" * 5000)
    return completed_ck, failed_ck, debris, orphan


def test_gc_keeps_best_and_last_of_completed_runs_and_everything_of_resumable_ones(db):
    completed_ck, failed_ck, debris, orphan = _layout(db)
    names = [p.name for p in completed_ck.folders()]
    expected = {completed_ck.directory / names[i] for i in (0, 2, 3)} | {debris, orphan}
    expected_bytes = sum(folder_bytes(p) for p in expected)

    preview = api.gc(db, dry_run=True)
    assert {i.path for i in preview.items} == expected and preview.freed_bytes == expected_bytes
    assert all(p.exists() for p in expected), "a dry run removes nothing"

    report = api.gc(db)
    assert {i.path for i in report.items} == expected and report.freed_bytes == expected_bytes > 0
    assert not any(p.exists() for p in expected)
    assert [p.name for p in completed_ck.folders()] == [names[1], names[4]]  # the best (2.0) and the last
    assert len(failed_ck.folders()) == 3 and failed_ck.latest().epoch == 3
    assert api.gc(db).items == [], "a second pass finds nothing"


def test_gc_never_touches_an_active_run(db):
    run = api.submit(db, "smoke", {"epochs": 3})
    store.claim_next(db, host="h", gpu="cpu")
    folder = checkpoint_dir(db, run.id)
    Checkpoints(folder).save({"w": torch.zeros(3)}, epoch=1)
    (folder / ".tmp-ckpt-000002-1").mkdir()  # a save in progress
    assert api.gc(db).items == []
    assert (folder / ".tmp-ckpt-000002-1").exists() and run_dir(db, run.id).exists()


def test_hrm_gc_cli_dry_run_and_json(db, db_path):
    from tests.conftest import subprocess_env

    _layout(db)
    base = [sys.executable, "-m", "hrm_tui", "--db", str(db_path), "gc"]
    dry = subprocess.run([*base, "--dry-run"], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.strip().splitlines()
    assert len(lines) == 6 and all(line.startswith("would remove ") for line in lines[:5])
    assert lines[-1].startswith("would free ") and lines[-1].endswith("in 5 folder(s)")
    done = subprocess.run([*base, "--json"], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    body = json.loads(done.stdout)
    assert body["schema"] == "hrm.gc/v1" and not body["dry_run"] and len(body["items"]) == 5
    assert body["freed_bytes"] == sum(i["bytes"] for i in body["items"]) > 100_000
