"""The fleet page's HTML, rendered by the hub from a ``FleetView`` (``hub/fleet_view.py``) with the Jinja
templates in ``hub/templates/``.

Rendering lives only here and in those templates: the first page load (``fleet.html``) and every refresh
(``/ui/fleet.json``, which carries the ``totals``, ``rows`` and ``details`` fragments) include the same
templates, so what a person sees after five minutes is what they would see on a fresh load. Autoescape is
on for every template, so every value from a ship (names, reasons, error texts) is escaped without anyone
having to remember it; nothing is marked safe except what the templates themselves produce. States are
written out in words with an icon, never shown by colour alone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from jinja2.ext import Extension

from sync_protocol.units import format_size

from .charts import LineChart, line_chart
from .fleet_view import ATTENTION, BEHIND, OK, SILENT, STATE_LABEL, STATE_RANK, FleetView, ShipView, age_text
from .history import Point

STATE_ICON = {SILENT: "\u2715", ATTENTION: "\u26a0", BEHIND: "\u25d4", OK: "\u2713"}
"""Cross, warning sign, quarter-full circle, tick: shapes that read apart without colour, from blocks the
common free fonts (DejaVu, Liberation) carry; the state's name is always written next to them anyway."""
NEVER_SORT = 10**12  # sorts "never in contact" after every real age

TEMPLATE_DIR = Path(__file__).with_name("templates")  # shipped as package data (pyproject.toml)

COLUMNS = (  # (heading, sort type) of the fleet table, in order
    ("Ship", "text"), ("State", "number"), ("Last contact", "number"), ("Link (reported)", "text"),
    ("Backlog", "number"), ("Backlog rows", "number"), ("Oldest pending", "number"),
    ("Rows merged today", "number"), ("Missing segments", "number"), ("Quarantined", "number"),
    ("Downlink", "text"),
)


class JoinLines(Extension):
    """Lets templates be laid out on many indented lines without that layout reaching the page.

    Between markup (a line ending in ``>`` or a Jinja tag, the next starting with ``<`` or a Jinja tag) a
    line break and its indentation are dropped; anywhere else they become one space, as HTML would read
    them. The fragments stay as compact as the page's script and tests expect (no stray text nodes in table
    rows), and a template author never needs ``{%-`` on every line.
    """

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        source = re.sub(r"(?<=[>}])\n\s*(?=[<{])", "", source.strip("\n"))
        return re.sub(r"\n\s*", " ", source)


def _n(value: int) -> str:
    return f"{value:,}"


def _clock_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d %b %H:%M")


def _seq_ranges(gaps: list[list[int]]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in gaps) or "none"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        # Next to this file, installed or not (the editable install's import hook hides it from PackageLoader).
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=jinja2.StrictUndefined,
        extensions=[JoinLines],
    )
    env.filters.update(n=_n, size=format_size, age=age_text, seq_ranges=_seq_ranges)
    env.globals.update(state_icon=STATE_ICON, state_label=STATE_LABEL, state_rank=STATE_RANK,
                       never_sort=NEVER_SORT, columns=COLUMNS)
    return env


TEMPLATES = _environment()


def render_login(message: str | None = None) -> str:
    return TEMPLATES.get_template("login.html").render(message=message)


def render_page(view: FleetView, history: dict[str, list[Point]], now: float) -> str:
    return TEMPLATES.get_template("fleet.html").render(_context(view, history, now))


def render_parts(view: FleetView, history: dict[str, list[Point]], now: float) -> dict[str, str]:
    """The three parts of the page that change: the totals, the table's rows, the per-ship details."""
    context = _context(view, history, now)
    return {part: TEMPLATES.get_template(f"{part}.html").render(context) for part in ("totals", "rows", "details")}


def _context(view: FleetView, history: dict[str, list[Point]], now: float) -> dict:
    return {
        "view": view,
        "totals": _totals(view),
        "charts": {ship.name: _charts(ship, history.get(ship.name, []), now) for ship in view.ships},
    }


def _totals(view: FleetView) -> list[tuple[str, str]]:
    t = view.totals
    return [
        ("Ships", _n(t["ships"])), ("Silent", _n(t[SILENT])), ("Need attention", _n(t[ATTENTION])),
        ("Behind", _n(t[BEHIND])), ("OK", _n(t[OK])), ("Rows merged today (UTC)", _n(t["rows_merged_today"])),
        ("Rows merged in all", _n(t["rows_merged"])), ("Backlog reported", format_size(t["backlog_bytes"])),
        ("Quarantined segments", _n(t["quarantined"])), ("Missing segments", _n(t["missing_segments"])),
        ("Merge lag", age_text(view.merge_lag_seconds) if view.merge_lag_seconds else "none (merger idle)"),
    ]


def _charts(ship: ShipView, points: list[Point], now: float) -> list[tuple[str, LineChart]]:
    """(caption, chart) of the ship's backlog and rows merged: the stored history plus the value now."""
    current = Point(now, ship.backlog["backlog_bytes"] if ship.backlog else None, ship.rows_merged)
    series = [p for p in points if p.at < now] + [current]
    backlog = [(p.at, p.backlog_bytes) for p in series if p.backlog_bytes is not None]
    merged = [(p.at, p.rows_merged) for p in series]
    return [
        ("Backlog on board (reported)", line_chart(
            backlog, title=f"Backlog reported by {ship.name}", value_text=format_size, time_text=_clock_text,
            chart_id=f"chart-backlog-{ship.name}")),
        ("Rows merged (all tables)", line_chart(
            merged, title=f"Rows merged from {ship.name}", value_text=_n, time_text=_clock_text,
            chart_id=f"chart-merged-{ship.name}")),
    ]
