"""``hrm exec -- python train.py`` from an activated virtual environment, run by a scheduler whose PATH
is another one's: the command must start the interpreter the submitting shell resolved, with its venv."""

from __future__ import annotations

import os
import sys

import pytest

from core.experiments import RecordingEmitter, get_experiment
from core.experiments.exec_cmd import child_argv, run as run_exec

in_venv = pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the test interpreter is not in a venv")


@in_venv
def test_exec_keeps_the_submitters_venv_when_the_workers_path_finds_another_python(tmp_path, monkeypatch, capfd):
    (tmp_path / "train.py").write_text("import sys\nprint('PREFIX=' + sys.prefix)\n")
    config = get_experiment("exec").make_config(argv=["python", "train.py"], cwd=str(tmp_path),
                                                executable=sys.executable)
    # the worker's PATH: a `python` that is the base interpreter, outside the venv
    other = tmp_path / "other-bin"
    other.mkdir()
    base_python = os.path.join(sys.base_prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")
    if not os.path.exists(base_python):
        pytest.skip("no base interpreter at " + base_python)
    (other / "python").symlink_to(base_python)
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}/usr/bin:/bin")

    run_exec(config, RecordingEmitter())
    output = capfd.readouterr().out
    assert f"PREFIX={sys.prefix}" in output.splitlines()


def test_child_argv_uses_the_resolved_program_only_for_a_bare_name(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "run.sh").chmod(0o755)
    exec_exp = get_experiment("exec")
    bare = exec_exp.make_config(argv=["python3", "-c", "pass"], cwd=str(tmp_path))
    assert child_argv(bare) == [bare.executable, "-c", "pass"] and os.path.isabs(bare.executable)
    pathed = exec_exp.make_config(argv=["./run.sh", "x"], cwd=str(tmp_path))
    assert child_argv(pathed) == ["./run.sh", "x"]
