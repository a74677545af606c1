"""A worker's stdout/stderr in the registry, so that ``hrm logs -f`` works from any host.

The worker's output goes to its local ``worker.log`` (a copy that stays); a shipper sends the
bytes not yet shipped, as chunks, from the run's ``output_bytes`` offset on. The offset moves in
the same transaction as the chunk insert, guarded by its old value, so two shippers (the worker's
thread and the scheduler after a SIGKILL) never store a byte twice. Past ``limit`` bytes per run
the oldest chunks are dropped: the tail is what a reader needs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from core.registry.db import Database
from core.registry.models import Run, WorkerOutput

RUN = Run.__table__
OUTPUT = WorkerOutput.__table__

LIMIT_ENV = "HRM_OUTPUT_LIMIT"
DEFAULT_LIMIT = 2 * 2**20
"""Bytes of output kept per run in the registry (``$HRM_OUTPUT_LIMIT``); the local file keeps all."""
MAX_CHUNK = 64 * 2**10


def output_limit() -> int:
    try:
        return max(MAX_CHUNK, int(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT)))
    except ValueError:
        return DEFAULT_LIMIT


def _decodable(data: bytes) -> bytes:
    """``data`` without a multi-byte character cut in half at its end (it goes with the next chunk)."""
    for cut in range(1, min(4, len(data)) + 1):
        byte = data[-cut]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a lead byte: is its character complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if cut >= need else data[:-cut]
    return data


def append_output(db: Database, run_id: int, offset: int, data: bytes, *, limit: int | None = None) -> bool:
    """Store ``data`` found at byte ``offset`` of the run's output. False if another shipper got there first."""
    if not data:
        return True
    limit = output_limit() if limit is None else limit
    end = offset + len(data)
    with db.write() as conn:
        moved = conn.execute(update(RUN).where(RUN.c.id == run_id, RUN.c.output_bytes == offset)
                             .values(output_bytes=end)).rowcount == 1
        if not moved:
            return False
        conn.execute(OUTPUT.insert().values(run_id=run_id, offset=offset, size=len(data), ts=time.time(),
                                            text=data.decode("utf-8", "replace")))
        if end > limit:
            conn.execute(delete(OUTPUT).where(OUTPUT.c.run_id == run_id, OUTPUT.c.offset + OUTPUT.c.size <= end - limit))
    return True


def ship_file(db: Database, run_id: int, path: Path, *, final: bool = False, limit: int | None = None) -> int:
    """Ship what ``path`` holds beyond the run's shipped offset; returns the bytes shipped.

    ``final`` also ships a trailing incomplete UTF-8 sequence (nothing more will come).
    """
    with db.read() as conn:
        offset = conn.execute(select(RUN.c.output_bytes).where(RUN.c.id == run_id)).scalar()
    if offset is None:
        return 0
    shipped = 0
    try:
        f = open(path, "rb")
    except OSError:
        return 0
    with f:
        while True:
            f.seek(offset)
            data = f.read(MAX_CHUNK)
            if not data:
                break
            if not final or len(data) == MAX_CHUNK:
                data = _decodable(data)
                if not data:
                    break
            if not append_output(db, run_id, offset, data, limit=limit):
                break  # someone else shipped this range: they carry on from here
            offset += len(data)
            shipped += len(data)
            if len(data) < MAX_CHUNK and not final:
                break
    return shipped


def output_since(db: Database, run_id: int, *, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """Output chunks of a run after ``after_id``, in order: ``id``, ``offset``, ``size``, ``ts``, ``text``.

    A reader that sees a gap between one chunk's end and the next one's ``offset`` knows the middle
    was dropped to keep the registry bounded.
    """
    query = select(OUTPUT).where(OUTPUT.c.run_id == run_id, OUTPUT.c.id > after_id).order_by(OUTPUT.c.id)
    if limit:
        query = query.limit(limit)
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def read_from(db: Database, run_id: int, start: int | None, *, tail_bytes: int) -> tuple[int, bytes]:
    """The shipped output from byte ``start`` (None: the last ``tail_bytes``), as (real start, bytes).

    What a reader on another host gets instead of the local ``worker.log``; when the oldest chunks
    were dropped, it starts at the oldest kept byte.
    """
    with db.read() as conn:
        total = conn.execute(select(RUN.c.output_bytes).where(RUN.c.id == run_id)).scalar() or 0
        if start is None:
            start = max(0, total - tail_bytes)
        rows = conn.execute(select(OUTPUT.c.offset, OUTPUT.c.size, OUTPUT.c.text)
                            .where(OUTPUT.c.run_id == run_id, OUTPUT.c.offset + OUTPUT.c.size > start)
                            .order_by(OUTPUT.c.offset)).all()
    if not rows:
        return start, b""
    first = max(start, rows[0].offset)
    data = b"".join(r.text.encode("utf-8") for r in rows)
    return first, data[first - rows[0].offset:]
