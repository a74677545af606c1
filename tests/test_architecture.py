"""core/ stays headless: no UI library is imported by the worker, the scheduler or the façade."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env

UI_MODULES = ("textual", "typer", "rich", "hrm_tui")


def test_core_imports_no_ui_library():
    code = (
        "import sys, core.api, core.worker, core.scheduler.loop, core.experiments\n"
        "core.experiments.catalog()\n"
        f"print(sorted(m for m in {UI_MODULES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_listing_the_catalog_does_not_import_torch():
    code = "import sys, core.experiments; core.experiments.catalog(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


LINT_IMPORTS = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed")
def test_import_linter_contract():
    out = subprocess.run([LINT_IMPORTS], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
