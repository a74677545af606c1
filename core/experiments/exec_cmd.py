"""``exec``: any command as a run (``hrm exec -- python train.py --lr 1e-3``).

The config holds the command (``argv``), the folder it runs in, a label and the environment
variables given with ``--env`` (the worker's environment is the scheduler's, not the submitting
shell's; nothing else of the shell is recorded, so no secret lands in the registry). The program is resolved
on ``PATH`` when the run is submitted (so ``python`` means the interpreter of the submitting shell,
wherever the scheduler was started), and a missing program or script is refused right there.

``run`` starts the command as a child of the worker. The child stays in the worker's process group:
the scheduler's SIGTERM on cancel reaches both, and its SIGKILL after the grace period cannot leave
the child orphaned; the worker also forwards SIGTERM itself, then kills the child after a grace of
its own. The child's stdout and stderr are pumped into the worker's output, which is the run's log,
and its exit code decides the run's status. The child gets ``HRM_RUN_ID`` and ``HRM_DB`` so that
``hrm_tui.init()`` inside it attaches to this run instead of creating another.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from typing import Any

from pydantic import Field, model_validator

from core.experiments.base import Emitter, Experiment, ExperimentConfig

RUN_ID_ENV = "HRM_RUN_ID"
DB_ENV = "HRM_DB"
CHILD_GRACE_S = 5.0
"""Seconds the worker gives a cancelled command between its SIGTERM and a SIGKILL."""

_ENV_ITEM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SCRIPT_RUNNERS = re.compile(r"^(python[\d.]*|pypy[\d.]*|bash|sh|zsh|Rscript|julia|node|perl|ruby)$")


class CommandFailed(RuntimeError):
    """The command exited with a non-zero code (or was killed by a signal)."""


class ExecConfig(ExperimentConfig):
    """A command line to run as it would run in the submitting shell."""

    argv: tuple[str, ...] = Field((), description="the command and its arguments (after -- on hrm exec)")
    cwd: str = Field("", description="folder the command runs in (default: where it was submitted)")
    name: str = Field("", max_length=200, description="a label for the run (default: the command)")
    executable: str = Field("", description="the program, resolved on PATH at submit time")
    gpus: int = Field(1, ge=0, le=1, description="0: hide the GPUs from the command; 1: the run's GPU slot")
    env: tuple[str, ...] = Field((), description="KEY=VALUE environment variables for the command (repeatable)")

    @model_validator(mode="before")
    @classmethod
    def _resolve_paths(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = dict(values)
        cwd = os.path.abspath(os.path.expanduser(values.get("cwd") or os.getcwd()))
        values["cwd"] = cwd
        argv = values.get("argv") or ()
        if isinstance(argv, str):
            values["argv"] = argv = tuple(shlex.split(argv))
        if argv and not values.get("executable"):
            values["executable"] = resolve_program(argv[0], cwd) or ""
        return values

    @model_validator(mode="after")
    def _command_exists(self) -> ExecConfig:
        if not self.argv:
            raise ValueError("no command: give it after --, e.g. hrm exec -- python train.py")
        if not os.path.isdir(self.cwd):
            raise ValueError(f"--cwd: {self.cwd!r} is not a folder")
        program = self.argv[0]
        if not self.executable:
            where = f"in {self.cwd}" if os.sep in program else "on PATH"
            raise ValueError(f"command {program!r} not found {where}")
        if not (os.path.isfile(self.executable) and os.access(self.executable, os.X_OK)):
            raise ValueError(f"command {program!r}: {self.executable} is not an executable file")
        for item in self.env:
            if not _ENV_ITEM.match(item):
                raise ValueError(f"--env: {item!r} is not KEY=VALUE")
        script = script_argument(self.argv)
        if script is not None and not os.path.isfile(os.path.join(self.cwd, os.path.expanduser(script))):
            raise ValueError(f"script {script!r} does not exist in {self.cwd}")
        return self


def resolve_program(program: str, cwd: str) -> str | None:
    """The absolute path of ``program``: relative to ``cwd`` when it names a path, else found on PATH."""
    program = os.path.expanduser(program)
    if os.sep in program:
        path = os.path.normpath(os.path.join(cwd, program))
        return path if os.path.exists(path) else None
    return shutil.which(program)


def child_argv(config: "ExecConfig") -> list[str]:
    """The argv the child sees: a bare program name becomes the path resolved at submit time.

    A Python interpreter finds its virtual environment from ``argv[0]``; left as ``python`` it
    would search the worker's PATH (the scheduler's, not the submitting shell's) and start
    another interpreter's ``sys.prefix``, without the venv's packages.
    """
    argv = list(config.argv)
    if config.executable and os.sep not in argv[0]:
        argv[0] = config.executable
    return argv


def script_argument(argv: tuple[str, ...]) -> str | None:
    """The script file of ``python x.py`` / ``bash run.sh`` (None for ``python -m pkg``, ``-c``, other programs)."""
    if len(argv) < 2 or not _SCRIPT_RUNNERS.match(os.path.basename(argv[0])):
        return None
    first = argv[1]
    return None if first.startswith("-") else first


def _tracking_env(emit: Emitter) -> dict[str, str]:
    """``HRM_RUN_ID`` and ``HRM_DB`` for the child, when the emitter writes into a registry."""
    run_id = getattr(emit, "run_id", None)
    url = getattr(getattr(emit, "db", None), "url", None) or os.environ.get("HRM_DB_URL")
    if run_id is None or not url:
        return {}
    return {RUN_ID_ENV: str(run_id), DB_ENV: str(url)}


class _OutputPump(threading.Thread):
    """Copies the child's output into the worker's stdout as it arrives, keeping the last bytes."""

    def __init__(self, stream, keep: int = 8000) -> None:
        super().__init__(name="exec-output", daemon=True)
        self.stream = stream
        self.tail: deque[bytes] = deque()
        self.kept = 0
        self.keep = keep

    def run(self) -> None:
        out = getattr(sys.stdout, "buffer", None)
        fd = self.stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                sys.stdout.write(chunk.decode("utf-8", "replace"))
                sys.stdout.flush()
            self.tail.append(chunk)
            self.kept += len(chunk)
            while self.kept - len(self.tail[0]) >= self.keep:
                self.kept -= len(self.tail.popleft())

    def text(self) -> str:
        return b"".join(self.tail).decode("utf-8", "replace")

    def last_line(self) -> str:
        lines = [line.strip() for line in self.text().splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the child, then SIGKILL it if it is still there after the grace period."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=CHILD_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run(config: ExecConfig, emit: Emitter) -> None:
    env = dict(os.environ)
    env.update(_tracking_env(emit))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(item.split("=", 1) for item in config.env)
    if config.gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = shlex.join(config.argv)
    emit.info(command=command, cwd=config.cwd, executable=config.executable, label=config.name or command,
              data_source="exec")
    emit.log(f"exec: {command} (in {config.cwd})")
    proc = subprocess.Popen(child_argv(config), executable=config.executable, cwd=config.cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pump = _OutputPump(proc.stdout)
    pump.start()
    try:
        code = proc.wait()
    except BaseException:  # cancelled (the worker's SIGTERM) or interrupted: never leave the child behind
        _stop(proc)
        pump.join(timeout=2)
        raise
    pump.join(timeout=2)
    emit.info(command_exit_code=code)
    if code != 0:
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        last = pump.last_line()
        failure = CommandFailed(f"command {how}" + (f": {last}" if last else ""))
        if hasattr(failure, "add_note"):  # the run's stderr tail (the worker's traceback) ends with the command's own
            failure.add_note("--- the command's last output ---\n" + pump.text()[-3000:].rstrip())
        raise failure


EXPERIMENT = Experiment(
    "exec",
    "any command as a run: hrm exec -- python train.py (the script logs through hrm_tui.init())",
    ExecConfig,
    run,
)
