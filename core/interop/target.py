"""An export folder that appears whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import UserError


def check_target(path: str | os.PathLike) -> Path:
    """The target folder, which must not exist or be empty (UserError, exit 1, otherwise)."""
    target = Path(path).expanduser()
    if target.exists():
        if not target.is_dir():
            raise UserError(f"export target {target} exists and is not a folder", 1)
        if any(target.iterdir()):
            raise UserError(f"export target {target} exists and is not empty: choose a new folder", 1)
    parent = target.resolve().parent
    if not parent.is_dir():
        raise UserError(f"cannot export to {target}: folder {parent} does not exist", 1)
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot export to {target}: folder {parent} is not writable", 1)
    return target


@contextmanager
def staged_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder beside ``path``; on success it becomes ``path``, on error it is removed."""
    target = check_target(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.resolve().parent))
    try:
        yield staging
        if target.exists():
            target.rmdir()  # empty (checked): replaced by the finished export
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
