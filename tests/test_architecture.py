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


# --- SQL lives only in core.registry ------------------------------------------------------------

SQL_LIBRARIES = ("sqlalchemy", "sqlmodel", "sqlite3")


def _import_graph():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter")
    return grimp.build_graph("core", "hrm_tui", include_external_packages=True)


def _contract(name_start: str) -> dict:
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        contracts = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["name"].startswith(name_start))


def test_only_the_registry_imports_a_sql_library():
    graph = _import_graph()
    outside = {lib: sorted(m for m in graph.find_modules_that_directly_import(lib)
                           if m != "core.registry" and not m.startswith("core.registry."))
               for lib in SQL_LIBRARIES if lib in graph.modules}
    assert outside == {lib: [] for lib in outside}, "move the SQL into a named function in core/registry/"


def test_the_sql_contract_covers_every_module_outside_the_registry():
    """A new core module is not silently outside the ``SQL lives only in core.registry`` contract."""
    children = set(_import_graph().find_children("core")) - {"core.registry"}
    contract = _contract("SQL lives only in core.registry")
    assert set(contract["source_modules"]) == children | {"hrm_tui"}
    assert set(SQL_LIBRARIES) <= set(contract["forbidden_modules"])


# --- the front ends go through the façade ------------------------------------------------------

FRONT_END_MAY_IMPORT = {
    "core.api", "core.facade", "core.errors", "core.compare", "core.experiments.schema",
    "core.registry.view", "core.registry.status", "core.registry.attempt_view",
}
"""Issue #10: the façade (``core.api`` and its lazy part ``core.facade``), the errors, the comparison tables,
the experiment schema and the registry's view types."""


def test_the_front_ends_import_only_the_facade_and_the_view_types():
    graph = _import_graph()
    front = {"hrm_tui"} | set(graph.find_descendants("hrm_tui"))
    reached = {(m, i) for m in front for i in graph.find_modules_directly_imported_by(m)
               if i == "core" or i.startswith("core.")}
    assert sorted((m, i) for m, i in reached if i not in FRONT_END_MAY_IMPORT) == []


def test_the_facade_contract_forbids_every_other_core_module():
    """The import-linter allow-list is a ``forbidden`` list: it must name every module beside the allowed ones."""
    graph = _import_graph()
    packages = {"core", "core.registry", "core.experiments"}
    others = {c for p in packages for c in graph.find_children(p)} - FRONT_END_MAY_IMPORT - packages
    contract = _contract("front ends go through the facade")
    assert contract["source_modules"] == ["hrm_tui"]
    assert set(contract["forbidden_modules"]) - {"sqlalchemy", "sqlmodel"} == others


def test_the_facade_resolves_every_name_it_offers():
    code = ("import sys, core.facade as f\n"
            "heavy = sorted(m for m in ('sqlalchemy', 'pydantic', 'core.api', 'core.experiments') if m in sys.modules)\n"
            "missing = [n for n in f.__all__ if getattr(f, n, None) is None]\n"
            "print(heavy, missing)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"  # importing it loads nothing heavy; each name is there on first use
