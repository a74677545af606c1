"""Starting hrm's own child processes (workers, the background scheduler) the one safe way.

- The installed project's ``core`` always wins: the child runs ``python -P -m MODULE`` (``-P``: the
  current folder is not put on ``sys.path``) with the project root first on ``PYTHONPATH``, so a
  user's own ``core/`` package in the working folder cannot hijack ``python -m core.worker``.
- The registry URL, which may hold a password, travels in the environment (``HRM_DB_URL``), never
  on the command line, so ``ps`` cannot show it.
- The child gets a session of its own: a Ctrl-C in the terminal that started it does not reach it,
  and its whole process group can be signalled.
- stdout and stderr go to a log file the caller opened (without following symlinks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DB_URL_ENV = "HRM_DB_URL"
"""The registry URL of a child process (workers, the background scheduler)."""


def module_argv(module: str, *args: str) -> list[str]:
    """``python -P -m module args…`` with this interpreter."""
    return [sys.executable, "-P", "-m", module, *args]


def child_env(db_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus the registry URL and the project root first on PYTHONPATH."""
    env = dict(os.environ)
    env[DB_URL_ENV] = db_url
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def spawn(module: str, args: Sequence[str], *, db_url: str, log: IO[bytes],
          env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start ``module`` detached (own session), output appended to ``log``; raises OSError on failure."""
    return subprocess.Popen(
        module_argv(module, *args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env=child_env(db_url, env), cwd=cwd if cwd is not None else os.getcwd(), start_new_session=True,
    )
