"""The edges' backlog reports: validation of hostile bodies (G6), who may report for whom (G5), storage,
and the report showing up in ``/v1/fleet`` and ``harbour hub status``."""

from __future__ import annotations

import asyncio
import json

import pytest

from hub.site_reports import MAX_ERROR_TEXT_CHARS, MAX_REPORT_BYTES, SiteReportStore, parse_report
from sync_protocol.downlink import ReportedDownlink
from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SiteId

from .conftest import harbour

SITE = SiteId("ship-1")
PATH = "/v1/sync/sites/{}/report"


def edge_document(**overrides) -> dict:
    """What ``edge_node.sync.service.SyncService._report`` sends, extras included."""
    doc = {"backlog_bytes": 123_456, "pending_segments": 3, "parked_segments": 1, "reported_at": 1_760_000_000.5,
           "link": {"state": "thin", "measured_rate": "512 kbit/s", "measured_rate_bps": 512_000, "rtt_ms": 640,
                    "failures_in_a_row": 0, "last_error": None, "last_success_at": 1_759_999_990.0}}
    doc.update(overrides)
    return doc


def body(doc) -> bytes:
    return json.dumps(doc).encode()


def test_the_edges_own_report_is_read_and_unknown_fields_are_dropped():
    report = parse_report(body(edge_document(future_field={"x": 1})), SITE)
    assert (report.backlog_bytes, report.pending_segments, report.parked_segments) == (123_456, 3, 1)
    assert (report.link.state, report.link.measured_rate_bps, report.link.rtt_ms) == ("thin", 512_000, 640)
    assert report.pending_rows is None and report.oldest_pending_at is None
    assert "future_field" not in json.dumps(report.to_dict())
    richer = parse_report(body(edge_document(pending_rows=9, oldest_pending_at=1_759_990_000)), SITE)
    assert (richer.pending_rows, richer.oldest_pending_at) == (9, 1_759_990_000.0)


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("raw, words", [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "JSON object"),
    (body(edge_document(backlog_bytes=-1)), "backlog_bytes"),
    (body(edge_document(backlog_bytes=True)), "backlog_bytes"),
    (body(edge_document(backlog_bytes=1.5)), "backlog_bytes"),
    (body(edge_document(pending_segments=2**60)), "pending_segments"),
    (body(edge_document(pending_segments="3")), "pending_segments"),
    (body({k: v for k, v in edge_document().items() if k != "reported_at"}), "reported_at"),
    (body(edge_document(reported_at=1e300)), "reported_at"),
    (body(edge_document(link="good")), "link"),
    (body(edge_document(link={"state": "<script>"})), "state"),
    (body(edge_document(link={"state": "good", "last_error": ["x"]})), "last_error"),
    (body(edge_document(link={"state": "good", "rtt_ms": -5})), "rtt_ms"),
    (b'{"backlog_bytes": NaN, "pending_segments": 0, "link": {"state": "good"}, "reported_at": 1}', "NaN"),
    (b'{"backlog_bytes": 1e999}', "backlog_bytes"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
])
def test_bad_reports_are_refused_with_what_is_wrong(raw, words):
    with pytest.raises(RemoteProtocolError) as caught:
        parse_report(raw, SITE)
    assert caught.value.code is ErrorCode.BAD_REQUEST and words in str(caught.value)
    assert json.loads(caught.value.to_body())["error"]


@pytest.mark.guarantee("G6")
def test_oversized_report_and_long_error_text():
    with pytest.raises(RemoteProtocolError) as caught:
        parse_report(b" " * (MAX_REPORT_BYTES + 1), SITE)
    assert caught.value.code is ErrorCode.TOO_LARGE
    long_error = edge_document(link={"state": "down", "last_error": "x" * 5000})
    assert len(parse_report(body(long_error), SITE).link.last_error) == MAX_ERROR_TEXT_CHARS


def test_store_keeps_the_latest_report_per_site(database, clock):
    store = SiteReportStore(database, clock)
    store.save(SITE, parse_report(body(edge_document(backlog_bytes=1)), SITE))
    clock.advance(30)
    store.save(SITE, parse_report(body(edge_document(backlog_bytes=2)), SITE))
    latest = store.latest()
    assert list(latest) == ["ship-1"]
    assert latest["ship-1"].report.backlog_bytes == 2 and latest["ship-1"].received_at == clock()


# -- over HTTP, against a real hub ------------------------------------------------------------------------


def put(hub, site: str, token: str | None, raw: bytes, content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return hub.request("PUT", PATH.format(site), headers, raw)


@pytest.mark.integration
def test_report_over_http_is_stored_counted_as_contact_and_shown(hub):
    token = hub.add_site("ship-1")
    operator = hub.add_operator()
    fleet = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"}).json()
    assert fleet["sites"][0]["last_contact"] is None and fleet["sites"][0]["backlog"] is None

    answer = put(hub, "ship-1", token, body(edge_document()))
    assert answer.status == 204, answer.body
    site = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"}).json()["sites"][0]
    assert site["last_contact"] is not None
    backlog = site["backlog"]
    assert (backlog["backlog_bytes"], backlog["pending_segments"], backlog["link_state"]) == (123_456, 3, "thin")
    assert backlog["reported_at"].startswith("2025-10-09") and backlog["seconds_since_report"] < 30

    text = harbour("hub", "status", "--data", str(hub.data)).stdout
    assert "120.6 KiB in 3 segments" in text and "link thin" in text
    as_json = json.loads(harbour("hub", "status", "--data", str(hub.data), "--format", "json").stdout)
    assert as_json["sites"][0]["backlog"]["link_rate_bps"] == 512_000


@pytest.mark.guarantee("G5")
@pytest.mark.integration
def test_who_may_report_for_whom_and_bad_requests(hub):
    token = hub.add_site("ship-1")
    other = hub.add_site("ship-2")
    operator = hub.add_operator()
    good = body(edge_document())
    cases = [
        (put(hub, "ship-1", None, good), 401, "unauthorized"),
        (put(hub, "ship-1", "hbs_wrong", good), 401, "unauthorized"),
        (put(hub, "ship-1", other, good), 403, "forbidden"),
        (put(hub, "ship-1", operator, good), 403, "forbidden"),
        (put(hub, "Ship_1", token, good), 400, "bad-identifier"),
        (put(hub, "ship-1", token, b"{", ), 400, "bad-request"),
        (put(hub, "ship-1", token, good, "text/plain"), 415, "unsupported-media-type"),
        (put(hub, "ship-1", token, b"{" + b" " * (MAX_REPORT_BYTES + 10) + b"}"), 413, "too-large"),
    ]
    for answer, status, code in cases:
        assert (answer.status, answer.json()["code"]) == (status, code), answer.body
        assert answer.json()["error"]
    fleet = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"}).json()
    assert all(site["backlog"] is None for site in fleet["sites"])  # nothing bad was stored
    assert hub.request("GET", "/healthz").status == 200


@pytest.mark.integration
def test_the_edges_own_transport_reports_to_the_hub(hub):
    """The contract between the two sides: the edge's transport and document shape, the hub's route."""
    from edge_node.sync.link import LinkMonitor
    from edge_node.sync.transport import AiohttpHubTransport

    token = hub.add_site("ship-1")
    operator = hub.add_operator()

    async def send():
        transport = AiohttpHubTransport(hub.url, token)
        try:
            document = {"backlog_bytes": 10, "pending_segments": 1, "parked_segments": 0, "reported_at": 1.0e9,
                        "link": LinkMonitor(clock=lambda: 1.0e9).describe()}
            return await transport.report("ship-1", document)
        finally:
            await transport.close()

    assert asyncio.run(send()).status == 204
    site = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"}).json()["sites"][0]
    assert site["backlog"]["link_state"] == "unknown" and site["backlog"]["backlog_bytes"] == 10


def test_the_downlink_part_is_optional_checked_and_stored(database, clock):
    assert parse_report(body(edge_document()), SITE).downlink is None  # an edge without the downlink
    part = {"datasets": {"offers": 3}, "settings": {"revision": 2, "applied": {"seal-size": "32MiB"},
                                                    "pinned": {"priority": "offers=0"}, "refused": {},
                                                    "newer_field": 1}}
    report = parse_report(body(edge_document(downlink=part)), SITE)
    assert report.downlink == ReportedDownlink({"offers": 3}, 2, {"seal-size": "32MiB"}, {"priority": "offers=0"}, {})
    store = SiteReportStore(database, clock)
    store.save(SITE, report)
    assert store.latest()["ship-1"].report == report
    with pytest.raises(RemoteProtocolError) as caught:
        parse_report(body(edge_document(downlink={"datasets": {"offers": "3"}})), SITE)
    assert caught.value.code is ErrorCode.BAD_REQUEST and "'downlink' part" in str(caught.value)
