"""Measurement helpers the benchmarks share: the bare-interpreter baseline and a child's CPU time.

Every speed target of issue #13 is a ratio to a baseline measured in the same run, and most of them
time whole processes. Keeping how a process is timed in one place keeps the ratios comparable across
``bench_cli.py``, ``bench_latency.py`` and ``targets.py``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

BARE_PYTHON = (sys.executable, "-c", "pass")
"""The baseline process: the same interpreter starting and doing nothing."""


def child_cpu_seconds(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> float:
    """User + system CPU seconds of one whole process (stdout discarded), from ``os.wait4``.

    CPU time, not wall time: on a shared machine wall time swings with other load, a process's own
    CPU seconds much less. Raises ``RuntimeError`` with the end of stderr when the process fails.
    """
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-500:]}")
    return usage.ru_utime + usage.ru_stime


def wall_seconds(argv: Sequence[str], cwd: str | Path | None = None) -> float:
    """Wall seconds of one run of ``argv`` (its output discarded; a failure raises)."""
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, cwd=cwd, check=True)
    return time.perf_counter() - started


def bare_python_wall() -> float:
    """Wall seconds of one bare interpreter start-up (the baseline of the wall-clock latency targets)."""
    return wall_seconds(BARE_PYTHON)


def interleaved_cpu(cases: Mapping[str, Sequence[str]], env: Mapping[str, str], repeats: int, *,
                    warmup: int = 2) -> dict[str, list[float]]:
    """CPU seconds of each case's process, ``repeats`` times each, interleaved in a shuffled order.

    Every repeat runs each case once, so a burst of load on the machine falls on all of them alike;
    ``warmup`` untimed rounds first compile byte code and warm caches.
    """
    for _ in range(warmup):
        for argv in cases.values():
            child_cpu_seconds(argv, env)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    for _ in range(repeats):
        random.shuffle(order)
        for name in order:
            samples[name].append(child_cpu_seconds(cases[name], env))
    return samples


def hrm_argv() -> list[str]:
    """The installed ``hrm`` script next to this interpreter, else ``python -m hrm_tui``."""
    script = Path(sys.executable).parent / "hrm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hrm_tui"]


def load_average() -> float:
    return os.getloadavg()[0]
