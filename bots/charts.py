"""Server-rendered line charts of metrics across runs, as numbers an SVG template can draw.

No chart library: a few polylines on a 0–1 scale need only coordinates, and SVG
rendered on the server works without JavaScript and under the page's CSP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Colour-blind-safe (Okabe–Ito) colours, one per metric line.
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: float
    label: str  # what the run was: "run 12 · v4"


@dataclass(frozen=True)
class Line:
    metric: str
    colour: str
    points: tuple[Point, ...]

    @property
    def polyline(self) -> str:
        return " ".join(f"{point.x:.1f},{point.y:.1f}" for point in self.points)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    lines: tuple[Line, ...]
    x_labels: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]


def metric_chart(
    runs: Sequence[tuple[str, Mapping[str, float | None]]],
    metrics: Sequence[str],
    *,
    width: int = 640,
    height: int = 240,
) -> Chart | None:
    """A chart of `metrics` (each 0–1) over `runs`, given oldest first as (label, metrics); None under two runs.

    A run without a value for a metric leaves a gap in that metric's line only.
    """
    if len(runs) < 2:
        return None
    left, right, top, bottom = 40, 12, 12, 28
    plot_width, plot_height = width - left - right, height - top - bottom
    step = plot_width / (len(runs) - 1)

    def x_of(index: int) -> float:
        return left + index * step

    def y_of(value: float) -> float:
        return top + (1.0 - min(max(value, 0.0), 1.0)) * plot_height

    lines = []
    for number, metric in enumerate(metrics):
        points = tuple(
            Point(x_of(index), y_of(value), float(value), label)
            for index, (label, values) in enumerate(runs)
            if (value := values.get(metric)) is not None
        )
        if points:
            lines.append(Line(metric, COLOURS[number % len(COLOURS)], points))
    # Label at most ~8 runs along the axis so the labels never overlap.
    every = max(1, -(-len(runs) // 8))
    x_labels = tuple((x_of(index), label) for index, (label, _) in enumerate(runs) if index % every == 0)
    y_ticks = tuple((y_of(tick), f"{tick:.2f}".rstrip("0").rstrip(".")) for tick in (0.0, 0.25, 0.5, 0.75, 1.0))
    return Chart(width, height, left, top, plot_width, plot_height, tuple(lines), x_labels, y_ticks)
