"""``hrm doctor``: what this installation can do, and what stops it, one line per check.

Checks the registry (opens without creating), the plugins (every ``hrm.experiments`` and
``hrm.reports`` entry point: loaded, or the one-line reason it was skipped), the optional extras
(from the installed package's own metadata, so the list never goes stale), the shipped data files
and the GPUs. Headless: the CLI renders the :class:`Check` list.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from importlib import resources

OK, WARN, FAIL, OFF = "ok", "warn", "FAIL", "off"


@dataclass(frozen=True)
class Check:
    """One finding: ``area`` (registry, plugins, extras, data, gpu), a status and what was found."""

    area: str
    status: str
    detail: str


def check_registry(db: str | None) -> list[Check]:
    from core.registry import open_database, resolve_db_url, store
    from core.registry.db import sqlite_path
    from core.registry.url import redact_url
    from core.scheduler.loop import HEARTBEAT_STALE_AFTER

    url = resolve_db_url(db)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return [Check("registry", WARN, f"{path} does not exist yet (`hrm run` or `hrm exec` creates it)")]
    try:
        database = open_database(url, create=False)
        counts = store.count_by_status(database)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the finding
        return [Check("registry", FAIL, f"{redact_url(url)}: {_line(exc)}")]
    runs = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no runs"
    checks = [Check("registry", OK, f"{database.safe_url}: {runs}")]
    try:
        alive = store.live_schedulers(database, stale_after=HEARTBEAT_STALE_AFTER)
    except Exception as exc:  # noqa: BLE001
        checks.append(Check("registry", WARN, f"scheduler heartbeats unreadable: {_line(exc)}"))
    else:
        hosts = ", ".join(sorted({str(row.get("name") or row.get("host")) for row in alive}))
        checks.append(Check("registry", OK, f"{len(alive)} scheduler(s) alive ({hosts})" if alive
                            else "no scheduler alive (`hrm run` starts one; `hrm scheduler` in the foreground)"))
    return checks


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_plugins() -> list[Check]:
    from core import experiments
    from core.published import report_plugins

    checks: list[Check] = []
    catalog = experiments.catalog()
    plugins = [name for name in catalog if experiments.origin(name) != "built-in"]
    for name in plugins:
        checks.append(Check("plugins", OK, f"experiment {name!r} from {experiments.origin(name)}"))
    docs, report_problems = report_plugins()
    for report, doc in docs.items():
        checks.append(Check("plugins", OK, f"report {report!r}: {doc.get('title', '')} ({len(doc['tables'])} tables)"))
    for problem in [*experiments.plugin_problems(), *report_problems]:
        checks.append(Check("plugins", FAIL, problem.line()))
    if not checks:
        checks.append(Check("plugins", OK, "none installed (entry point groups hrm.experiments, hrm.reports)"))
    return checks


_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def check_extras(distribution: str = "hrm-tui") -> list[Check]:
    """Each optional extra of the installed package: all its requirements present, or what is missing."""
    try:
        requires = importlib.metadata.metadata(distribution).get_all("Requires-Dist") or []
    except importlib.metadata.PackageNotFoundError:
        return [Check("extras", WARN, f"{distribution} is not installed as a package (pip install -e .)")]
    extras: dict[str, list[str]] = {}
    for requirement in requires:
        extra, name = _EXTRA.search(requirement), _NAME.match(requirement)
        if extra and name:
            extras.setdefault(extra.group(1), []).append(name.group(1))
    checks = []
    for extra, names in sorted(extras.items()):
        missing = [n for n in dict.fromkeys(names) if not _installed(n)]
        if missing:
            checks.append(Check("extras", OFF, f"[{extra}] missing {', '.join(missing)}: pip install 'hrm-tui[{extra}]'"))
        else:
            checks.append(Check("extras", OK, f"[{extra}] installed"))
    return checks


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def check_data() -> list[Check]:
    folder = resources.files("core.data") / "files" / "wikitext2"
    expected = ("test_head_20000.txt", "valid_head_5000.txt")
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        return [Check("data", FAIL, f"shipped WikiText-2 excerpt incomplete, missing {', '.join(missing)}")]
    return [Check("data", OK, "shipped WikiText-2 excerpt present (train split: the hub or --data-dir)")]


def check_gpu() -> list[Check]:
    from core.scheduler.loop import detect_gpus

    visible = detect_gpus()
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken torch install is the finding
        return [Check("gpu", FAIL, f"torch does not import: {exc}")]
    if not torch.cuda.is_available():
        if visible:
            return [Check("gpu", WARN, f"{len(visible)} GPU(s) visible but torch {torch.__version__} has no CUDA: "
                                       "runs use the CPU")]
        return [Check("gpu", OK, f"no GPU: runs use the CPU (torch {torch.__version__})")]
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [Check("gpu", OK, f"{len(names)} GPU(s): {', '.join(names)} (torch {torch.__version__}, "
                             f"CUDA {torch.version.cuda}); scheduler slots {','.join(visible) or '—'}")]


def run_checks(db: str | None) -> list[Check]:
    """Every check, in the order ``hrm doctor`` prints them."""
    return [*check_registry(db), *check_plugins(), *check_extras(), *check_data(), *check_gpu()]
