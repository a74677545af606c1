"""The runs the dashboard knows about, and how the runs table filters, sorts and formats them.

Plain Python (no Textual): the poll worker's results are merged here on the UI thread, and the
table asks for the visible, ordered rows and for each row's cells.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass

from rich.text import Text

from core.registry.status import RunStatus
from core.registry.view import RunView
from hrm_tui.render import STATUS_STYLES, duration, fmt, progress_text

ConfigSpec = dict[str, dict[str, "str | None"]]
"""experiment → {config key that differs: its typical value's repr, or None}."""
HIDDEN_CONFIG_KEYS = ("variant",)
"""Config keys the table never lists under ``config`` (they have their own column)."""

_STATUS_ORDER = {s.value: i for i, s in enumerate(RunStatus)}


def _headline_key(row: RunView) -> float:
    value = row.headline
    return value if value is not None and value == value else 0.0


SORTS: dict[str, Callable[[RunView], object]] = {
    "id": lambda r: r.id,
    "experiment": lambda r: (r.experiment, r.id),
    "status": lambda r: (_STATUS_ORDER.get(r.status, 99), r.id),
    "progress": lambda r: (r.stage, r.epoch / (r.total_epochs or 1), r.id),
    "headline": _headline_key,
    "elapsed": lambda r: ((r.finished_at or r.updated_at) - r.started_at if r.started_at else -1.0),
    "gpu": lambda r: (r.gpu or "", r.id),
}
"""Sortable columns, in the order the sort key cycles through them."""

DEFAULT_DESCENDING = {"id", "elapsed"}


@dataclass(frozen=True)
class SortOrder:
    column: str = "id"
    descending: bool = True

    def next_column(self) -> SortOrder:
        names = list(SORTS)
        column = names[(names.index(self.column) + 1) % len(names)]
        return SortOrder(column, column in DEFAULT_DESCENDING)

    def reversed(self) -> SortOrder:
        return SortOrder(self.column, not self.descending)

    def __str__(self) -> str:
        return f"{self.column} {'↓' if self.descending else '↑'}"


class RunsModel:
    """Every run the dashboard has read, merged from incremental polls."""

    def __init__(self) -> None:
        self.rows: dict[int, RunView] = {}
        self.version = 0
        """Bumped on every change (views cache on it)."""
        self._values: dict[str, dict[str, Counter[str]]] = {}
        """experiment → config key → how many runs have each value (configs never change)."""
        self._per_experiment: Counter[str] = Counter()
        self._search: dict[int, tuple[RunView, str]] = {}
        self._diff_cache: tuple[frozenset[int], ConfigSpec] | None = None

    def apply(self, rows: Iterable[RunView], *, removed: Iterable[int] = (), full: bool = False) -> set[int]:
        """Merge polled rows; returns the ids whose row changed (added, updated or removed).

        A row older than the one held (``updated_at``) is ignored, so a late poll never rolls back.
        """
        changed: set[int] = set()
        incoming = {row.id: row for row in rows}
        if full:
            removed = set(removed) | (self.rows.keys() - incoming.keys())
        for run_id in removed:
            old = self.rows.pop(run_id, None)
            if old is not None:
                self._count(old, -1)
                changed.add(run_id)
        for run_id, row in incoming.items():
            old = self.rows.get(run_id)
            if old is not None and (old == row or old.updated_at > row.updated_at):
                continue
            if old is not None:
                self._count(old, -1)
            self._count(row, +1)
            self.rows[run_id] = row
            changed.add(run_id)
        if changed:
            self.version += 1
        return changed

    def _count(self, row: RunView, sign: int) -> None:
        self._per_experiment[row.experiment] += sign
        values = self._values.get(row.experiment)
        if values is None:
            values = self._values[row.experiment] = defaultdict(Counter)
        for key, value in row.config.items():
            values[key][repr(value)] += sign

    def get(self, run_id: int) -> RunView | None:
        return self.rows.get(run_id)

    def view(self, query: str = "", order: SortOrder = SortOrder(), *, only: Set[int] | None = None) -> list[RunView]:
        """The rows matching ``query`` (and among ``only``, the runs an expression selected), sorted by ``order``."""
        terms = search_terms(query)
        rows = list(self.rows.values()) if only is None else [r for i, r in self.rows.items() if i in only]
        if terms:
            rows = [r for r in rows if self._matches(r, terms)]
        rows.sort(key=SORTS[order.column], reverse=order.descending)
        if order.column == "headline":  # runs without a headline go last either way
            rows = [r for r in rows if r.headline is not None] + [r for r in rows if r.headline is None]
        return rows

    def _matches(self, row: RunView, terms: Sequence[str]) -> bool:
        cached = self._search.get(row.id)
        if cached is None or cached[0] is not row:
            cached = (row, search_text(row))
            self._search[row.id] = cached
        return all(term in cached[1] for term in terms)

    def differing_keys(self, rows: Sequence[RunView]) -> ConfigSpec:
        """Per experiment, the config keys that differ between its runs among ``rows``, each with its
        typical value (the ``repr`` held by more than half of the runs) or None when none dominates.

        The whole list reads maintained counters; a filtered subset is recomputed (and cached).
        """
        if len(rows) == len(self.rows):
            return {exp: _spec(self._values.get(exp, {}), n) for exp, n in self._per_experiment.items() if n > 0}
        stamp = frozenset(r.id for r in rows)
        if self._diff_cache is None or self._diff_cache[0] != stamp:
            values: dict[str, dict[str, Counter[str]]] = {}
            totals: Counter[str] = Counter()
            for row in rows:
                totals[row.experiment] += 1
                per_key = values.setdefault(row.experiment, defaultdict(Counter))
                for key, value in row.config.items():
                    per_key[key][repr(value)] += 1
            self._diff_cache = (stamp, {exp: _spec(values[exp], n) for exp, n in totals.items()})
        return self._diff_cache[1]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row.status] = out.get(row.status, 0) + 1
        return out


def _spec(values: dict[str, Counter[str]], total: int) -> dict[str, str | None]:
    """{key: typical value repr or None} for the keys whose values differ (or that some runs lack)."""
    spec: dict[str, str | None] = {}
    if total < 2:
        return spec
    for key, counter in values.items():
        present = {value: n for value, n in counter.items() if n > 0}
        if key in HIDDEN_CONFIG_KEYS or not present or (len(present) == 1 and sum(present.values()) == total):
            continue
        value, count = max(present.items(), key=lambda item: item[1])
        spec[key] = value if 2 * count > total else None
    return spec


def matches(row: RunView, terms: Sequence[str]) -> bool:
    """Every term (:func:`search_terms`) is a substring of the row's id, experiment, variant, status, gpu,
    tags or ``key=value``."""
    haystack = search_text(row)
    return all(term in haystack for term in terms)


def search_terms(query: str) -> list[str]:
    """The filter box's words; ``#12`` is run 12 only (not 120 or 312): it must match a whole word."""
    return [f" {word} " if word[:1] == "#" and word[1:].isdigit() else word for word in query.lower().split()]


def search_text(row: RunView) -> str:
    """What the words search, space-delimited; config values both as stored (``noisy=True``) and as the
    table shows them (``noisy=yes``, ``epochs=10,000``)."""
    config = []
    for key, value in row.config.items():
        config.append(f"{key}={value}")
        if fmt(value) != str(value):
            config.append(f"{key}={fmt(value)}")
    parts = [f"#{row.id}", str(row.id), row.experiment, row.variant, row.status.value, row.gpu or "", *config,
             *row.tags]
    return " " + " ".join(parts).lower() + " "


# --- cells -------------------------------------------------------------------------------------

BAR_WIDTH = 5


def status_cell(row: RunView) -> Text:
    label = "cancelling" if row.cancel_requested and row.status.is_active else row.status.value
    return Text(label, style=STATUS_STYLES.get(row.status, ""))


def progress_bar(done: int, total: int | None, width: int = BAR_WIDTH) -> Text:
    """A bar of ``width`` cells: ``███░░``; empty text when the total is unknown."""
    if not total:
        return Text(" " * width)
    filled = min(width, round(width * done / total))
    return Text.assemble(("█" * filled, "green"), ("░" * (width - filled), "grey35"))


def progress_done(row: RunView) -> tuple[int, int | None]:
    """(done, total) behind the bar: the pass's tokens before the first epoch, else the epochs."""
    passing = row.pass_progress
    if passing is not None:
        return int(passing["tokens_done"]), int(passing["tokens_total"])
    return row.epoch, row.total_epochs


def progress_cell(row: RunView) -> Text:
    text = progress_text(row.progress, live=row.is_live and row.status.is_active)
    if text == "—":
        return Text("—", style="dim")
    return Text.assemble(f"{text} ", progress_bar(*progress_done(row)))


def config_cell(row: RunView, spec: dict[str, str | None]) -> Text:
    """The config values that set this run apart: keys with no typical value, and atypical values."""
    shown = [f"{k}={fmt(row.config.get(k))}" for k, typical in spec.items()
             if typical is None or repr(row.config.get(k)) != typical]
    return Text(" ".join(shown)) if shown else Text("·", style="dim")


def headline_cell(row: RunView) -> Text:
    value = row.headline
    return Text(fmt(value), style="bold" if row.headline_is_final else "") if value is not None \
        else Text("—", style="dim")


def elapsed_cell(row: RunView, now: float) -> Text:
    return Text(duration(row.elapsed(now)), style="" if row.started_at else "dim")
