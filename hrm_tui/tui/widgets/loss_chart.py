"""``LossChart``: epoch curves (train/val, or one key of several runs) drawn with plotext.

Shaped like textual-plotext's ``textual_towers_weather`` example: the widget keeps its series
and ``replot()`` clears the data, plots each series and refreshes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
        self.refresh()
