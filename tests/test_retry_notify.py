"""Retry policy and run-end notifications: the pure classification, hook argv safety, and the real
scheduler retrying an infrastructure failure, not retrying a code failure, and calling the command
hook and a webhook (a local HTTP server) exactly once per run end."""

from __future__ import annotations

import http.server
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from core.notify import HookError, check_command, check_webhook, command_argv, post_webhook, run_command
from core.retry_policy import classify


@pytest.mark.parametrize("status, error, shared, cause", [
    ("completed", None, False, "completed"),
    ("lost", "worker pid 12 was gone when the scheduler restarted", False, "infrastructure"),
    ("failed", "worker killed by SIGKILL", False, "infrastructure"),
    ("failed", "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", True, "infrastructure"),
    ("failed", "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", False, "code"),
    ("cancelled", "preempted (SIGTERM from outside hrm)", False, "infrastructure"),
    ("cancelled", "cancelled by request", False, "cancelled"),
    ("failed", "RuntimeError: smoke failure requested at epoch 3", False, "code"),
    ("failed", "ValueError: --data-dir: '/nope' does not exist", False, "code"),
    ("failed", "worker killed by SIGSEGV", False, "code"),
    ("failed", "NCCL error: unhandled system error", False, "infrastructure"),
])
def test_classify(status, error, shared, cause):
    verdict = classify(status, error, shared_gpu=shared)
    assert verdict.cause == cause and verdict.retry == (cause == "infrastructure") and verdict.reason


def test_hook_placeholders_never_become_shell_or_extra_arguments(tmp_path):
    error = "boom'; touch pwned; echo $(id) \"x"
    argv = command_argv("notify --run {run_id} 'status: {status}' {error}", {"run_id": 7, "status": "failed", "error": error})
    assert argv == ["notify", "--run", "7", "status: failed", error]
    out = tmp_path / "out.txt"
    template = shlex.join([sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(repr(sys.argv[2:]))",
                           str(out), "{run_id}", "{error}"])
    assert run_command(template, {"run_id": 3, "error": error}) is None
    assert out.read_text() == repr(["3", error]) and not (tmp_path / "pwned").exists()


def test_the_hook_gets_the_redacted_registry_and_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("HRM_DB_URL", "postgresql://me:secret@db/hrm")
    out = tmp_path / "env.json"
    template = shlex.join([sys.executable, "-c", "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))",
                           str(out)])
    assert run_command(template, {"run_id": 4, "status": "lost", "db": "postgresql://me:***@db/hrm"}) is None
    env = json.loads(out.read_text())
    assert "HRM_DB_URL" not in env and "secret" not in json.dumps(env)
    assert (env["HRM_RUN_ID"], env["HRM_STATUS"], env["HRM_REGISTRY"]) == ("4", "lost", "postgresql://me:***@db/hrm")


def test_bad_hooks_are_refused_and_failing_ones_reported_not_raised():
    for template in ("notify {nope}", "unbalanced 'quote", "   ", "x {0}"):
        with pytest.raises(HookError):
            check_command(template)
    for url in ("ftp://host/x", "localhost:8000", "http://"):
        with pytest.raises(HookError):
            check_webhook(url)
    assert "could not start" in run_command("/nonexistent/hook {run_id}", {"run_id": 1})
    assert "exited with 3" in run_command(f"{shlex.quote(sys.executable)} -c 'raise SystemExit(3)'", {})
    assert "unreachable" in post_webhook("http://127.0.0.1:9/x", {"run_id": 1}, timeout=2)


def test_cli_refuses_a_bad_webhook_before_writing_anything(tmp_path):
    from tests.conftest import subprocess_env

    db_file = tmp_path / "fresh.db"
    done = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(db_file), "run", "smoke", "--webhook", "ftp://x",
                           "--no-start-scheduler"], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == ["error: --webhook: 'ftp://x' is not an http(s) URL"]
    assert not db_file.exists()


class _Hooks(http.server.BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        """Quiet: http.server would print every request to stderr."""


@pytest.fixture
def webhook_server():
    _Hooks.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hrm", _Hooks.bodies
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_scheduler_retries_infrastructure_failures_only_and_notifies_once_per_run_end(db, tmp_path, webhook_server):
    from core import api
    from core.registry import store
    from tests.conftest import start_scheduler, wait_for

    url, bodies = webhook_server
    calls = tmp_path / "hook-calls.txt"
    hook = shlex.join([sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + '\\n')",
                       str(calls), "{run_id}", "{status}", "{attempt}"])
    completes = api.submit(db, "smoke", {"epochs": 2})
    code_error = api.submit(db, "smoke", {"epochs": 5, "fail_at_epoch": 2})
    api.set_run_policy(db, code_error.id, max_retries=2)
    killed = api.submit(db, "smoke", {"epochs": 30, "sleep": 0.1})
    api.set_run_policy(db, killed.id, max_retries=1)
    broken_hook = api.submit(db, "smoke", {"epochs": 1})
    api.set_run_policy(db, broken_hook.id, on_finish="/nonexistent/hook {run_id}")

    scheduler = start_scheduler(db.url, "--max-parallel", "1", "--on-finish", hook, "--webhook", url)
    try:
        def killed_midway():
            run = store.get_run(db, killed.id)
            return run.pid if run.status == "running" and run.epoch >= 5 else None

        os.killpg(wait_for(killed_midway, timeout=300, interval=0.05), signal.SIGKILL)
        ids = {completes.id, code_error.id, killed.id, broken_hook.id}
        wait_for(lambda: {b["run_id"] for b in bodies} == ids, timeout=300)
        time.sleep(2.0)  # anything called twice would show up by now
    finally:
        scheduler.terminate()
        scheduler.wait(30)

    final = {i: store.get_run(db, i) for i in ids}
    assert final[code_error.id].status == "failed" and final[code_error.id].attempt == 1, "a code failure is not retried"
    assert final[killed.id].status == "completed" and final[killed.id].attempt == 2, "SIGKILL is retried"
    epochs = [r for r in store.metrics(db, killed.id) if r["kind"] == "epoch" and r["key"] == "val_ppl"]
    assert [r["epoch"] for r in epochs] == list(range(1, 31)), "no checkpoint: the retry starts over without duplicates"

    assert sorted(calls.read_text().splitlines()) == sorted(
        [f"{completes.id} completed 1", f"{code_error.id} failed 1", f"{killed.id} completed 2"])
    assert sorted((b["run_id"], b["status"], b["attempt"]) for b in bodies) == sorted(
        [(completes.id, "completed", 1), (code_error.id, "failed", 1), (killed.id, "completed", 2),
         (broken_hook.id, "completed", 1)])
    assert all(b["schema"] == "hrm.run-end/v1" and b["experiment"] == "smoke" for b in bodies)
    notes = [line["message"] for line in store.logs(db, broken_hook.id)]
    assert any("notification failed" in m and "/nonexistent/hook" in m for m in notes)
    assert final[broken_hook.id].status == "completed"


def test_hrm_run_records_retries_and_hooks_and_refuses_bad_ones_without_writing(db_path):
    from typer.testing import CliRunner

    from core.registry import open_database, store
    from hrm_tui.cli import app

    def hrm(*args):
        return CliRunner().invoke(app, ["--db", str(db_path), "run", "smoke", *args, "--no-start-scheduler"])

    bad = hrm("--on-finish", "notify {nope}")
    assert bad.exit_code == 2 and "unknown placeholder {nope}" in bad.output and not db_path.exists()
    assert hrm("--retries", "-1").exit_code == 2 and not db_path.exists()
    ok = hrm("--retries", "2", "--on-finish", "notify-send hrm '{run_id} {status}'", "--webhook", "https://example.org/h")
    assert ok.exit_code == 0, ok.output
    (run,) = store.list_runs(open_database(db_path))
    assert (run.max_retries, run.on_finish, run.webhook) == (2, "notify-send hrm '{run_id} {status}'", "https://example.org/h")
    plain = hrm()
    assert plain.exit_code == 0
    newest = store.list_runs(open_database(db_path))[0]
    assert (newest.max_retries, newest.on_finish, newest.webhook) == (None, None, None), "the scheduler's defaults apply"


def test_handle_run_end_retries_within_budget_then_notifies_exactly_once(db, webhook_server):
    from core import api
    from core.registry import RunStatus, store
    from core.resume import EndPolicy, handle_run_end

    url, bodies = webhook_server
    run = api.submit(db, "smoke", {"epochs": 1})
    policy = EndPolicy(retries=1, webhook=url)
    store.finish_run(db, run.id, RunStatus.LOST, error="worker pid 9 was gone when the scheduler restarted")
    assert handle_run_end(db, run.id, policy) == "retried"
    assert handle_run_end(db, run.id, policy) == "not-ended", "queued again: nothing to do"
    store.finish_run(db, run.id, RunStatus.LOST, error="no worker heartbeat for 61 s")
    assert handle_run_end(db, run.id, policy) == "notified"  # the one retry is spent
    assert handle_run_end(db, run.id, policy) == "already-notified"
    assert [(b["run_id"], b["status"], b["attempt"]) for b in bodies] == [(run.id, "lost", 2)]
    assert any("no retry left (1 of 1 used)" in line["message"] for line in store.logs(db, run.id))
