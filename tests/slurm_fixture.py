"""A real one-node Slurm (munged + slurmctld + slurmd on this machine) for the Slurm executor's tests.

``slurm_partition`` starts it with ``tests/slurm/start_slurm.sh`` when running as root with Debian's
``slurm-wlm`` and ``munge`` installed (``apt-get install slurm-wlm munge``), and skips saying which of
those is missing otherwise. Daemons it started are stopped at the end of the session; a cluster that
was already up is left as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SLURM_DIR = Path(__file__).resolve().parent / "slurm"


def slurm_missing() -> str | None:
    """Why the Slurm tests cannot run here (None: they can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to start slurmctld, slurmd and munged (run the slow suite as root, as CI does)"
    missing = [c for c in ("slurmctld", "slurmd", "munged", "sbatch", "scontrol", "scancel") if shutil.which(c) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed: pip install -e '.[slurm]'"
    return None


@pytest.fixture(scope="session")
def slurm_partition():
    """The partition of a running one-node Slurm (``debug``)."""
    why = slurm_missing()
    if why:
        pytest.skip(why)
    done = subprocess.run(["bash", str(SLURM_DIR / "start_slurm.sh")], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"could not start Slurm: {(done.stderr or done.stdout).strip()}")
    started = next((line.split(":", 1)[1].split() for line in done.stdout.splitlines() if line.startswith("started:")), [])
    started = [d for d in started if d in ("munged", "slurmctld", "slurmd")]
    yield "debug"
    if started:
        subprocess.run(["bash", str(SLURM_DIR / "stop_slurm.sh"), *reversed(started)], capture_output=True, timeout=60)
