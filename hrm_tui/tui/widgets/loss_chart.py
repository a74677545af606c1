"""``LossChart``: epoch curves (train/val, or one key of several runs) drawn with plotext.

Shaped like textual-plotext's ``textual_towers_weather`` example: the widget keeps its series and
``replot()`` marks the figure stale and refreshes. Building a plotext canvas costs milliseconds of pure
Python, and ``PlotextPlot`` builds one on every render, so the built figure is kept until the data, the
size or the theme changes: a chart replots only when its own data changed. Its cost grows with the
points, so a long run's series is thinned to what the chart's width can show (:func:`thin`).

The figure goes from plotext's cell matrix (characters and their colours) straight to Textual strips.
``PlotextPlot.render`` joins the cells into an ANSI string that Rich parses back and Textual converts
again: two thirds of a redraw's CPU on a training run's view, for the same cells (the run view's idle
cost, issue #13). Should plotext's internals ever differ, the chart falls back to that path.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Mapping, Sequence

from rich.segment import Segment
from rich.style import Style as RichStyle
from rich.text import Text
from textual.strip import Strip
from textual.style import Style
from textual_plotext import PlotextPlot

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]

COLORS = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow", "white")
BRAILLE_COLUMNS = 2
"""Dot columns per cell of a braille line."""
AXIS_CELLS = 8
"""Cells of the y-axis labels and the frame, a guess of the canvas width until a figure was built."""


def thin(xs: Sequence[float], ys: Sequence[float], columns: int,
         lo: float | None = None, hi: float | None = None) -> tuple[Sequence[float], Sequence[float]]:
    """The points of a line that light the same dots: per dot column (``columns`` of them over the chart's x
    limits ``lo``..``hi``, the series' own by default), its first, lowest, highest and last point. A line
    through those covers, in that column, the same span and joins its neighbours the same way as one
    through every point. A series of at most four points per column, or whose x is not in order, is
    returned as it is. Each column's points are found by bisection, so the cost is the kept points'."""
    n = len(xs)
    if n <= 4 * columns or not all(map(operator.le, xs, xs[1:])):
        return xs, ys
    lo = xs[0] if lo is None else lo
    hi = xs[-1] if hi is None else hi
    if hi <= lo:
        return xs, ys

    def column(x: float) -> int:  # plotext's own mapping (``_utility.get_matrix_data``), rounding included
        return math.floor(round(0.5 + (columns - 1) * (x - lo) / (hi - lo), 8))

    starts = [0]
    for k in range(1, columns):  # the first point of column k: near where the mapping reaches k, then exact
        i = bisect.bisect_left(xs, lo + (k - 0.5) * (hi - lo) / (columns - 1), starts[-1])
        while i > starts[-1] and column(xs[i - 1]) >= k:
            i -= 1
        while i < n and column(xs[i]) < k:
            i += 1
        starts.append(i)
    starts.append(n)
    keep: list[int] = []
    for first, end in zip(starts, starts[1:]):
        if first < end:
            part = ys[first:end]
            keep.extend(sorted({first, first + part.index(min(part)), first + part.index(max(part)), end - 1}))
    return [xs[i] for i in keep], [ys[i] for i in keep]


class LossChart(PlotextPlot):
    """Curves over epochs: ``label → (x, y)``, one colour each, a legend when more than one."""

    ALLOW_SELECT = False
    """A chart's cells are drawing, not text to copy (its strips carry no selection offsets)."""

    def __init__(self, title: str = "", *, ylabel: str = "", id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.ylabel = ylabel
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.markers: list[float] = []
        self.builds = 0
        """How many times the figure was built (tests check that idle polls build nothing)."""
        self._figure: tuple[tuple[int, int, str, int], list[Strip]] | None = None
        self._data_version = 0
        self._styles: dict[tuple[str, str, str], RichStyle] = {}
        """plotext's (colour, style, background) of a cell → its style on screen, over ``_styles_base``."""
        self._styles_base: Style | None = None
        self._canvas = 0
        """Cells across the plotting area of the last figure built (what a series is thinned for)."""

    def on_mount(self) -> None:
        self.replot()

    def set_series(self, series: Series, *, title: str | None = None, markers: Sequence[float] = ()) -> None:
        """Replace what is drawn (a no-op when nothing changed, so a poll never redraws needlessly).

        ``markers``: x positions drawn as vertical lines (where a new stage starts).
        """
        new = {label: (list(xs), list(ys)) for label, (xs, ys) in series.items()}
        if new == self.series and list(markers) == self.markers and (title is None or title == self.title):
            return
        self.series = new
        self.markers = list(markers)
        if title is not None:
            self.title = title
        self.replot()

    @property
    def point_count(self) -> int:
        """Largest number of points of any series (tests read it)."""
        return max((len(xs) for xs, _ in self.series.values()), default=0)

    def replot(self) -> None:
        """Draw the series again: the figure is built, at the chart's size, when it is next painted."""
        self._data_version += 1
        self.refresh()

    def _plot_series(self, canvas: int) -> bool:
        """Hand title, markers and series to plotext, each series thinned to what ``canvas`` cells of
        braille can show (plotext's cost grows with the points: about 75 ms a chart for 5,000 epochs, 8 ms
        once thinned); True when a series was thinned."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel("epoch")
        if self.ylabel:
            plt.ylabel(self.ylabel)
        if not self.series:
            plt.title(f"{self.title} (no epochs yet)" if self.title else "no epochs yet")
        for x in self.markers:
            plt.vline(x, "gray")
        shown = [xs for xs, _ in self.series.values() if xs]
        lo, hi = min(min(xs) for xs in shown) if shown else 0.0, max(max(xs) for xs in shown) if shown else 0.0
        thinned = False
        for index, (label, (xs, ys)) in enumerate(self.series.items()):
            if xs:
                txs, tys = thin(xs, ys, BRAILLE_COLUMNS * max(canvas, 1), lo, hi)
                thinned |= len(txs) < len(xs)
                plt.plot(txs, tys, label=label if len(self.series) > 1 else None,
                         color=COLORS[index % len(COLORS)], marker="braille")
        return thinned

    def render_line(self, y: int) -> Strip:
        """One line of the built figure (Textual's line API: the strips are built once per figure)."""
        lines = self._lines()
        return lines[y] if y < len(lines) else Strip.blank(self.size.width, self.visual_style.rich_style)

    def _lines(self) -> list[Strip]:
        key = (self.size.width, self.size.height, self.app.theme, self._data_version)
        if self._figure is None or self._figure[0] != key:
            self.builds += 1
            canvas = self._canvas or self.size.width - AXIS_CELLS
            thinned = self._plot_series(canvas)
            try:
                lines = self._build_lines()
                if thinned and self._canvas != canvas:  # thinned for another canvas width: once more
                    self._plot_series(self._canvas)
                    lines = self._build_lines()
            except (AttributeError, ImportError):  # plotext keeps its matrix elsewhere in this version
                lines = self._render_lines_via_ansi()
            self._figure = (key, lines)
        return self._figure[1]

    def _build_lines(self) -> list[Strip]:
        """Build the figure (as ``PlotextPlot.render`` does, less the ANSI string) and turn its cell
        matrix into one strip per line, one segment per run of equally coloured cells."""
        width, height = self.size
        plt = self.plt
        plt.plotsize(width, height)
        plt._set_size(width, height)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        plt._set_sizes()
        plt._build_matrix()
        matrix = plt.monitor.matrix
        self._canvas = len(matrix.Cols_canvas)
        base = self.visual_style
        if self._styles_base != base:
            self._styles, self._styles_base = {}, base
        lines = []
        for row in reversed(matrix.Rows):
            cells = list(zip(matrix.fullground[row], matrix.style[row], matrix.background[row], strict=True))
            markers = matrix.marker[row]
            segments, start = [], 0
            for col in range(1, len(cells) + 1):
                if col == len(cells) or cells[col] != cells[start]:
                    segments.append(Segment("".join(markers[start:col]), self._cell_style(cells[start], base)))
                    start = col
            lines.append(Strip(segments).adjust_cell_length(width, base.rich_style))
        return lines

    def _cell_style(self, colors: tuple, base: Style) -> RichStyle:
        """The on-screen style of plotext's (colour, style, background): the one its ANSI codes parse to,
        over the widget's own style, exactly as the ANSI path would show it (cached per triple)."""
        key = tuple(c if isinstance(c, str | int) else tuple(c) for c in colors)
        style = self._styles.get(key)  # type: ignore[arg-type]
        if style is None:
            from plotext._utility import colors_to_ansi

            parsed = Text.from_ansi(colors_to_ansi(*colors) + "x")
            rich = RichStyle.combine(span.style for span in parsed.spans if isinstance(span.style, RichStyle))
            style = (base + Style.from_rich_style(rich, self.app.ansi_theme)).rich_style
            self._styles[key] = style  # type: ignore[index]
        return style

    def _render_lines_via_ansi(self) -> list[Strip]:
        """``PlotextPlot``'s own path: the figure as an ANSI string, parsed by Rich, converted by Textual."""
        from textual.visual import Visual, visualize

        visual = visualize(self, super().render())
        return Visual.to_strips(self, visual, self.size.width, self.size.height, self.visual_style)
