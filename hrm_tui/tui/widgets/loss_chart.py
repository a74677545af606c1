"""``LossChart``: epoch curves (train/val, or one key of several runs) drawn with plotext.

Shaped like textual-plotext's ``textual_towers_weather`` example: the widget keeps its series
and ``replot()`` clears the data, plots each series and refreshes. Building a plotext canvas costs
milliseconds of pure Python, and ``PlotextPlot`` builds one on every render, so the built figure is
kept until the data, the size or the theme changes: a chart replots only when its own data changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]

COLORS = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow", "white")


class LossChart(PlotextPlot):
    """Curves over epochs: ``label → (x, y)``, one colour each, a legend when more than one."""

    def __init__(self, title: str = "", *, ylabel: str = "", id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.ylabel = ylabel
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.markers: list[float] = []
        self.builds = 0
        """How many times the figure was built (tests check that idle polls build nothing)."""
        self._figure: tuple[tuple[int, int, str, int], Text] | None = None
        self._data_version = 0

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
        for index, (label, (xs, ys)) in enumerate(self.series.items()):
            if xs:
                plt.plot(xs, ys, label=label if len(self.series) > 1 else None,
                         color=COLORS[index % len(COLORS)], marker="braille")
        self._data_version += 1
        self.refresh()

    def render(self) -> RenderResult:
        key = (self.size.width, self.size.height, self.app.theme, self._data_version)
        if self._figure is None or self._figure[0] != key:
            self.builds += 1
            self._figure = (key, super().render())  # type: ignore[arg-type]
        return self._figure[1]
