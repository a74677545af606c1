"""One run's metric history, grown incrementally from ``store.metrics(after_id=...)`` rows.

Plain Python (no Textual): the run view's charts and the layer heatmap read curves and grids
from here, per stage (0 = unstaged, or every stage in sequence for ``ALL_STAGES``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALL_STAGES = -1
"""Stage selector value meaning "every stage, one after the other"."""


@dataclass
class Grid:
    """A layer × epoch table of one key: ``values[layer][column]``."""

    key: str
    columns: list[str]
    layers: list[int]
    values: dict[int, list[float | None]]

    def bounds(self) -> tuple[float, float] | None:
        seen = [v for row in self.values.values() for v in row if v is not None and math.isfinite(v)]
        return (min(seen), max(seen)) if seen else None


@dataclass
class RunSeries:
    """Epoch, layer and summary rows of one run, keyed for plotting."""

    last_id: int = 0
    epochs: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)
    """(stage, epoch) → {key: value} for kind ``epoch``."""
    layers: dict[tuple[int, str], dict[int, dict[int | None, float]]] = field(default_factory=dict)
    """(stage, key) → layer → epoch → value for kind ``layer``."""
    summary: dict[tuple[int, str], float] = field(default_factory=dict)
    _sorted: list[tuple[int, int]] = field(default_factory=list, repr=False, compare=False)
    """``epochs``' points in order, as of the last time points were added."""
    _epoch_keys: dict[str, None] = field(default_factory=dict, repr=False, compare=False)
    """The keys of ``epochs``, in arrival order (a redraw would otherwise walk every epoch for them)."""

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Add rows newer than ``last_id`` (older ones are ignored); returns how many were new."""
        added = 0
        for row in rows:
            if row["id"] <= self.last_id:
                continue
            self.last_id = row["id"]
            added += 1
            stage, key, value = row["stage"], row["key"], row["value"]
            if row["kind"] == "epoch":
                self.epochs.setdefault((stage, row["epoch"]), {})[key] = value
                self._epoch_keys.setdefault(key)
            elif row["kind"] == "layer":
                self.layers.setdefault((stage, key), {}).setdefault(row["layer"], {})[row["epoch"]] = value
            else:
                self.summary[(stage, key)] = value
        return added

    @property
    def point_count(self) -> int:
        """Number of (stage, epoch) points seen (what a chart plots per key)."""
        return len(self.epochs)

    def stages(self) -> list[int]:
        found = {s for s, _ in self.epochs} | {s for s, _ in self.layers}
        return sorted(found)

    def epoch_keys(self) -> list[str]:
        """The per-epoch keys, in the order they first arrived."""
        return list(self._epoch_keys)

    def layer_keys(self) -> list[str]:
        return list(dict.fromkeys(key for _, key in self.layers))

    def _points(self, stage: int) -> list[tuple[int, int]]:
        """The (stage, epoch) points in order, sorted again only after new points arrived (not on every
        call: a redraw asks for them once per curve and per stage marker)."""
        if len(self._sorted) != len(self.epochs):
            self._sorted = sorted(self.epochs)
        points = self._sorted
        return points if stage == ALL_STAGES else [p for p in points if p[0] == stage]

    def curves(self, keys: Sequence[str], stage: int = ALL_STAGES) -> dict[str, tuple[list[int], list[float]]]:
        """``key → (x, y)``; x is the epoch, or the running epoch count across stages for ALL_STAGES."""
        out: dict[str, tuple[list[int], list[float]]] = {}
        isfinite, epochs, points = math.isfinite, self.epochs, self._points(stage)
        for key in keys:
            xs: list[int] = []
            ys: list[float] = []
            for index, point in enumerate(points, start=1):
                value = epochs[point].get(key)
                if value is not None and isfinite(value):
                    xs.append(index if stage == ALL_STAGES else point[1])
                    ys.append(value)
            if xs:
                out[key] = (xs, ys)
        return out

    def stage_starts(self) -> list[int]:
        """x positions (in ALL_STAGES curves) where stage 2, 3, ... begin."""
        starts, previous = [], None
        for index, (stage, _) in enumerate(self._points(ALL_STAGES), start=1):
            if previous is not None and stage != previous:
                starts.append(index)
            previous = stage
        return starts

    def grid(self, key: str, stage: int = ALL_STAGES, *, max_columns: int = 12) -> Grid | None:
        """The layer × epoch grid of ``key`` (the most recent ``max_columns`` epochs)."""
        stages = self.stages() if stage == ALL_STAGES else [stage]
        cols: list[tuple[int, int | None]] = []
        for s in stages:
            epochs = {e for cells in self.layers.get((s, key), {}).values() for e in cells}
            cols.extend((s, e) for e in sorted(epochs, key=lambda e: (e is None, e or 0)))
        if not cols:
            return None
        cols = cols[-max_columns:]
        multi = len(stages) > 1  # label columns with their stage whenever several stages are shown
        labels = [("final" if e is None else f"ep{e}") if not multi else f"s{s}·{e if e is not None else 'fin'}"
                  for s, e in cols]
        layers = sorted({layer for s in stages for layer in self.layers.get((s, key), {})})
        values = {
            layer: [self.layers.get((s, key), {}).get(layer, {}).get(e) for s, e in cols] for layer in layers
        }
        return Grid(key, labels, layers, values)
