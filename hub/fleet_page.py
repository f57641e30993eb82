"""The fleet page's HTML, rendered by the hub from a ``FleetView`` (``hub/fleet_view.py``).

Rendering lives only here, in Python: the first page load and every refresh (``/ui/fleet.json``, which
carries these same fragments) come from the same functions, so what a person sees after five minutes
is what they would see on a fresh load. Every value from a ship (names, reasons, error texts) goes
through ``html.escape``. States are written out in words with an icon, never shown by colour alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from sync_protocol.units import format_size

from .charts import line_chart
from .fleet_view import ATTENTION, BEHIND, OK, SILENT, STATE_LABEL, STATE_RANK, FleetView, ShipView, age_text
from .history import Point

STATE_ICON = {SILENT: "\u2715", ATTENTION: "\u26a0", BEHIND: "\u25d4", OK: "\u2713"}
"""Cross, warning sign, quarter-full circle, tick: shapes that read apart without colour, from blocks the
common free fonts (DejaVu, Liberation) carry; the state's name is always written next to them anyway."""
NEVER_SORT = 10**12  # sorts "never in contact" after every real age

COLUMNS = (  # (heading, sort type) of the fleet table, in order
    ("Ship", "text"), ("State", "number"), ("Last contact", "number"), ("Link (reported)", "text"),
    ("Backlog", "number"), ("Backlog rows", "number"), ("Oldest pending", "number"),
    ("Rows merged today", "number"), ("Missing segments", "number"), ("Quarantined", "number"),
)


def _n(value: int) -> str:
    return f"{value:,}"


def _clock_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d %b %H:%M")


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="/ui/fleet.css"></head>'
        f"<body>{body}</body></html>\n"
    )


def render_login(message: str | None = None) -> str:
    alert = f'<p class="error" role="alert" id="login-error">{escape(message)}</p>' if message else ""
    return _document("Harbour hub - log in", f"""
<main class="login"><h1>Harbour hub: fleet status</h1>
<p>Log in with an operator token. An operator creates one with
<code>harbour hub add-operator NAME --data DIR</code>; ship (site) tokens cannot open this page.</p>
{alert}
<form method="post" action="/login" id="login-form">
<label for="token">Operator token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required maxlength="200">
<button type="submit">Log in</button>
</form>
<p class="hint">Programs read the same data as JSON from <code>/v1/fleet</code> with
<code>Authorization: Bearer &lt;operator token&gt;</code>.</p></main>""")


def render_page(view: FleetView, history: dict[str, list[Point]], now: float) -> str:
    parts = render_parts(view, history, now)
    headings = "".join(
        f'<th scope="col" data-sort-type="{kind}" aria-sort="none"><button type="button">{escape(name)}</button></th>'
        for name, kind in COLUMNS
    )
    return _document("Harbour hub - fleet", f"""
<header><h1>Harbour hub: fleet status</h1>
<form method="post" action="/logout"><button type="submit">Log out</button></form></header>
<main>
<section aria-labelledby="totals-heading"><h2 id="totals-heading">Fleet</h2>
<div id="totals">{parts["totals"]}</div>
<p class="updated">Updated <span id="updated">{escape(view.generated_at)}</span> (refreshes every few seconds)
<span id="refresh-error" role="status"></span></p></section>
<section aria-labelledby="ships-heading"><h2 id="ships-heading">Ships</h2>
<table id="fleet"><caption>One row per ship, most urgent first. Select a column heading to sort by it.</caption>
<thead><tr>{headings}</tr></thead><tbody id="fleet-rows">{parts["rows"]}</tbody></table></section>
<section aria-labelledby="details-heading"><h2 id="details-heading">Ship details</h2>
<div id="details">{parts["details"]}</div></section>
</main><script src="/ui/fleet.js"></script>""")


def render_parts(view: FleetView, history: dict[str, list[Point]], now: float) -> dict[str, str]:
    """The three parts of the page that change: the totals, the table's rows, the per-ship details."""
    return {
        "totals": _totals(view),
        "rows": "".join(_row(ship) for ship in view.ships),
        "details": "".join(_details(ship, history.get(ship.name, []), now) for ship in view.ships),
    }


def _totals(view: FleetView) -> str:
    t = view.totals
    items = [
        ("Ships", _n(t["ships"])), ("Silent", _n(t[SILENT])), ("Need attention", _n(t[ATTENTION])),
        ("Behind", _n(t[BEHIND])), ("OK", _n(t[OK])), ("Rows merged today (UTC)", _n(t["rows_merged_today"])),
        ("Rows merged in all", _n(t["rows_merged"])), ("Backlog reported", format_size(t["backlog_bytes"])),
        ("Quarantined segments", _n(t["quarantined"])), ("Missing segments", _n(t["missing_segments"])),
        ("Merge lag", age_text(view.merge_lag_seconds) if view.merge_lag_seconds else "none (merger idle)"),
    ]
    cells = "".join(f'<div><dt>{escape(k)}</dt><dd data-total="{i}">{escape(v)}</dd></div>'
                    for i, (k, v) in enumerate(items))
    return f'<dl class="totals">{cells}</dl>'


def _state(ship: ShipView) -> str:
    why = "; ".join(f.text for f in ship.flags)
    text = f'<span aria-hidden="true">{STATE_ICON[ship.state]}</span> <strong>{STATE_LABEL[ship.state]}</strong>'
    return text + (f'<br><span class="why">{escape(why)}</span>' if why else "")


def _cell(text: str, sort: object, cls: str = "") -> str:
    css = f' class="{cls}"' if cls else ""
    return f'<td data-sort="{escape(str(sort))}"{css}>{text}</td>'


def _row(ship: ShipView) -> str:
    b = ship.backlog
    since = ship.seconds_since_contact
    contact = "never" if since is None else f"{age_text(since)} ago"
    cells = [
        f'<th scope="row" data-sort="{escape(ship.name)}"><a href="#ship-{escape(ship.name)}">'
        f"{escape(ship.name)}</a></th>",
        _cell(_state(ship), STATE_RANK[ship.state], "state"),
        _cell(escape(contact), NEVER_SORT if since is None else since),
        _cell(escape(b["link_state"]) if b else "no report", b["link_state"] if b else "~"),
        _cell(format_size(b["backlog_bytes"]) if b else "n/a", b["backlog_bytes"] if b else -1, "num"),
        _cell(_n(b["pending_rows"]) if b and b["pending_rows"] is not None else "n/a",
              b["pending_rows"] if b and b["pending_rows"] is not None else -1, "num"),
        _cell(age_text(b["oldest_pending_seconds"]) if b and b["oldest_pending_seconds"] is not None else "n/a",
              b["oldest_pending_seconds"] if b and b["oldest_pending_seconds"] is not None else -1, "num"),
        _cell(_n(ship.rows_merged_today), ship.rows_merged_today, "num"),
        _cell(_n(ship.missing_segments), ship.missing_segments, "num"),
        _cell(_n(ship.quarantined), ship.quarantined, "num"),
    ]
    return f'<tr class="state-{ship.state}" data-site="{escape(ship.name)}">{"".join(cells)}</tr>'


def _details(ship: ShipView, points: list[Point], now: float) -> str:
    name = escape(ship.name)
    return (
        f'<details class="ship state-{ship.state}" id="ship-{name}" data-site="{name}">'
        f"<summary><strong>{name}</strong>: {_state(ship)}</summary>"
        f"{_backlog_text(ship)}{_tables(ship)}{_quarantine(ship)}{_charts(ship, points, now)}</details>"
    )


def _backlog_text(ship: ShipView) -> str:
    b = ship.backlog
    if b is None:
        return "<p>No backlog report from this ship's edge yet (one comes every 30 s while it reaches the hub).</p>"
    rate = f", measured {b['link_rate_bps'] / 1e6:.2f} Mbit/s" if b["link_rate_bps"] else ""
    rtt = f", round trip {b['link_rtt_ms']} ms" if b["link_rtt_ms"] is not None else ""
    error = b["link_last_error"]
    error = f' Last link error: <span class="why">{escape(error)}</span>.' if error else ""
    return (f"<p>Last report {escape(age_text(b['seconds_since_report']))} ago: "
            f"{format_size(b['backlog_bytes'])} in {_n(b['pending_segments'])} segment(s) waiting on board, "
            f"{_n(b['parked_segments'])} parked; link {escape(b['link_state'])}{rate}{rtt}.{error}</p>")


def _tables(ship: ShipView) -> str:
    tables = ship.site["tables"]
    if not tables:
        return "<p>No segments from this ship yet.</p>"
    head = "".join(f'<th scope="col">{h}</th>' for h in (
        "Table", "Rows merged", "Segments waiting to merge", "Watermark (seq)", "Highest seq", "Gaps", "Chain breaks"))
    rows = []
    for table, t in sorted(tables.items()):
        gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in t["gaps"]) or "none"
        breaks = ", ".join(map(str, t["chain_breaks"])) or "none"
        rows.append(f'<tr><th scope="row">{escape(table)}</th><td class="num">{_n(t["rows_merged"])}</td>'
                    f'<td class="num">{_n(t["segments_pending_merge"])}</td><td class="num">{t["watermark"]}</td>'
                    f'<td class="num">{t["highest_seq"]}</td><td>{gaps}</td><td>{breaks}</td></tr>')
    return (f'<table class="tables"><caption>Tables of {escape(ship.name)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _quarantine(ship: ShipView) -> str:
    entries = ship.site["quarantined"]
    if not entries:
        return "<p>Quarantine: empty.</p>"
    rows = "".join(
        f'<tr><td>{escape(q["table"])}</td><td class="num">{q["seq"]}</td><td>{escape(q["reason"])}</td>'
        f'<td>{escape(q["at"] or "")}</td></tr>' for q in entries
    )
    head = "".join(f'<th scope="col">{h}</th>' for h in ("Table", "Seq", "Reason", "Since (UTC)"))
    return (f'<table class="quarantine"><caption>Quarantined segments of {escape(ship.name)} '
            f"(kept in the hub's quarantine/ directory)</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _charts(ship: ShipView, points: list[Point], now: float) -> str:
    current = Point(now, ship.backlog["backlog_bytes"] if ship.backlog else None, ship.rows_merged)
    series = [p for p in points if p.at < now] + [current]
    backlog = [(p.at, p.backlog_bytes) for p in series if p.backlog_bytes is not None]
    merged = [(p.at, p.rows_merged) for p in series]
    figures = (
        ("Backlog on board (reported)", line_chart(
            backlog, title=f"Backlog reported by {ship.name}", value_text=format_size, time_text=_clock_text,
            chart_id=f"chart-backlog-{ship.name}")),
        ("Rows merged (all tables)", line_chart(
            merged, title=f"Rows merged from {ship.name}", value_text=_n, time_text=_clock_text,
            chart_id=f"chart-merged-{ship.name}")),
    )
    inner = "".join(f"<figure>{chart}<figcaption>{caption}, UTC</figcaption></figure>" for caption, chart in figures)
    return f'<div class="charts">{inner}</div>'
