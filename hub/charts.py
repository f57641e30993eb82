"""Small line charts as inline SVG, drawn by the hub: no script library, no CDN, nothing to download.

A chart names itself (``<title>`` and ``aria-label``, with the first and last value in words) so a
screen reader, or a person who cannot tell the colours apart, reads the same as the picture shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

WIDTH, HEIGHT = 360, 140
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 10, 24  # room for the axis labels


def line_chart(points: Sequence[tuple[float, float]], *, title: str, value_text: Callable[[float], str],
               time_text: Callable[[float], str], chart_id: str) -> str:
    """``points`` are (unix time, value), oldest first; an empty series draws an empty frame that says so."""
    label = f"{title}: no data yet"
    if points:
        label = (f"{title}: {value_text(points[0][1])} at {time_text(points[0][0])}, "
                 f"{value_text(points[-1][1])} at {time_text(points[-1][0])}")
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" role="img" aria-label="{escape(label)}" '
        f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" data-points="{len(points)}">',
        f"<title>{escape(label)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
        'class="frame"/>',
    ]
    if points:
        parts += _plot(points, value_text, time_text)
    else:
        parts.append(f'<text x="{(WIDTH + LEFT) // 2}" y="{HEIGHT // 2}" text-anchor="middle">no data yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def _plot(points, value_text, time_text) -> list[str]:
    t0, t1 = points[0][0], points[-1][0]
    top = max(v for _, v in points) or 1
    span = (t1 - t0) or 1
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(t: float, v: float) -> str:
        x = LEFT + (t - t0) / span * inner_w if t1 > t0 else LEFT + inner_w
        return f"{x:.1f},{TOP + inner_h - v / top * inner_h:.1f}"

    coords = [xy(t, v) for t, v in points]
    parts = [f'<polyline class="line" fill="none" points="{" ".join(coords)}"/>']
    parts += [f'<circle class="dot" r="2.5" cx="{c.split(",")[0]}" cy="{c.split(",")[1]}"/>' for c in coords[-60:]]
    parts += [
        f'<text class="axis" x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end">{escape(value_text(top))}</text>',
        f'<text class="axis" x="{LEFT - 4}" y="{TOP + inner_h}" text-anchor="end">0</text>',
        f'<text class="axis" x="{LEFT}" y="{HEIGHT - 6}">{escape(time_text(t0))}</text>',
        f'<text class="axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">{escape(time_text(t1))}</text>',
    ]
    return parts
