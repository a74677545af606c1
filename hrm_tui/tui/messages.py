"""Every Message the dashboard posts. Past tense: something happened.

The poll worker posts :class:`RegistryPolled` (thread-safe ``post_message``); the app merges it
and hands the parts to the open screens (``HrmScreen.hear``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from hrm_tui.tui.poller import PollResult


@dataclass
class RegistryPolled(Message):
    """A poll finished. Carries metric rows, so it is never collapsed (no ``can_replace``)."""

    result: PollResult


@dataclass
class RegistryOpened(Message):
    """The full registry (``core.api``, SQLAlchemy) is open, after a fast first page; or it failed."""

    db: Any
    error: str | None = None


@dataclass
class ActionFinished(Message):
    """A registry action (submit, cancel, retry, delete) ran on a worker thread."""

    verb: str
    run_id: int | None
    outcome: Any = None
    error: str | None = None


@dataclass
class RunsChanged:
    """News for the screens: the run list changed (``ids`` of the changed runs; empty on a clock tick)."""

    ids: frozenset[int]


@dataclass
class MetricsArrived:
    """News for the screens: new metric rows of one run."""

    run_id: int
    rows: list[dict[str, Any]]


@dataclass
class LogsArrived:
    """News for the screens: new log lines (registry log rows and worker.log text) of one run."""

    run_id: int
    lines: list[str]
