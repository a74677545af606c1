"""The ``hrm`` package itself: lazy command loading, root state, ``--db`` precedence, help texts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from core.registry import open_database, store
from hrm_tui.cli import COMMANDS, app

runner = CliRunner()


def hrm(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def imported_after(code: str) -> set[str]:
    """Module names a fresh interpreter has loaded after running ``code``."""
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_importing_the_cli_loads_no_command_and_no_core():
    loaded = imported_after("import hrm_tui.cli")
    heavy = {"core", "rich", "pydantic", "sqlalchemy", "torch", "textual", "hrm_tui.cli.runs", "hrm_tui.cli.run"}
    assert not heavy & loaded, heavy & loaded


def test_root_help_lists_every_command_without_importing_them():
    code = ("from hrm_tui.cli import app\nimport typer.main\n"
            "try:\n    typer.main.get_command(app).main(['--help'], prog_name='hrm')\nexcept SystemExit:\n    pass")
    loaded = imported_after(code)
    commands = {m for m in loaded if m.startswith(("core", "hrm_tui.cli."))} - {"hrm_tui.cli.coercion", "hrm_tui.cli.helpfmt"}
    assert not commands, "the table's help is enough for --help"
    result = hrm("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_table_entry_loads_and_has_help(name):
    result = hrm(name, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output and "Traceback" not in result.output


def test_usage_and_flags_read_plainly():
    show = hrm("show", "--help").output
    assert "RUN_ID" in show and "{RUN_ID}" not in show and "{run_id}" not in show
    assert "<bool>" not in show
    run = hrm("run", "smoke", "--help").output
    assert "<bool>" not in run and "--follow" in run
    assert "[default: 42]" in run  # Typer's own default, not swallowed as markup


def test_version():
    result = hrm("--version")
    assert result.exit_code == 0 and result.output.startswith("hrm-tui ")


def _two_registries(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for path in (a, b):
        db = open_database(path, create=True)
        store.create_run(db, "smoke", {"epochs": 1})
        db.dispose()
    return a, b


def _status(path, run_id=1):
    db = open_database(path)
    try:
        return store.get_run(db, run_id).status
    finally:
        db.dispose()


@pytest.mark.parametrize("where", ["root", "command"])
def test_explicit_db_beats_the_environment(tmp_path, where):
    """Issue #14: `HRM_DB=a.db hrm --db b.db cancel 1` cancelled run 1 of a.db."""
    a, b = _two_registries(tmp_path)
    args = ["--db", str(b), "cancel", "1"] if where == "root" else ["cancel", "1", "--db", str(b)]
    result = hrm(*args, env={"HRM_DB": str(a)})
    assert result.exit_code == 0, result.output
    assert _status(b) == "cancelled"
    assert _status(a) == "queued"


def test_command_db_beats_root_db_and_environment_is_the_fallback(tmp_path):
    a, b = _two_registries(tmp_path)
    listed = hrm("--db", str(a), "ls", "--json", "--db", str(b))
    assert listed.exit_code == 0
    assert hrm("cancel", "1", env={"HRM_DB": str(a)}).exit_code == 0
    assert _status(a) == "cancelled" and _status(b) == "queued"


def test_state_lives_in_the_context_not_in_a_module_global(tmp_path):
    """Two invocations in one process with different --db do not leak into each other."""
    a, b = _two_registries(tmp_path)
    first = json.loads(hrm("--db", str(a), "ls", "--json").output)
    hrm("--db", str(b), "cancel", "1")
    second = json.loads(hrm("--db", str(a), "ls", "--json").output)
    assert first == second and second["runs"][0]["status"] == "queued"


def test_bracketed_words_in_a_config_description_stay_visible(monkeypatch):
    """A field description like ``[default: x]`` must not be eaten as Rich markup."""
    from pydantic import Field

    from core.experiments.base import ExperimentConfig
    from hrm_tui.options import option_parameters

    class Demo(ExperimentConfig):
        width: int = Field(4, description="model width [default: report value]")

    (param,) = [p for p in option_parameters(Demo) if p.name == "width"]
    help_text = param.annotation.__metadata__[0].help
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(help_text)
    assert "[default: report value]" in console.export_text()


def test_ls_and_show_json_load_neither_pydantic_nor_rich_nor_sqlalchemy(db_path):
    """Issue #13's start-up: the --json read path is typer + sqlite3 + json."""
    db = open_database(db_path, create=True)
    store.create_run(db, "smoke", {"epochs": 1})
    db.dispose()
    for args in (["ls", "--json"], ["show", "1", "--json"], ["ls", "--json", "--last", "5", "-s", "queued"]):
        code = ("import sys\nfrom hrm_tui.cli import main\nsys.argv = ['hrm', '--db', %r, *%r]\n"
                "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n") % (str(db_path), args)
        loaded = imported_after(code)
        heavy = {m.split(".")[0] for m in loaded} & {"pydantic", "rich", "sqlalchemy", "sqlmodel", "torch"}
        assert not heavy, (args, heavy)


@pytest.mark.parametrize(("args", "message"), [
    (["ls", "--last", "0"], "greater than or equal to 1"),
    (["ls", "--last", "x"], "valid integer"),
    (["ls", "--last", "99999999999999999999"], "less than or equal to"),
    (["ls", "--offset", "-1"], "--offset"),
    (["show", "1.5"], "RUN_ID"),
    (["show", "0"], "RUN_ID"),
])
def test_numbers_the_direct_parser_hands_back_get_typers_messages(db_path, args, message):
    open_database(db_path, create=True).dispose()
    result = hrm("--db", str(db_path), *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_direct_parsing_agrees_with_typer():
    from typer.core import TyperOption

    from hrm_tui.cli.coercion import DirectRuntimeParam, _direct, _UNHANDLED

    for annotation, text, expected in [(int, "42", 42), (int, "+7", 7), (int, "-3", -3), (float, "1e-4", 1e-4),
                                       (float, "0.5", 0.5), (float, ".5", 0.5), (str, "x y", "x y")]:
        assert _direct(annotation, text, None) == expected
    for annotation, text in [(int, "4.0"), (int, "1_000"), (int, ""), (int, "-"), (float, "nan"), (float, "inf"),
                             (int, " 5"), (int, "9" * 19)]:
        assert _direct(annotation, text, None) is _UNHANDLED
    assert issubclass(DirectRuntimeParam, object) and TyperOption


@pytest.mark.parametrize("args", [["--help"], ["show", "--help"], ["run", "smoke", "--help"]])
def test_help_without_markdown_and_traceback_reads_the_same(args):
    """hrm_tui.cli.helpfmt defers two of typer.rich_utils' imports: the text must not change."""
    def render(preload: str) -> str:
        code = (f"{preload}\nimport sys\nsys.argv = ['hrm', *{args!r}]\nfrom hrm_tui.cli import main\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "sys.stderr.write(str('rich.markdown' in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env={**__import__("os").environ, "COLUMNS": "100"})
        return out.stdout, out.stderr

    deferred, markdown_loaded = render("")
    real, _ = render("import rich.markdown, rich.traceback")
    assert deferred == real and "Usage: hrm" in deferred
    assert markdown_loaded == "False"
