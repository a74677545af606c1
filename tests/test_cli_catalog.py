"""``hrm experiments`` through its cache: the same output as computing it, recomputed when code changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def hrm(*args: str, cache, extra_env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "120", **(extra_env or {})}
    env.pop("HRM_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-m", "hrm_tui", *args], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_cached_output_is_the_computed_output(cache):
    fresh = hrm("experiments", cache=cache, extra_env={"HRM_NO_CACHE": "1"})
    first = hrm("experiments", cache=cache)
    second = hrm("experiments", cache=cache)
    assert fresh.stdout == first.stdout == second.stdout and "smoke" in fresh.stdout
    fresh_json = json.loads(hrm("experiments", "--json", cache=cache, extra_env={"HRM_NO_CACHE": "1"}).stdout)
    assert json.loads(hrm("experiments", "--json", cache=cache).stdout) == fresh_json
    assert fresh_json["schema"] == "hrm.experiments/v1"
    assert (cache / "hrm-tui" / "experiments.json").exists()


def test_a_second_run_imports_neither_the_catalog_nor_rich(cache):
    hrm("experiments", cache=cache)
    code = ("import sys, runpy\nsys.argv = ['hrm', 'experiments']\n"
            "try:\n    runpy.run_module('hrm_tui', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(' '.join(sorted(sys.modules)))")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "120"}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            timeout=120).stderr.split()
    assert not [m for m in loaded if m.startswith(("core.experiments", "pydantic", "rich"))]


def _tamper(cache, change):
    path = cache / "hrm-tui" / "experiments.json"
    data = json.loads(path.read_text())
    change(data)
    data["entries"] = [{"name": "stale", "description": "stale", "report": None, "headline": None, "parameters": []}]
    data["screens"] = {k: "stale\n" for k in data["screens"]}
    path.write_text(json.dumps(data))


def test_a_changed_source_file_recomputes(cache):
    hrm("experiments", cache=cache)

    def older_source(data):
        path = next(p for p in data["files"] if p.endswith(os.path.join("core", "experiments", "smoke.py")))
        data["files"][path] = [data["files"][path][0], data["files"][path][1] - 1]

    _tamper(cache, older_source)
    assert "stale" not in hrm("experiments", cache=cache).stdout
    assert "stale" not in hrm("experiments", "--json", cache=cache).stdout


def test_an_install_recomputes(cache, tmp_path):
    """A package appearing on sys.path (a plugin installed) changes its directory: the cache is stale."""
    site = tmp_path / "site"
    site.mkdir()
    env = {"PYTHONPATH": str(site)}
    hrm("experiments", cache=cache, extra_env=env)
    _tamper(cache, lambda data: None)
    assert "stale" in hrm("experiments", cache=cache, extra_env=env).stdout  # unchanged: the cache answers
    (site / "new_dist-1.0.dist-info").mkdir()
    os.utime(site, ns=(1, 1))
    assert "stale" not in hrm("experiments", cache=cache, extra_env=env).stdout


def test_an_unusable_cache_location_still_answers(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    out = hrm("experiments", cache=blocker)
    assert "smoke" in out.stdout and not out.stderr
