"""``LayerHeatmap``: one per-layer metric as a layer × epoch grid, each cell coloured by value
(a single end-of-run column, e.g. a saturation profile, as values with bars).

Drawn as text rather than a DataTable: a new epoch then repaints this widget alone, without the
screen-wide layout pass that rebuilding a table of ``height: auto`` costs (the run view idles on it).
"""

from __future__ import annotations

import math

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from hrm_tui.render import bar, fmt
from hrm_tui.tui.series import Grid

LOW = (46, 125, 50)
MID = (249, 168, 37)
HIGH = (198, 40, 40)
HEADER = Style(bold=True)
PROFILE_BAR = 24


def heat(value: float, low: float, high: float, *, reverse: bool = False) -> Style:
    """Green (low) → amber → red (high); ``reverse`` for keys where high is good."""
    t = 0.5 if high <= low else (value - low) / (high - low)
    t = 1 - t if reverse else t
    a, b, u = (LOW, MID, t * 2) if t < 0.5 else (MID, HIGH, t * 2 - 1)
    rgb = tuple(int(x + (y - x) * u) for x, y in zip(a, b, strict=True))
    return Style(bgcolor=Color.from_rgb(*rgb), color="black" if 0.25 < t < 0.85 else "white")


class LayerHeatmap(Static):
    """The grid as lines of cells; repaints only when the grid changed, relayouts only when its height did."""

    DEFAULT_CSS = """
    LayerHeatmap { height: auto; max-height: 20; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.grid: Grid | None = None
        self.header: list[Text] = []
        self.rows: list[list[Text]] = []
        self._height = 0

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def get_row_at(self, index: int) -> list[Text]:
        """The cells of one layer's line (layer, values...)."""
        return self.rows[index]

    def on_mount(self) -> None:
        self._draw()

    def show(self, grid: Grid | None) -> None:
        if grid == self.grid and self.header:
            return
        self.grid = grid
        self._draw()

    def _draw(self) -> None:
        self.header, self.rows = _cells(self.grid)
        widths = [max(cell.cell_len for cell in column) for column in zip(self.header, *self.rows, strict=True)]
        lines = [_line(self.header, widths, HEADER)] + [_line(row, widths) for row in self.rows]
        height = len(lines)
        self.update(Text("\n").join(lines), layout=height != self._height)
        self._height = height


def _cells(grid: Grid | None) -> tuple[list[Text], list[list[Text]]]:
    if grid is None:
        return [Text("no per-layer metrics yet")], []
    header = [Text(f"layer · {grid.key}"), *(Text(f" {label} ", justify="right") for label in grid.columns)]
    bounds = grid.bounds() or (0.0, 0.0)
    profile = len(grid.columns) == 1  # one value per layer (an end-of-run profile): draw it as bars too
    if profile:
        header.append(Text(""))
    reverse = "rate" in grid.key or "acc" in grid.key
    rows = []
    for layer in grid.layers:
        cells = [Text(str(layer), justify="right")]
        if profile:
            value = grid.values[layer][0]
            cells += [Text(fmt(value, 3), justify="right"), bar(value, min(0.0, bounds[0]), bounds[1], width=PROFILE_BAR)]
        else:
            for value in grid.values[layer]:
                if value is None:
                    cells.append(Text("·", style="dim", justify="center"))
                elif not math.isfinite(value):
                    cells.append(Text(fmt(value), style="bold red", justify="right"))
                else:
                    cells.append(Text(f" {fmt(value, 3)} ", style=heat(value, *bounds, reverse=reverse),
                                      justify="right"))
        rows.append(cells)
    return header, rows


def _line(cells: list[Text], widths: list[int], style: Style | None = None) -> Text:
    """One line: every cell aligned in its column's width, a space between columns."""
    parts = []
    for cell, width in zip(cells, widths, strict=True):
        cell = cell.copy()
        cell.align(cell.justify or "left", width)  # padding takes the cell's own style (its colour fills the cell)
        parts.append(cell)
    line = Text(" ").join(parts)
    if style is not None:
        line.stylize(style)
    return line
