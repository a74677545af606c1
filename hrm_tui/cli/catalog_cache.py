"""A cache of ``hrm experiments``: the catalog's description and its rendered screens.

Describing the catalog imports every experiment module and pydantic (most of the command's time),
although the answer only changes when code changes. The cache stores the description with what it
was computed from, and is used only while all of that is unchanged:

- every source file of a module that was loaded when it was computed, outside the interpreter's
  own installation (the project, editable plugins): path, size and modification time;
- the directories on ``sys.path`` but the first (installing or removing a package, a plugin among them, changes
  its directory), the interpreter and the command line's environment variables that Rich reads.

A rendered table is stored per screen (width, colour, terminal or not), so that a repeated
``hrm experiments`` neither imports Rich nor lays out the table again. The file lives in
``$XDG_CACHE_HOME/hrm-tui`` (``~/.cache/hrm-tui``); ``HRM_NO_CACHE=1`` bypasses it, and a cache that
cannot be read or written is simply not used.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

FORMAT = 1
MAX_SCREENS = 8
_RICH_ENV = ("TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES",
             "JUPYTER_COLUMNS", "JUPYTER_LINES")


def cache_path() -> Optional[Path]:
    if os.environ.get("HRM_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hrm-tui" / "experiments.json"


def _stamp(path: str) -> Optional[list[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _environment() -> dict[str, Any]:
    """What, besides source files, the description depends on."""
    return {
        "format": FORMAT,
        "python": sys.version,
        "executable": sys.executable,
        # sys.path[0] is the script's folder or, for ``python -m``, the working directory: not where
        # packages get installed, and its stamp would change with every file written there
        "path": {p: _stamp(p) for p in sys.path[1:] if p and os.path.isdir(p)},
    }


def _installed_prefixes() -> tuple[str, ...]:
    """Files under these change only through an install (seen by the sys.path stamps)."""
    prefixes = {sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix}
    return tuple(os.path.join(p, "") for p in prefixes)


def _source_files() -> dict[str, list[int]]:
    installed = _installed_prefixes()
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or path.startswith(installed):
            continue
        stamp = _stamp(path)
        if stamp is not None:
            files[path] = stamp
    return files


def screen_key() -> str:
    """What Rich's rendering of stdout depends on, read without importing Rich: whether stdout is a
    terminal, its encoding, the terminal size it would find, and the environment variables it reads."""
    try:
        tty = bool(sys.stdout.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    size = None
    for fd in (0, 1, 2):
        try:
            size = tuple(os.get_terminal_size(fd))
            break
        except (AttributeError, ValueError, OSError):
            pass
    env = ",".join(f"{k}={os.environ.get(k, '')}" for k in _RICH_ENV)
    return f"{int(tty)}|{getattr(sys.stdout, 'encoding', '')}|{size}|{env}"


class CatalogCache:
    """The cache file's content, valid or not (``entries`` is None when it must be recomputed)."""

    def __init__(self) -> None:
        self.path = cache_path()
        self.data: dict[str, Any] = {}
        self.entries: Optional[list[dict[str, Any]]] = None
        self.problems: list[str] = []
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("environment") != _environment():
            return
        files = data.get("files")
        if not isinstance(files, dict) or any(_stamp(p) != s for p, s in files.items()):
            return
        self.data = data
        self.entries = data.get("entries")
        self.problems = list(data.get("problems") or [])

    def screen(self, key: str) -> Optional[str]:
        return (self.data.get("screens") or {}).get(key) if self.entries is not None else None

    def store(self, entries: list[dict[str, Any]], problems: list[str]) -> None:
        """Record a fresh description (call after computing it: the loaded modules are its sources)."""
        self.entries, self.problems = entries, problems
        self.data = {"environment": _environment(), "files": _source_files(), "entries": entries,
                     "problems": problems, "screens": {}}
        self._write()

    def store_screen(self, key: str, text: str) -> None:
        screens = self.data.setdefault("screens", {})
        screens.pop(key, None)
        while len(screens) >= MAX_SCREENS:
            screens.pop(next(iter(screens)))
        screens[key] = text
        self._write()

    def _write(self) -> None:
        if self.path is None or self.entries is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(self.data, default=str), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass
