"""Tell someone a run ended: a command hook (``--on-finish``) and a webhook (``--webhook``).

Both work over SSH and from cron-less setups: the scheduler calls them once per run end. The
command is split with :func:`shlex.split` *before* the placeholders are filled in, and run without
a shell, so a run's error text can never become shell syntax. A hook that fails (missing program,
non-zero exit, timeout, unreachable URL) is reported back as a line for the run's log, never raised.
See ``docs/notifications.md``.
"""

from __future__ import annotations

import json
import os
import shlex
import string
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

WEBHOOK_SCHEMA = "hrm.run-end/v1"
PLACEHOLDERS = ("run_id", "status", "experiment", "attempt", "error", "headline", "db")
TIMEOUT_S = 30.0
_ENV_NAMES = {"db": "HRM_REGISTRY"}


class HookError(ValueError):
    """A hook template or URL that can never work (caught at submit time)."""


def check_command(template: str) -> list[str]:
    """The template split into argv; raises :class:`HookError` for unbalanced quotes or unknown fields."""
    try:
        parts = shlex.split(template)
    except ValueError as exc:
        raise HookError(f"--on-finish: {exc}") from None
    if not parts:
        raise HookError("--on-finish: empty command")
    for part in parts:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(part) if name is not None]
        except ValueError as exc:
            raise HookError(f"--on-finish: {exc} in {part!r}") from None
        unknown = [f for f in fields if f not in PLACEHOLDERS]
        if unknown:
            raise HookError(f"--on-finish: unknown placeholder {{{unknown[0]}}} (known: "
                            + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ")")
    return parts


def check_webhook(url: str) -> str:
    """Accept only absolute http(s) URLs."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise HookError(f"--webhook: {url!r} is not an http(s) URL")
    return url


def command_argv(template: str, fields: Mapping[str, Any]) -> list[str]:
    """argv of the hook: each shlex word formatted separately (values never re-split or re-parsed)."""
    values = {k: "" if fields.get(k) is None else str(fields.get(k)) for k in PLACEHOLDERS}
    return [part.format_map(values) for part in check_command(template)]


def run_command(template: str, fields: Mapping[str, Any], *, timeout: float = TIMEOUT_S) -> str | None:
    """Run the hook; None on success, else one line saying what went wrong."""
    try:
        argv = command_argv(template, fields)
    except HookError as exc:
        return str(exc)
    from core.scheduler.spawn import DB_URL_ENV

    env = {k: v for k, v in os.environ.items() if k != DB_URL_ENV}  # the hook gets no registry credentials
    # HRM_REGISTRY, not HRM_DB: the URL is redacted, and an `hrm` called by the hook must keep its own registry
    env.update({_ENV_NAMES.get(k, f"HRM_{k.upper()}"): "" if fields.get(k) is None else str(fields[k])
                for k in PLACEHOLDERS})
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return f"on-finish hook {argv[0]!r} timed out after {timeout:.0f} s"
    except OSError as exc:
        return f"on-finish hook {argv[0]!r} could not start: {exc.strerror or exc}"
    if done.returncode != 0:
        out = done.stdout.decode("utf-8", "replace").strip().splitlines()
        return f"on-finish hook {argv[0]!r} exited with {done.returncode}" + (f": {out[-1][:200]}" if out else "")
    return None


def post_webhook(url: str, payload: Mapping[str, Any], *, timeout: float = TIMEOUT_S) -> str | None:
    """POST ``payload`` as JSON; None on a 2xx answer, else one line saying what went wrong."""
    try:
        check_webhook(url)
    except HookError as exc:
        return str(exc)
    body = json.dumps(dict(payload), default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "hrm-tui"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            response.read(1024)
            return None
    except urllib.error.HTTPError as exc:
        return f"webhook answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"webhook unreachable: {reason}"


def run_end_payload(run: Any, *, db: str | None = None) -> dict[str, Any]:
    """What a run end tells the hooks (the webhook's JSON body, the command's placeholders)."""
    return {
        "schema": WEBHOOK_SCHEMA,
        "run_id": run.id,
        "status": str(getattr(run.status, "value", run.status)),
        "experiment": run.experiment,
        "attempt": getattr(run, "attempt", 1),
        "error": run.error,
        "headline_key": run.headline_key,
        "headline": run.headline_value,
        "finished_at": run.finished_at,
        "db": db,
    }


def notify(run: Any, *, on_finish: str | None, webhook: str | None, db: str | None = None) -> list[str]:
    """Call the hooks of an ended run; returns one line per failure (empty when all went well)."""
    payload = run_end_payload(run, db=db)
    problems = []
    if on_finish:
        problem = run_command(on_finish, payload)
        if problem:
            problems.append(problem)
    if webhook:
        problem = post_webhook(webhook, payload)
        if problem:
            problems.append(problem)
    return problems
