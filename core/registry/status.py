"""The run-status state machine, on its own so that readers need no table definitions to use it."""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """queued → starting → running → completed | failed | cancelled | lost.

    Prints, formats and hashes as its value, so ``f"{status}"`` reads ``running`` and a status is
    interchangeable with its string in dict keys and comparisons.
    """

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__
    __hash__ = str.__hash__

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_active(self) -> bool:
        return self in (RunStatus.STARTING, RunStatus.RUNNING)


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST})
