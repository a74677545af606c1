"""Progress of a long pass over tokens (the frozen base pass), reported through the emitter.

On a CPU the frozen SmolLM2 pass runs at tens of tokens per second, so a cascade run can spend many
minutes before its first epoch. :class:`TokenProgress` turns the per-batch callbacks of
:func:`core.smollm2.ops.run_frozen` into throttled, durable records: ``info.progress`` (phase, tokens
done / total, rate, ETA: what ``hrm ls``, ``--follow`` and the dashboard can show) and a log line now
and then (``hrm logs -f``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.runtime import Emitter


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class TokenProgress:
    """Counts tokens over one or more passes (``part(offset)``) and emits at most every ``every_s`` seconds."""

    def __init__(self, emit: Emitter, phase: str, total: int, *, every_s: float = 5.0, log_every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit, self.phase, self.total = emit, phase, total
        self.every_s, self.log_every_s, self.clock = every_s, log_every_s, clock
        self.started = clock()
        self.done = 0
        self._last_emit = self._last_log = self.started

    def part(self, offset: int) -> Callable[[int, int], None]:
        """The ``on_batch`` callback of a pass whose tokens start at ``offset`` of the total."""
        def on_batch(done: int, _total: int) -> None:
            self.update(offset + done)
        return on_batch

    def record(self) -> dict[str, Any]:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        return {"phase": self.phase, "tokens_done": self.done, "tokens_total": self.total,
                "tokens_per_s": round(rate, 1), "eta_s": None if eta is None else round(eta, 1),
                "elapsed_s": round(elapsed, 1)}

    def line(self) -> str:
        r = self.record()
        eta = "" if r["eta_s"] is None else f", ETA {_duration(r['eta_s'])}"
        return (f"{self.phase}: {r['tokens_done']:,}/{r['tokens_total']:,} tokens "
                f"({100.0 * r['tokens_done'] / max(r['tokens_total'], 1):.0f} %), {r['tokens_per_s']:,.0f} tokens/s{eta}")

    def update(self, done: int) -> None:
        self.done = done
        now = self.clock()
        finished = done >= self.total
        if finished or now - self._last_emit >= self.every_s:
            self._last_emit = now
            self.emit.info(progress=self.record())
        if not finished and now - self._last_log >= self.log_every_s:
            self._last_log = now
            self.emit.log(self.line())
