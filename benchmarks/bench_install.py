"""Size of a lean install: ``pip install .`` without extras into a fresh venv (issue #13: ≤ 150 MB, no torch).

    python benchmarks/bench_install.py

The same measurement as ``benchmarks/RESULTS.md``'s 94 MB figure: ``python -m venv v && v/bin/pip
install .`` (no extras), then the disk usage of the whole venv, beside the empty venv's own (its pip
and setuptools: the baseline, measured in the same run). The checkout's files (tracked and
untracked-but-not-ignored) are copied to a scratch folder first, so the build writes nothing here.
Needs the package index (PyPI or the machine's pip configuration); takes a minute or so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import wall_seconds  # noqa: E402
HEAVY = ("torch", "numpy", "pandas", "pyarrow", "transformers", "datasets", "matplotlib", "accelerate")
"""What an extra brings and a plain install must not: torch above all."""
LIMIT_MB = 150.0


@dataclass
class InstallFigures:
    venv_mb: float  # the whole venv after `pip install .`
    empty_venv_mb: float  # the same venv before (pip, setuptools)
    packages: list[str]  # `pip list` of the venv, pip and setuptools included
    heavy: list[str]  # those of HEAVY that got installed
    hrm_runs: bool  # `hrm --version` of the new venv exits 0
    first_help_s: float  # wall time of the very first `hrm --help` after the install (the issue saw 9.3 s)
    second_help_s: float  # the same command again (warm: bytecode written, files cached)
    bare_python_s: float  # `python -c pass` of the new venv, after the two: the start-up floor


def disk_mb(folder: Path) -> float:
    """Disk usage of ``folder`` in MiB (``du -s``: allocated blocks, each hard-linked file once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            stat = os.lstat(os.path.join(dirpath, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total / 2**20


def copy_checkout(destination: Path) -> None:
    """The checkout's files as git sees them (tracked, or untracked but not ignored)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def measure_install() -> InstallFigures:
    with tempfile.TemporaryDirectory(prefix="hrm-install-") as tmp:
        source, venv = Path(tmp) / "src", Path(tmp) / "v"
        copy_checkout(source)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        empty = disk_mb(venv)
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        done = subprocess.run([*pip, "install", "-q", str(source)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip install . failed: {done.stderr.strip()[-800:]}")
        listed = json.loads(subprocess.run([*pip, "list", "--format=json"], capture_output=True, text=True,
                                           check=True).stdout)
        names = sorted(p["name"].lower() for p in listed)
        first, second = (wall_seconds([str(venv / "bin" / "hrm"), "--help"], tmp) for _ in range(2))
        hrm = subprocess.run([str(venv / "bin" / "hrm"), "--version"], capture_output=True, cwd=tmp)
        return InstallFigures(venv_mb=disk_mb(venv), empty_venv_mb=empty, packages=names,
                              heavy=[n for n in HEAVY if n in names], hrm_runs=hrm.returncode == 0,
                              first_help_s=first, second_help_s=second,
                              bare_python_s=wall_seconds([str(venv / "bin" / "python"), "-c", "pass"], tmp))


def main() -> int:
    figures = measure_install()
    print(f"`pip install .` (no extras) into a fresh venv: {figures.venv_mb:.0f} MB for the whole venv "
          f"(the empty venv {figures.empty_venv_mb:.0f} MB), {len(figures.packages)} packages (pip list); "
          f"target ≤ {LIMIT_MB:.0f} MB: {'ok' if figures.venv_mb <= LIMIT_MB else 'MISSED'}")
    print(f"heavy packages installed: {', '.join(figures.heavy) or 'none'} (torch must not be); "
          f"`hrm --version` {'runs' if figures.hrm_runs else 'FAILS'}")
    print(f"the first `hrm --help` after the install: {figures.first_help_s:.2f} s wall; the second "
          f"{figures.second_help_s:.2f} s; bare `python -c pass` {figures.bare_python_s:.2f} s")
    print("packages: " + " ".join(figures.packages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
