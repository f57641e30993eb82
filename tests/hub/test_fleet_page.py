"""The fleet page without a browser: which ship is silent/behind/needs attention, the bounded chart history,
sessions, escaping of what ships send, and the page's access rules over HTTP against a real hub (G5)."""

from __future__ import annotations

import json
import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import pytest

import hub.sessions
from hub.fleet_page import TEMPLATES, render_login, render_page, render_parts
from hub.fleet_view import (
    ATTENTION,
    BEHIND_AFTER_SECONDS,
    SILENT,
    SILENT_AFTER_SECONDS,
    age_text,
    fleet_view,
    ship_view,
)
from hub.history import MAX_HISTORY_SECONDS, FleetHistory
from hub.sessions import SESSION_SECONDS, Session, SessionStore

from .conftest import harbour

REPO = Path(__file__).resolve().parents[2]


def site(name: str = "ship-1", *, contact: float | None = 5.0, backlog: dict | None = None, gaps=(),
         quarantined=(), rows: int = 10, registered: bool = True) -> dict:
    return {
        "site": name, "registered": registered, "last_contact": None, "seconds_since_contact": contact,
        "backlog": backlog, "rows_merged_today": rows,
        "tables": {"telemetry": {"segments_committed": 3, "rows_committed": rows, "rows_merged": rows,
                                 "segments_pending_merge": 0, "segments_quarantined": len(quarantined),
                                 "watermark": 3, "highest_seq": 3, "gaps": [list(g) for g in gaps],
                                 "chain_breaks": []}},
        "quarantined": [{"table": "telemetry", "seq": 2, "reason": r, "at": None} for r in quarantined],
    }


def backlog(**overrides) -> dict:
    doc = {"backlog_bytes": 1024, "pending_segments": 1, "pending_rows": None, "oldest_pending_seconds": None,
           "parked_segments": 0, "link_state": "good", "link_rate_bps": None, "link_rtt_ms": None,
           "link_last_error": None, "reported_at": None, "received_at": None, "seconds_since_report": 3.0}
    doc.update(overrides)
    return doc


# -- states -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry, state, words", [
    (site(), "ok", ""),
    (site(contact=None), "silent", "never in contact"),
    (site(contact=SILENT_AFTER_SECONDS + 1), "silent", "no contact for 10 min"),
    (site(contact=SILENT_AFTER_SECONDS - 1), "ok", ""),
    (site(quarantined=["schema conflict"]), "attention", "1 segment(s) quarantined"),
    (site(gaps=[(4, 6)]), "attention", "3 segment(s) missing"),
    (site(backlog=backlog(parked_segments=2)), "attention", "2 segment(s) parked"),
    (site(backlog=backlog(oldest_pending_seconds=BEHIND_AFTER_SECONDS + 60)), "behind", "oldest unsynced data 1 h"),
    (site(backlog=backlog(backlog_bytes=1 << 30)), "behind", "large backlog"),
    (site(backlog=backlog(link_state="down")), "behind", "link down"),
    (site(registered=False), "attention", "not registered"),
    # Several at once: the worst decides the state, every reason is listed.
    (site(contact=None, quarantined=["x"], backlog=backlog(link_state="down")), "silent", "link down"),
])
def test_each_ship_gets_a_state_and_the_reasons_in_words(entry, state, words):
    view = ship_view(entry)
    assert view.state == state
    assert words in "; ".join(f.text for f in view.flags)


def test_fleet_totals_and_urgent_ships_first():
    report = {"generated_at": "now", "merge_lag_seconds": 4.0, "sites": [
        site("ship-a", rows=5), site("ship-b", contact=None, rows=7),
        site("ship-c", quarantined=["x"], gaps=[(2, 2)], rows=11, backlog=backlog(backlog_bytes=100))]}
    view = fleet_view(report)
    assert [s.name for s in view.ships] == ["ship-b", "ship-c", "ship-a"]
    assert view.totals == {"ships": 3, "silent": 1, "attention": 1, "behind": 0, "ok": 1, "rows_merged_today": 23,
                           "rows_merged": 23, "backlog_bytes": 100, "quarantined": 1, "missing_segments": 1}


@pytest.mark.parametrize("seconds, text", [(None, "never"), (0, "0 s"), (59.9, "59 s"), (60, "1 min"),
                                           (3 * 3600, "3 h"), (3 * 3600 + 600, "3 h 10 min"), (86_400 * 2, "2 d")])
def test_ages_for_people(seconds, text):
    assert age_text(seconds) == text


# -- history ------------------------------------------------------------------------------------------------


def test_history_is_thinned_and_bounded_however_long_the_hub_runs(database, clock):
    if database.dialect == "sqlite":
        database.db.execute("PRAGMA synchronous=OFF")  # thousands of samples; durability is not what is tested
    history = FleetHistory(database, clock)
    # 94 days sampled every 2 hours, 4 days hourly, then three hours by the minute
    samples = [7200] * (12 * 94) + [3600] * (24 * 4) + [60] * 180
    for n, step in enumerate(samples):
        history.record([("ship-1", n, n * 10)])
        clock.advance(step)
    now = clock()
    kept = history.series("ship-1", 0)
    assert history.count("ship-1") == len(kept) < 700
    assert kept[0].at >= now - 60 - MAX_HISTORY_SECONDS  # nothing older than the limit
    assert kept[-1].rows_merged == (len(samples) - 1) * 10  # the newest point is always kept
    assert len([p for p in kept if p.at > now - 3600]) >= 59  # the last hour as sampled
    # then one per 10 minutes: 12 buckets, two of them cut by the window's ends
    assert len([p for p in kept if now - 3 * 3600 < p.at < now - 3600]) <= 14
    assert 23 <= len([p for p in kept if now - 3 * 86_400 < p.at < now - 2 * 86_400]) <= 24  # one per hour
    assert 3 <= len([p for p in kept if now - 9 * 86_400 < p.at < now - 8 * 86_400]) <= 5  # one per 6 hours


def test_history_samples_a_fleet_report(database, clock):
    history = FleetHistory(database, clock)
    history.record_report({"sites": [site("ship-1", rows=42, backlog=backlog(backlog_bytes=7)), site("ship-2")]})
    assert [(p.backlog_bytes, p.rows_merged) for p in history.series("ship-1", 0)] == [(7, 42)]
    assert history.series("ship-2", 0)[0].backlog_bytes is None


# -- sessions -----------------------------------------------------------------------------------------------


def test_sessions_expire_are_bounded_and_keep_no_token(database, clock, monkeypatch):
    sessions = SessionStore(database, clock)
    first = sessions.open("ops", "a" * 64)
    assert sessions.session(first) == Session("ops", "a" * 64)
    assert all(sessions.session(made_up) is None for made_up in ("made-up", None, "x" * 999))
    assert SessionStore(database, clock).session(first) is not None  # another process (or a restart) sees it
    clock.advance(SESSION_SECONDS + 1)
    assert sessions.session(first) is None
    monkeypatch.setattr(hub.sessions, "MAX_SESSIONS", 5)
    ids = []
    for i in range(6):
        ids.append(sessions.open(f"ops{i}", "b" * 64))
        clock.advance(1)
    assert sessions.session(ids[0]) is None and sessions.session(ids[-1]).operator == "ops5"
    assert database.db.execute("SELECT COUNT(*) FROM page_sessions").fetchone()[0] == 5
    sessions.close(ids[-1])
    assert sessions.session(ids[-1]) is None
    stored = database.db.execute("SELECT * FROM page_sessions").fetchall()
    assert not any(first in str(row) for row in stored)  # only the id's hash is stored


# -- rendering ------------------------------------------------------------------------------------------------


@pytest.mark.guarantee("G6")
def test_what_a_ship_sends_is_escaped_everywhere():
    hostile = "<script>alert(1)</script>"
    entry = site(quarantined=[hostile], backlog=backlog(link_last_error=hostile, link_state="down"))
    report = {"generated_at": "now", "merge_lag_seconds": 0.0, "sites": [entry]}
    html = render_page(fleet_view(report), {}, 1_760_000_000.0)
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1 and '<script src="/ui/fleet.js">' in html
    assert re.search(r'<th scope="col"', html) and 'scope="row"' in html


class _Markup(HTMLParser):
    """What a browser would build from the HTML: the elements, their attributes, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("hostile", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
                                     "' onmouseover='alert(1)' x='", "</textarea><svg onload=alert(1)>&amp;"])
def test_markup_and_quotes_from_a_ship_stay_text_in_every_part_and_attribute(hostile):
    # A site name cannot hold these (identifiers are checked), but the page must not rely on that.
    entry = site(hostile, quarantined=[hostile], backlog=backlog(link_last_error=hostile, link_state=hostile))
    entry["tables"] = {hostile: entry["tables"]["telemetry"]}
    view = fleet_view({"generated_at": hostile, "merge_lag_seconds": 0.0, "sites": [entry]})
    parts = render_parts(view, {}, 1_760_000_000.0)
    for html in (render_page(view, {}, 1_760_000_000.0), *parts.values(), render_login(hostile)):
        markup = _Markup(html)
        assert not {"img", "textarea"} & {tag for tag, _ in markup.tags}
        assert [a for _, attrs in markup.tags for a in attrs if a.startswith("on")] == []
        assert [attrs for tag, attrs in markup.tags if tag == "script"] in ([], [{"src": "/ui/fleet.js"}])
    rows = _Markup(parts["rows"])
    assert [attrs["data-site"] for tag, attrs in rows.tags if tag == "tr"] == [hostile]  # shown as it is, as text
    assert hostile in "".join(rows.text)
    details = "".join(_Markup(parts["details"]).text)
    assert details.count(hostile) >= 4  # name, link error, table name, quarantine reason


def test_template_layout_does_not_reach_the_page():
    template = TEMPLATES.from_string('<tr>\n  {% for x in xs %}\n    <td>{{ x }}</td>\n  {% endfor %}\n</tr>\n'
                                     "<p>two lines\n   of prose, {{ word }}\n  here</p>\n")
    expected = "<tr><td>1</td><td>2</td></tr><p>two lines of prose, &lt;b&gt; here</p>"
    assert template.render(xs=[1, 2], word="<b>") == expected


def test_the_templates_ship_in_the_wheel():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["hub"]
    templates = [p.relative_to(REPO / "hub").as_posix() for p in (REPO / "hub" / "templates").iterdir()]
    assert templates and all(any(fnmatch(t, pattern) for pattern in patterns) for t in templates), templates


def test_charts_draw_history_plus_now_and_say_what_they_show():
    from hub.history import Point

    view = fleet_view({"generated_at": "now", "merge_lag_seconds": 0.0,
                       "sites": [site("ship-1", rows=30, backlog=backlog(backlog_bytes=2048))]})
    points = [Point(1_760_000_000.0 - 120, 4096, 10), Point(1_760_000_000.0 - 60, None, 20)]
    details = render_parts(view, {"ship-1": points}, 1_760_000_000.0)["details"]
    backlog_chart = re.search(r'<svg[^>]*id="chart-backlog-ship-1"[^>]*>', details).group(0)
    merged_chart = re.search(r'<svg[^>]*id="chart-merged-ship-1"[^>]*>', details).group(0)
    assert 'data-points="2"' in backlog_chart  # the point without a report is left out
    assert 'data-points="3"' in merged_chart and "30 at" in merged_chart and "10 at" in merged_chart


# -- over HTTP, against a real hub --------------------------------------------------------------------------


def login(hub, token: str, content_type: str = "application/x-www-form-urlencoded"):
    return hub.request("POST", "/login", {"Content-Type": content_type}, f"token={token}".encode())


def cookie_of(answer) -> str:
    return answer.headers["set-cookie"].split(";")[0]


@pytest.mark.guarantee("G5")
@pytest.mark.integration
def test_login_sessions_and_who_sees_the_fleet(hub):
    site_token = hub.add_site("ship-1")
    operator = hub.add_operator("alice")

    page = hub.request("GET", "/")
    assert page.status == 200 and b'<label for="token">' in page.body and b"fleet-rows" not in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert hub.request("GET", "/ui/fleet.json").status == 401
    assert hub.request("GET", "/ui/fleet.json", {"Authorization": f"Bearer {operator}"}).status == 401  # cookie only

    refused = login(hub, site_token)
    assert refused.status == 403 and b"operator token" in refused.body and "set-cookie" not in refused.headers
    assert login(hub, "hbo_guess").status == 401
    assert login(hub, operator, "text/plain").status == 400
    assert hub.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"},
                       b"token=" + b"x" * 5000).status == 400

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for foreign in ({"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{hub.port + 1}"},
                    {"Sec-Fetch-Site": "cross-site", "Origin": "null"}, {"Sec-Fetch-Site": "same-site"}):
        refused = hub.request("POST", "/login", {**form, **foreign}, f"token={operator}".encode())
        assert refused.status == 403 and "set-cookie" not in refused.headers, foreign  # login CSRF (issue 16)
    ours = hub.request("POST", "/login", {**form, "Sec-Fetch-Site": "same-origin", "Origin": "null"},
                       f"token={operator}".encode())
    assert ours.status == 303  # our page's own form: Origin is "null" under its no-referrer policy
    same_site = hub.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded",
                                               "Origin": f"http://127.0.0.1:{hub.port}"}, f"token={operator}".encode())
    assert same_site.status == 303

    answer = login(hub, operator)
    assert answer.status == 303 and answer.headers["location"] == "/"
    attributes = answer.headers["set-cookie"].lower()
    assert "httponly" in attributes and "samesite=strict" in attributes and operator.lower() not in attributes
    session = {"Cookie": cookie_of(answer)}
    assert b"fleet-rows" in hub.request("GET", "/", session).body
    doc = hub.request("GET", "/ui/fleet.json", session).json()
    assert [s["site"] for s in doc["ships"]] == ["ship-1"] and doc["ships"][0]["state"] == "silent"
    assert set(doc["html"]) == {"totals", "rows", "details"}
    assert hub.request("GET", "/ui/fleet.js").headers["content-type"].startswith("text/javascript")

    # Revoking (here: rotating) the operator's token ends the session at once.
    harbour("hub", "add-operator", "alice", "--rotate", "--data", str(hub.data))
    assert hub.request("GET", "/ui/fleet.json", session).status == 401
    assert b"fleet-rows" not in hub.request("GET", "/", session).body


@pytest.mark.guarantee("G5")
@pytest.mark.integration
def test_logout_ends_the_session(hub):
    session = {"Cookie": cookie_of(login(hub, hub.add_operator("bob")))}
    assert hub.request("GET", "/ui/fleet.json", session).status == 200
    out = hub.request("POST", "/logout", session)
    assert out.status == 303 and "harbour_session=" in out.headers["set-cookie"]
    assert hub.request("GET", "/ui/fleet.json", session).status == 401
    assert json.loads(hub.request("GET", "/ui/fleet.json", session).body)["error"]


def test_a_ship_whose_token_is_refused_needs_attention_and_is_not_silent():
    refused = {**site(contact=None), "seconds_since_token_refused": 40.0}
    view = ship_view(refused)
    assert view.state == ATTENTION and [f.text for f in view.flags if f.state == SILENT] == []
    assert "token refused by the hub 40 s ago" in view.flags[0].text and "--rotate" in view.flags[0].text
    long_ago = {**site(contact=None), "seconds_since_token_refused": 10 * 86_400.0}
    assert ship_view(long_ago).state == SILENT  # a refusal weeks ago says nothing about today
