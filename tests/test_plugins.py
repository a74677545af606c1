"""Experiment and report plugins: entry points ``hrm.experiments`` / ``hrm.reports``.

The end-to-end tests install two real packages from ``tests/fixtures/`` (a demo plugin with an
experiment and a report, and a broken one with four kinds of bad entry point) into a test venv
layered on the project's (see ``tests/fixtures/plugin_venv.py``), then drive ``hrm`` and the real
scheduler and worker under that venv's Python. The unit tests feed real ``EntryPoint`` objects to
the loader in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from core import experiments, plugins, published
from core.registry import open_database
from tests.conftest import ROOT
from tests.fixtures.plugin_venv import make_plugin_venv

DEMO = "demo-exp"


# --- the loader, in-process ------------------------------------------------------------------------

def _points(group: str, **targets: str) -> list[EntryPoint]:
    return [EntryPoint(name=name.replace("_", "-"), value=value, group=group) for name, value in targets.items()]


@pytest.fixture
def fresh_catalog():
    experiments.catalog.cache_clear()
    published.report_plugins.cache_clear()
    published.load.cache_clear()
    yield
    experiments.catalog.cache_clear()
    published.report_plugins.cache_clear()
    published.load.cache_clear()


def test_loader_keeps_good_plugins_and_explains_each_skip(monkeypatch, fresh_catalog):
    fake = {plugins.EXPERIMENT_GROUP: _points(
        plugins.EXPERIMENT_GROUP,
        smoke="core.experiments.smoke:EXPERIMENT",                     # clashes with the built-in
        missing_module="hrm_no_such_module_anywhere:EXPERIMENT",      # fails to import
        wrong_object="core.experiments.smoke:SmokeConfig",            # not an Experiment
        renamed="core.experiments.smoke:EXPERIMENT",                  # entry point name != experiment name
    )}
    monkeypatch.setattr(plugins, "entry_points", lambda group: fake.get(group, []))
    catalog = experiments.catalog()
    assert "smoke" in catalog and experiments.origin("smoke") == "built-in"
    assert not {"missing-module", "wrong-object", "renamed"} & set(catalog)
    lines = {p.name: p.line() for p in experiments.plugin_problems()}
    assert set(lines) == {"smoke", "missing-module", "wrong-object", "renamed"}
    assert "clashes with the built-in 'smoke'" in lines["smoke"]
    assert "failed to import: ModuleNotFoundError" in lines["missing-module"]
    assert "not a core.experiments.base.Experiment" in lines["wrong-object"]
    assert "calls itself 'smoke'" in lines["renamed"]
    assert all("\n" not in line for line in lines.values())
    with pytest.raises(experiments.UnknownExperiment, match="is not available: plugin experiment 'missing-module'"):
        experiments.get_experiment("missing-module")


def test_plugin_experiment_joins_the_catalog_under_its_name(monkeypatch, fresh_catalog, tmp_path):
    module = tmp_path / "hrm_inline_plugin.py"
    module.write_text("from core.experiments.smoke import EXPERIMENT as SMOKE\n"
                      "import dataclasses\n"
                      "EXPERIMENT = dataclasses.replace(SMOKE, name='smoke-copy')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = _points(plugins.EXPERIMENT_GROUP, smoke_copy="hrm_inline_plugin:EXPERIMENT")
    monkeypatch.setattr(plugins, "entry_points", lambda group: fake if group == plugins.EXPERIMENT_GROUP else [])
    assert list(experiments.catalog())[-1] == "smoke-copy"
    assert experiments.origin("smoke-copy").startswith("plugin")
    assert experiments.get_experiment("smoke-copy").make_config(epochs=2).epochs == 2
    assert experiments.plugin_problems() == []


def test_report_plugin_document_is_validated(monkeypatch, fresh_catalog, tmp_path):
    good = json.loads((Path(published.__file__).parent / "002.json").read_text())
    good["report"] = "lab"
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(good))
    bad = {**good, "report": "other"}
    import types

    module = types.ModuleType("hrm_inline_reports")
    module.GOOD, module.BAD, module.NOT_JSON = path, bad, 42
    monkeypatch.setitem(__import__("sys").modules, "hrm_inline_reports", module)
    fake = _points(plugins.REPORT_GROUP, lab="hrm_inline_reports:GOOD", other_name="hrm_inline_reports:BAD",
                   number="hrm_inline_reports:NOT_JSON")
    monkeypatch.setattr(plugins, "entry_points", lambda group: fake if group == plugins.REPORT_GROUP else [])
    assert published.reports() == (*published.REPORTS, "lab")
    assert published.load("lab")["tables"] == good["tables"]
    problems = {p.name: p.line() for p in published.report_plugins()[1]}
    assert "document says report 'other'" in problems["other-name"]
    assert "expected a dict, a JSON path or a callable" in problems["number"]
    with pytest.raises(published.PublishedError, match="report 'number' is not available"):
        published.load("number")


def test_no_plugins_env_switch(monkeypatch, fresh_catalog):
    monkeypatch.setenv("HRM_NO_PLUGINS", "1")
    assert plugins.entry_points(plugins.EXPERIMENT_GROUP) == []


# --- installed packages, end to end ------------------------------------------------------------------

@pytest.fixture(scope="session")
def plugin_python(tmp_path_factory) -> Path:
    """A venv with tests/fixtures/hrm_demo_plugin and hrm_broken_plugin pip-installed (built once a session)."""
    return make_plugin_venv(tmp_path_factory.mktemp("plugin-venv"), ["hrm_demo_plugin", "hrm_broken_plugin"])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HRM_DB", "HRM_NO_PLUGINS")}
    env.update(PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", COLUMNS="200")
    return env


def hrm(python: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "hrm_tui", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout)


def drain(python: Path, db: Path) -> None:
    """Run every queued run with the real scheduler (under the plugin venv's Python) and wait for it."""
    result = subprocess.run([str(python), "-m", "core.scheduler", "--db", str(db), "--once"], capture_output=True,
                            text=True, env=_env(), timeout=180)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_plugin_experiment_end_to_end(plugin_python, tmp_path):
    db = tmp_path / "runs.db"
    listing = hrm(plugin_python, "experiments", "--json")
    assert listing.returncode == 0, listing.stderr
    names = [e["name"] for e in json.loads(listing.stdout)["experiments"]]
    assert DEMO in names and "lpt" in names and "broken-import" not in names
    warnings = [line for line in listing.stderr.splitlines() if line.startswith("warning: plugin")]
    assert len(warnings) == 3, listing.stderr  # broken-import, the 'lpt' clash, not-an-experiment

    queued = hrm(plugin_python, "run", DEMO, "--lr", "0.3", "--epochs", "3", "--db", str(db), "--no-start-scheduler")
    assert queued.returncode == 0, queued.stderr
    run_id = int(queued.stdout.strip())
    drain(plugin_python, db)
    shown = hrm(plugin_python, "show", str(run_id), "--json", "--db", str(db))
    run = json.loads(shown.stdout)["run"]
    assert run["status"] == "completed" and run["experiment"] == DEMO
    val_ppl = [m["value"] for m in run["metrics"] if m["kind"] == "epoch" and m["key"] == "val_ppl"]
    assert val_ppl == pytest.approx([10 + 40 * 0.7 ** e for e in (1, 2, 3)])
    assert {m["layer"] for m in run["metrics"] if m["kind"] == "layer"} == {1, 2}

    bad = hrm(plugin_python, "run", DEMO, "--lr", "1.5", "--db", str(db), "--no-start-scheduler")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--lr" in bad.stderr


@pytest.mark.slow
def test_report_plugin_reproduce_compare_check_and_report(plugin_python, tmp_path):
    db = str(tmp_path / "runs.db")
    before = hrm(plugin_python, "compare", "--report", "demo", "--check", "--db", db)
    assert before.returncode != 0, "no runs yet: the check cannot pass"
    queued = hrm(plugin_python, "reproduce", "demo", "--db", db, "--no-start-scheduler")
    assert queued.returncode == 0, queued.stderr
    assert "2 queued" in queued.stdout + queued.stderr
    drain(plugin_python, Path(db))
    check = hrm(plugin_python, "compare", "--report", "demo", "--check", "--db", db)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "8 published numbers: 8 ok" in check.stdout

    # pin the lr 0.5 cell to a run with other numbers: the exact class must flag it
    other = hrm(plugin_python, "run", DEMO, "--lr", "0.3", "--variant", "published", "--db", db,
                "--no-start-scheduler")
    drain(plugin_python, Path(db))
    pinned = hrm(plugin_python, "compare", "--report", "demo", "--check", "--use", f"lr05={other.stdout.strip()}",
                 "--db", db)
    assert pinned.returncode == 1 and "✗" in pinned.stdout

    out = tmp_path / "report"
    written = hrm(plugin_python, "report", "demo", "--out", str(out), "--db", db)
    assert written.returncode == 0, written.stderr
    text = (out / "report-demo.md").read_text()
    assert "the demo lab's learning-rate note" in text and "| lr 0.2 | " in text


@pytest.mark.slow
def test_broken_plugins_reported_one_line_each_and_harmless(plugin_python, tmp_path):
    db = str(tmp_path / "runs.db")
    doctor = hrm(plugin_python, "doctor", "--db", db)
    assert doctor.returncode == 1
    failed = [line for line in doctor.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 4, doctor.stdout
    assert any("'broken-import'" in line and "No module named 'hrm_dependency_that_is_not_installed'" in line
               for line in failed)
    assert any("'lpt'" in line and "clashes with the built-in" in line for line in failed)
    assert any("'bad-report'" in line and "invalid report document" in line for line in failed)
    assert any(line.startswith("ok") and "'demo-exp'" in line for line in doctor.stdout.splitlines())

    missing = hrm(plugin_python, "run", "broken-import", "--db", db)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "hrm_dependency_that_is_not_installed" in missing.stderr
    assert not Path(db).exists(), "bad input writes nothing"
    open_database(db, create=True).dispose()
    report = hrm(plugin_python, "compare", "--report", "bad-report", "--db", db)
    assert report.returncode == 2 and report.stderr.count("\n") == 1
    assert "report 'bad-report' is not available" in report.stderr


def test_doctor_checks_each_area(db_path, fresh_catalog):
    from core.doctor import FAIL, OK, WARN, run_checks

    missing = run_checks(str(db_path))
    assert missing[0].area == "registry" and missing[0].status == WARN and "does not exist yet" in missing[0].detail
    open_database(db_path, create=True).dispose()
    checks = run_checks(str(db_path))
    assert {c.area for c in checks} == {"registry", "plugins", "extras", "data", "gpu"}
    assert [c.status for c in checks if c.area == "registry"] == [OK, OK]
    assert any(c.detail.startswith("[test]") for c in checks if c.area == "extras")
    assert all(c.status != FAIL for c in checks), [c for c in checks if c.status == FAIL]
