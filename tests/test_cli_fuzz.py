"""Hypothesis fuzzes ``hrm``'s options: every input either runs or ends with one ``error:`` line,
exit 1 or 2, never a traceback (issue #14)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from core.registry import open_database, store
from hrm_tui.cli import app

runner = CliRunner()

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "-1", "1", "2", str(2**63 - 1), str(2**63), str(10**20), str(-(2**63) - 1), "",
                     "x", "1.5", "1e3", "nan", "inf", "-0", "+5", "٣", " 7", "0x10"]),
)
TEXT = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(["", " ", "a" * 300, "smoke", "004", "5-11", "exp10.routed=1", "seed=1,2", "epochs=1,2",
                     "lr=", "=", "--", "-x", "{}", "\udcff", "queued", "status == 'queued'", "'", "\\", "%s"]),
)
PATHS = st.sampled_from(["", "/dev/full", "/proc/nope/x.md", "a" * 300 + ".md", "/", "x.unknown", "/proc/x/"])
FORMATS = st.sampled_from(["table", "markdown", "csv", "json", "latex", "yaml", ""])


def _not_a_live_run(value: str) -> bool:
    """``hrm follow`` of a run that never ends would wait forever: only ids that are not runs here."""
    return not (value.strip().lstrip("+").isdigit() and 1 <= int(value) <= 1000)


COMMANDS = st.one_of(
    st.tuples(st.sampled_from(["show", "cancel", "logs"]), NUMBERS).map(list),
    st.tuples(st.just("delete"), NUMBERS, st.just("--yes")).map(list),
    st.tuples(st.just("retry"), NUMBERS, st.just("--no-start-scheduler")).map(list),
    st.tuples(st.just("follow"), NUMBERS.filter(_not_a_live_run)).map(list),
    st.tuples(st.just("ls"), st.sampled_from(["--last", "--offset", "-n"]), NUMBERS, st.sampled_from(["", "--json"]))
    .map(lambda t: [x for x in t if x]),
    st.tuples(st.just("ls"), st.sampled_from(["--tag", "-s", "--experiment"]), TEXT).map(list),
    st.tuples(st.just("compare"), NUMBERS, st.just("--baseline"), NUMBERS).map(list),
    st.tuples(st.just("compare"), st.just("--experiment"), TEXT, st.just("--last"), NUMBERS).map(list),
    st.tuples(st.just("compare"), st.just("1"), st.just("--out"), PATHS, st.just("--format"), FORMATS).map(list),
    st.tuples(st.just("compare"), st.just("--report"), TEXT, st.just("--use"), TEXT).map(list),
    st.tuples(st.just("compare"), st.just("--report"), st.just("004"), st.just("--exp"), TEXT,
              st.just("--format"), st.just("json")).map(list),
    st.tuples(st.just("run"), st.just("smoke"), st.just("--priority"), NUMBERS, st.just("--epochs"), NUMBERS,
              st.just("--no-start-scheduler")).map(list),
    st.tuples(st.just("run"), st.just("smoke"), st.sampled_from(["--tag", "--device", "--variant"]), TEXT,
              st.just("--no-start-scheduler")).map(list),
    st.tuples(st.just("sweep"), st.just("smoke"), st.just("--seeds"), NUMBERS, st.just("--dry-run")).map(list),
    st.tuples(st.just("sweep"), st.just("smoke"), st.sampled_from(["--param", "--set"]), TEXT,
              st.just("--dry-run")).map(list),
    st.tuples(st.just("sweep"), st.just("smoke"), st.just("--priority"), NUMBERS, st.just("--seeds"), st.just("2"),
              st.just("--no-start-scheduler")).map(list),
    st.tuples(st.just("reproduce"), TEXT, st.just("--dry-run")).map(list),
    st.tuples(st.just("reproduce"), st.just("004"), st.sampled_from(["--only", "--priority"]), TEXT,
              st.just("--dry-run")).map(list),
    st.tuples(st.just("report"), st.sampled_from(["004", "999", ""]), st.just("--out"), PATHS).map(list),
)


def three_runs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hrm-fuzz-") as tmp:
        path = Path(tmp) / "runs.db"
        db = open_database(path, create=True)
        for seed in range(3):
            run = store.create_run(db, "smoke", {"epochs": 2, "seed": seed}, headline_key="best_val_ppl")
            store.append_metrics(db, run.id, "epoch", {"val_ppl": 9.0 + seed}, epoch=1, total=2)
        db.dispose()
        yield path


@pytest.fixture(scope="module")
def registry():
    """Shared by the fuzzed inputs, which may delete, cancel or add runs in it."""
    yield from three_runs()


@pytest.fixture(scope="module")
def intact_registry():
    """Runs 1-3 as created: the fixed inputs below name run 1 (the fuzzed ones may have deleted it)."""
    yield from three_runs()


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(args=COMMANDS)
def test_every_input_runs_or_gets_one_error_line(registry, monkeypatch, args):
    monkeypatch.setenv("XDG_CACHE_HOME", str(registry.parent / "cache"))
    monkeypatch.chdir(registry.parent)
    result = runner.invoke(app, ["--db", str(registry), *args], env={"COLUMNS": "100"})
    where = f"hrm {args!r} -> {result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), where + repr(result.exception)
    assert result.exit_code in (0, 1, 2), where
    assert "Traceback" not in result.output, where
    if result.exit_code:
        lines = [line for line in result.output.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], where


BIG = str(2**63)
LONG = "a" * 300 + ".csv"


@pytest.mark.parametrize(("args", "code", "message"), [
    (["show", BIG], 2, "RUN_ID"),
    (["cancel", "99999999999999999999"], 2, "RUN_ID"),
    (["ls", "--last", BIG], 2, "--last"),
    (["run", "smoke", "--priority", BIG, "--no-start-scheduler"], 2, "--priority"),
    (["compare", BIG], 2, "RUN_ID"),
    (["compare", "1", "--baseline", BIG], 2, "--baseline"),
    (["compare", "--experiment", "smoke", "--last", BIG], 2, "--last"),
    (["compare", "--report", "004", "--use", f"exp10.routed={BIG}"], 2, "--use"),
    (["sweep", "smoke", "--priority", BIG, "--seeds", "2", "--no-start-scheduler"], 2, "--priority"),
    (["sweep", "smoke", "--seeds", "99999999999999999999", "--dry-run"], 2, "more than 2000"),
    (["compare", "1", "--out", "/dev/full", "--format", "csv"], 1, "No space left on device"),
    (["compare", "1", "--out", "/proc/nope/x.csv"], 1, "cannot write --out"),
    (["compare", "1", "--out", LONG], 1, "File name too long"),
    (["compare", "1", "--out", ""], 2, "--out: empty path"),
    (["report", "004", "--out", ""], 2, "--out: empty path"),
    (["report", "004", "--out", "a" * 300], 1, "File name too long"),
    (["reproduce", "004", "--only", "0\r\n0", "--dry-run"], 2, "\\r\\n"),
])
def test_issue_14_inputs(intact_registry, monkeypatch, args, code, message):
    registry = intact_registry
    monkeypatch.chdir(registry.parent)
    result = runner.invoke(app, ["--db", str(registry), *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not (registry.parent / "report-004.md").exists()


def test_sweep_limit_is_checked_before_the_seeds_exist(registry):
    """10**20 seeds used to grow to gigabytes before the 2,000-point check."""
    import resource
    import subprocess
    import sys

    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "sys.argv = ['hrm', 'sweep', 'smoke', '--seeds', '99999999999999999999', '--dry-run']\n"
            "from hrm_tui.cli import main\nmain()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: the grid has 99999999999999999999 points"), out.stderr
    assert resource  # (the limit above would turn the old behaviour into a MemoryError)


def test_output_to_a_full_disk_is_one_line(registry):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "hrm_tui", "--db", str(registry), "ls", "--json", "--all"]
    with open("/dev/full", "w") as full:
        out = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr == "error: cannot write the output: No space left on device\n"


def test_bytes_that_are_not_utf8_are_a_usage_error(registry):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "hrm_tui", "--db", str(registry), "ls", "--tag", b"\xff".decode(
        "utf-8", "surrogateescape")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr == "error: Invalid value: argument '\\xff' is not UTF-8 text\n", out.stderr
