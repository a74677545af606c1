"""``LayerHeatmap``: one per-layer metric as a layer × epoch grid, each cell coloured by value
(a single end-of-run column, e.g. a saturation profile, as values with bars)."""

from __future__ import annotations

import math

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

from hrm_tui.render import bar, fmt
from hrm_tui.tui.series import Grid

LOW = (46, 125, 50)
MID = (249, 168, 37)
HIGH = (198, 40, 40)


def heat(value: float, low: float, high: float, *, reverse: bool = False) -> Style:
    """Green (low) → amber → red (high); ``reverse`` for keys where high is good."""
    t = 0.5 if high <= low else (value - low) / (high - low)
    t = 1 - t if reverse else t
    a, b, u = (LOW, MID, t * 2) if t < 0.5 else (MID, HIGH, t * 2 - 1)
    rgb = tuple(int(x + (y - x) * u) for x, y in zip(a, b, strict=True))
    return Style(bgcolor=Color.from_rgb(*rgb), color="black" if 0.25 < t < 0.85 else "white")


class LayerHeatmap(DataTable):
    """A small DataTable rebuilt each epoch (a few dozen cells: no measurable cost)."""

    DEFAULT_CSS = """
    LayerHeatmap { height: auto; max-height: 20; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="none", zebra_stripes=False, show_cursor=False)
        self.grid: Grid | None = None

    def show(self, grid: Grid | None) -> None:
        if grid == self.grid:
            return
        self.grid = grid
        self.clear(columns=True)
        if grid is None:
            self.add_column("no per-layer metrics yet")
            return
        self.add_column(f"layer · {grid.key}", key="layer")
        for label in grid.columns:
            self.add_column(label)
        bounds = grid.bounds() or (0.0, 0.0)
        profile = len(grid.columns) == 1  # one value per layer (an end-of-run profile): draw it as bars too
        if profile:
            self.add_column("")
        reverse = "rate" in grid.key or "acc" in grid.key
        for layer in grid.layers:
            cells = [Text(str(layer), justify="right")]
            if profile:
                value = grid.values[layer][0]
                cells.append(Text(fmt(value, 3), justify="right"))
                cells.append(bar(value, min(0.0, bounds[0]), bounds[1], width=24))
                self.add_row(*cells)
                continue
            for value in grid.values[layer]:
                if value is None:
                    cells.append(Text("·", style="dim", justify="center"))
                elif not math.isfinite(value):
                    cells.append(Text(fmt(value), style="bold red", justify="right"))
                else:
                    style = heat(value, *bounds, reverse=reverse)
                    cells.append(Text(f" {fmt(value, 3)} ", style=style, justify="right"))
            self.add_row(*cells)
