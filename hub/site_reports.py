"""The backlog report each edge sends: ``PUT /v1/sync/sites/{site}/report`` every 30 s.

The edge knows what the hub cannot see: how much is still waiting on board and how its link looks.
The hub keeps only the *latest* report per site (one small row in ``site_reports``), shown in
``/v1/fleet``, ``harbour hub status`` and the fleet page; the fleet history (``hub/history.py``)
samples it over time.

The body comes from a ship, so it is read as hostile: bounded in size before it is parsed, NaN and
Infinity refused, deep nesting refused, every known field checked for type and range, and unknown
fields dropped (a newer edge may send more; the hub stores only what it understands, so a report can
never grow the database). A bad report is a ``400`` that names the field and what is wrong.

An edge with the downlink adds ``"downlink"``: the dataset versions it holds and the settings it runs with
(``sync_protocol.downlink.ReportedDownlink``, checked there field by field). Older edges leave it out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sync_protocol.downlink import ReportedDownlink
from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SiteId

from .db import LedgerDatabase, upsert

MAX_REPORT_BYTES = 64 * 1024
"""A real report is about 400 bytes, and under 2 KiB with its downlink part (the versions a ship holds, the
settings it runs with). The bound is the largest downlink part the protocol allows -- 256 dataset names with
their versions (~20 KiB) and three maps of the 7 managed settings at 2,048 characters each (~43 KiB) -- and
still keeps a hostile body from costing more than a moment of parsing."""

MAX_ERROR_TEXT_CHARS = 500
"""The link's last error is shown to operators; longer text is cut, not refused (an error message
from a TLS library can be long, and it is still worth seeing)."""

MAX_COUNT = 2**53
"""Counts and byte sizes above this cannot be exact in the JSON numbers a browser reads, and are not
real (9 PB of backlog on a ship)."""

MAX_TIMESTAMP = 32_503_680_000.0  # 3000-01-01: a timestamp past it is garbage, not a clock a bit off

LINK_STATES = ("good", "thin", "down", "unknown")
"""The edge's ``LinkState`` values; any other text is refused rather than shown to an operator."""


@dataclass(frozen=True)
class LinkReport:
    state: str
    measured_rate_bps: int | None = None
    rtt_ms: int | None = None
    last_error: str | None = None
    last_success_at: float | None = None


@dataclass(frozen=True)
class SiteReport:
    """One validated report; ``pending_rows`` and ``oldest_pending_at`` are optional (older edges)."""

    backlog_bytes: int
    pending_segments: int
    parked_segments: int
    link: LinkReport
    reported_at: float
    pending_rows: int | None = None
    oldest_pending_at: float | None = None
    downlink: ReportedDownlink | None = None  # None: an edge without the downlink

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> SiteReport:
        downlink = doc.get("downlink")
        return cls(**{**doc, "link": LinkReport(**doc["link"]),
                      "downlink": None if downlink is None else ReportedDownlink(**downlink)})


def _bad(message: str, site: SiteId) -> RemoteProtocolError:
    return RemoteProtocolError(
        message, code=ErrorCode.BAD_REQUEST, op="reading the backlog report", subject=str(site),
        hint='send JSON like {"backlog_bytes": 0, "pending_segments": 0, "link": {"state": "good"}, '
             '"reported_at": 1760000000.0}; see docs/status-page.md',
    )


def _count(doc: dict, key: str, site: SiteId, *, required: bool) -> int | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if type(value) is not int or not 0 <= value <= MAX_COUNT:  # bool is an int subclass: refused too
        raise _bad(f"{key!r} must be a whole number from 0 to 2**53, got {json.dumps(value)[:40]}", site)
    return value


def _time(doc: dict, key: str, site: SiteId, *, required: bool) -> float | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if type(value) not in (int, float) or not 0 <= value <= MAX_TIMESTAMP:
        raise _bad(f"{key!r} must be a Unix time in seconds, got {json.dumps(value)[:40]}", site)
    return float(value)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_report(body: bytes, site: SiteId) -> SiteReport:
    """Validate a report body; ``RemoteProtocolError`` (400/413) says what is wrong with it."""
    if len(body) > MAX_REPORT_BYTES:
        raise RemoteProtocolError(
            f"the backlog report is {len(body)} bytes; the hub takes at most {MAX_REPORT_BYTES}",
            code=ErrorCode.TOO_LARGE, op="reading the backlog report", subject=str(site),
            hint="a report is a few hundred bytes of counts; check what the edge sends",
        )
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise _bad("the report is nested too deeply", site) from None
    except (UnicodeDecodeError, ValueError) as error:
        raise _bad(f"the report is not valid JSON: {str(error)[:120]}", site) from None
    if not isinstance(doc, dict):
        raise _bad("the report must be a JSON object", site)
    link = doc.get("link")
    if not isinstance(link, dict):
        raise _bad("'link' must be an object with at least 'state'", site)
    if link.get("state") not in LINK_STATES:
        raise _bad(f"link 'state' must be one of {', '.join(LINK_STATES)}; got {json.dumps(link.get('state'))[:40]}",
                   site)
    error_text = link.get("last_error")
    if error_text is not None and not isinstance(error_text, str):
        raise _bad("link 'last_error' must be text or null", site)
    return SiteReport(
        backlog_bytes=_count(doc, "backlog_bytes", site, required=True),
        pending_segments=_count(doc, "pending_segments", site, required=True),
        parked_segments=_count(doc, "parked_segments", site, required=False) or 0,
        link=LinkReport(
            state=link["state"],
            measured_rate_bps=_count(link, "measured_rate_bps", site, required=False),
            rtt_ms=_count(link, "rtt_ms", site, required=False),
            last_error=error_text[:MAX_ERROR_TEXT_CHARS] if error_text else None,
            last_success_at=_time(link, "last_success_at", site, required=False),
        ),
        reported_at=_time(doc, "reported_at", site, required=True),
        pending_rows=_count(doc, "pending_rows", site, required=False),
        oldest_pending_at=_time(doc, "oldest_pending_at", site, required=False),
        downlink=_downlink(doc.get("downlink"), site),
    )


def _downlink(doc: object, site: SiteId) -> ReportedDownlink | None:
    if doc is None:
        return None
    try:
        return ReportedDownlink.from_dict(doc)
    except RemoteProtocolError as error:
        raise _bad(f"the report's 'downlink' part: {error.message}", site) from None


@dataclass(frozen=True)
class StoredReport:
    report: SiteReport
    received_at: float  # the hub's clock: ship clocks drift, so ages are computed from this one


class SiteReportStore:
    """The latest report per site, in the hub database (table ``site_reports``)."""

    def __init__(self, database: LedgerDatabase, clock: Callable[[], float]) -> None:
        self._database = database
        self._clock = clock
        if "site_reports" not in database.tables():
            with database.write() as db:  # one process at a time: concurrent CREATEs collide on PostgreSQL
                db.execute("CREATE TABLE IF NOT EXISTS site_reports (site TEXT PRIMARY KEY, received_at REAL NOT NULL,"
                           " document TEXT NOT NULL)")

    def save(self, site: SiteId, report: SiteReport) -> None:
        with self._database.write(serial=False) as db:
            db.execute(upsert("site_reports", ["site", "received_at", "document"], ["site"]),
                       [str(site), self._clock(), json.dumps(report.to_dict())])

    def latest(self) -> dict[str, StoredReport]:
        rows = self._database.db.execute("SELECT site, received_at, document FROM site_reports").fetchall()
        return {r[0]: StoredReport(SiteReport.from_dict(json.loads(r[2])), r[1]) for r in rows}

