"""Charts as SVG geometry, computed here and drawn by the templates (server-side SVG: no script
and no asset from the network, nothing for the browser to fetch or run, and a page that renders
the same in any browser and in a screenshot). Each chart is one series under its name in words,
and each mark carries its value in words (an SVG <title>): colour never tells anything alone.
Marks sit in one slot per item (run or minute), so the charts of one audience line up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

WIDTH = 600       # of the viewBox; the SVG scales to its box's width
BAR_MAX = 24      # a bar never wider, however few the runs
POINT_R = 3.5
PAD = 6           # above the highest and below the lowest point of a line


@dataclass(frozen=True)
class Mark:
    """A bar (x, y, width, height) or a point (centre x, y) with its value in words."""

    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    name: str              # the series, in words; also its CSS class
    kind: str              # "bars" | "line"
    height: int            # of the viewBox
    marks: tuple[Mark, ...]
    line: str              # the polyline's points ("line" only)
    low: int               # the value at the bottom edge
    high: int              # the value at the top edge

    @property
    def summary(self) -> str:
        """The chart in words, for its SVG's accessible name."""
        what = "points" if self.kind == "line" else "bars"
        return f"{self.name}: {len(self.marks)} {what}, axis from {self.low:,} to {self.high:,}"


def _slots(count: int) -> tuple[float, float]:
    slot = WIDTH / max(count, 1)
    return slot, min(BAR_MAX, max(1.0, slot * 0.7))


def bars(name: str, values: Sequence[int], titles: Sequence[str], height: int = 44) -> Chart:
    """One bar per value, from 0 (bottom) to the largest value (top)."""
    slot, width = _slots(len(values))
    high = max(values, default=0)
    scale = (height - 1) / high if high else 0.0
    marks = []
    for i, (value, title) in enumerate(zip(values, titles)):
        h = value * scale
        marks.append(Mark(round(slot * (i + 0.5) - width / 2, 1), round(height - h, 1), round(width, 1),
                          round(h, 1), title))
    return Chart(name, "bars", height, tuple(marks), "", 0, high)


def line(name: str, values: Sequence[int | None], titles: Sequence[str], height: int = 90) -> Chart:
    """A point per known value (None: no point in that slot), joined in order; the axis runs from
    the lowest value to the highest, both given in words beside the chart."""
    slot, _ = _slots(len(values))
    known = [v for v in values if v is not None]
    low, high = (min(known), max(known)) if known else (0, 0)
    marks = []
    for i, (value, title) in enumerate(zip(values, titles)):
        if value is None:
            continue
        share = (value - low) / (high - low) if high > low else 0.5
        y = PAD + (height - 2 * PAD) * (1 - share)
        marks.append(Mark(round(slot * (i + 0.5), 1), round(y, 1), 0.0, 0.0, title))
    points = " ".join(f"{m.x},{m.y}" for m in marks)
    return Chart(name, "line", height, tuple(marks), points, low, high)
