"""A plain install (issue #13): registry, CLI and dashboard work without torch and the other extras;
a missing extra is one line naming what to install."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from core.extras import EXTRA_OF, missing_extra
from core.registry import open_database, store
from tests.conftest import ROOT

EXTRAS_MODULES = ("torch", "numpy", "transformers", "gguf", "accelerate", "datasets", "matplotlib", "safetensors")
BLOCK = f"""
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _NotInstalled())
sys.path.insert(0, {str(ROOT)!r})
"""


def without_extras(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` in an interpreter where the extras' packages cannot be imported."""
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True, timeout=120)


def hrm_without_extras(*args: str) -> subprocess.CompletedProcess:
    return without_extras("import runpy\nsys.argv = ['hrm', *sys.argv[1:]]\nrunpy.run_module('hrm_tui', run_name='__main__')",
                          *args)


def test_the_cli_and_the_dashboard_need_no_extra(db_path, tmp_path):
    for args in (["run", "smoke", "--epochs", "2", "--no-start-scheduler"], ["ls"], ["ls", "--json"], ["show", "1"],
                 ["experiments"], ["--help"]):
        out = hrm_without_extras("--db", str(db_path), *args)
        assert out.returncode == 0, (args, out.stderr)
    # A run that needs torch is refused at submit on a SQLite registry (its workers run in this environment).
    refused = hrm_without_extras("--db", str(db_path), "run", "lpt", "--no-start-scheduler")
    assert refused.returncode == 1 and refused.stderr == "error: lpt: torch is not installed: pip install 'hrm-tui[train]'\n"
    assert hrm_without_extras("--db", str(db_path), "ls", "--json", "--all").stdout.count('"experiment"') == 1
    dashboard = without_extras("import hrm_tui.tui.app\nprint('ok')")
    assert dashboard.stdout == "ok\n", dashboard.stderr


def test_a_run_without_its_extra_fails_naming_the_extra(db_path):
    db = open_database(db_path, create=True)
    smoke = store.create_run(db, "smoke", {"epochs": 2})
    lpt = store.create_run(db, "lpt", {})
    code = "from core.worker import execute\nprint(execute(sys.argv[1], int(sys.argv[2])))"
    assert without_extras(code, db.url, str(smoke.id)).returncode == 0
    without_extras(code, db.url, str(lpt.id))
    assert store.get_run(db, smoke.id).status == "completed"
    failed = store.get_run(db, lpt.id)
    assert failed.status == "failed" and failed.error == "torch is not installed: pip install 'hrm-tui[train]'"
    db.dispose()


def test_missing_extra_lines():
    assert missing_extra(ModuleNotFoundError("x", name="transformers.models")) == \
        "transformers is not installed: pip install 'hrm-tui[smollm2]'"
    assert missing_extra(ModuleNotFoundError("x", name="not_an_extra")) is None
    assert missing_extra(ValueError("torch")) is None


def test_the_install_is_lean_and_the_extras_cover_the_rest():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert not any(name in base for name in EXTRAS_MODULES), base
    extras = project["optional-dependencies"]
    for name in ("train", "smollm2", "hub", "report", "all"):
        assert name in extras
    declared = {req.split(">")[0].split("[")[0].strip().lower() for reqs in extras.values() for req in reqs}
    for module, extra in EXTRA_OF.items():
        assert extra in extras, (module, extra)
    assert {"torch", "numpy", "transformers", "gguf", "accelerate", "datasets", "matplotlib"} <= declared
    assert any("[all" in req for req in extras["test"]), "the README's `pip install -e .[test]` installs everything"
