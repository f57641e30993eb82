"""Small line charts as inline SVG, drawn by the hub: no script library, no CDN, nothing to download.

This module places the points; ``hub/templates/chart.svg`` writes the markup (escaped by the template
engine). A chart names itself (``<title>`` and ``aria-label``, with the first and last value in words) so a
screen reader, or a person who cannot tell the colours apart, reads the same as the picture shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 360, 140
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 10, 24  # room for the axis labels
MAX_DOTS = 60
"""Dots mark the newest samples only: past about sixty they merge into a thick line and only add bytes."""


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class AxisLabel:
    x: int
    y: int
    text: str
    anchor: str | None = None  # SVG text-anchor; None is the start


@dataclass(frozen=True)
class LineChart:
    """What ``chart.svg`` draws: the frame, the line through ``coords`` and the axis labels, or 'no data yet'."""

    chart_id: str
    label: str  # the title and aria-label: what the chart shows, in words
    points: int
    coords: tuple[tuple[str, str], ...]  # (x, y) in SVG units, formatted to one decimal
    axis_labels: tuple[AxisLabel, ...]
    width: int = WIDTH
    height: int = HEIGHT
    frame: Box = Box(LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM)
    empty_at: Box = Box((WIDTH + LEFT) // 2, HEIGHT // 2)

    @property
    def dots(self) -> tuple[tuple[str, str], ...]:
        return self.coords[-MAX_DOTS:]


def line_chart(points: Sequence[tuple[float, float]], *, title: str, value_text: Callable[[float], str],
               time_text: Callable[[float], str], chart_id: str) -> LineChart:
    """``points`` are (unix time, value), oldest first; an empty series draws an empty frame that says so."""
    if not points:
        return LineChart(chart_id, f"{title}: no data yet", 0, (), ())
    label = (f"{title}: {value_text(points[0][1])} at {time_text(points[0][0])}, "
             f"{value_text(points[-1][1])} at {time_text(points[-1][0])}")
    t0, t1 = points[0][0], points[-1][0]
    top = max(v for _, v in points) or 1
    span = (t1 - t0) or 1
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(t: float, v: float) -> tuple[str, str]:
        x = LEFT + (t - t0) / span * inner_w if t1 > t0 else LEFT + inner_w
        return f"{x:.1f}", f"{TOP + inner_h - v / top * inner_h:.1f}"

    axis = (
        AxisLabel(LEFT - 4, TOP + 10, value_text(top), "end"),
        AxisLabel(LEFT - 4, TOP + inner_h, "0", "end"),
        AxisLabel(LEFT, HEIGHT - 6, time_text(t0)),
        AxisLabel(WIDTH - RIGHT, HEIGHT - 6, time_text(t1), "end"),
    )
    return LineChart(chart_id, label, len(points), tuple(xy(t, v) for t, v in points), axis)
