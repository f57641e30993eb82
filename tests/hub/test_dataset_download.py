"""A ship downloads a dataset version (``hub.dataset_download`` and its route in ``hub.http_api``): ranges parsed
as RFC 9110 asks, and end to end through a real ``harbour hub run``: publish -> report answer -> download with a
cut and a Range resume -> sha256 -> 410 after pruning, 404 for another ship's dataset, 416, and hostile requests."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os

import aiohttp
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from hub.dataset_download import parse_range, send_version
from hub.datasets import DatasetVersion
from sync_protocol.downlink import DATASET_VERSION_PATH, DesiredState
from sync_protocol.errors import ErrorCode, RemoteProtocolError

from .conftest import REPORT, bearer, harbour, report, report_body


@pytest.mark.parametrize("header, size, span", [
    (None, 10, None),
    ("bytes=0-", 10, (0, 9)),
    ("bytes=4-", 10, (4, 9)),
    ("bytes=4-6", 10, (4, 6)),
    ("bytes=4-99", 10, (4, 9)),
    ("BYTES=9-9", 10, (9, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=-30", 10, (0, 9)),
    (" bytes=2-3 ", 10, (2, 3)),
])
def test_ranges(header, size, span):
    assert parse_range(header, size) == span


@pytest.mark.parametrize("header", [
    "bytes=10-", "bytes=11-20", "bytes=5-2", "bytes=-0", "bytes=-", "bytes=", "items=0-1", "bytes=0-1,3-4",
    "bytes=a-b", "bytes=1-2-3", "bytes=" + "9" * 30 + "-", "bytes=0x10-", "bytes=１-", "bytes=-" + "9" * 40, "",
])
def test_bad_or_unsatisfiable_ranges_are_416_with_the_size(header):
    with pytest.raises(RemoteProtocolError) as caught:
        parse_range(header, 10)
    assert caught.value.code is ErrorCode.RANGE_NOT_SATISFIABLE and caught.value.status == 416
    assert caught.value.headers == {"Content-Range": "bytes */10"}


@pytest.mark.guarantee("G7")
async def test_a_download_nobody_reads_is_closed_after_the_stall_bound(tmp_path, monkeypatch):
    """A ship that stops reading holds a connection and a file: after DOWNLOAD_STALL_SECONDS without a chunk
    taken the hub closes it (the ship resumes with a Range), and other downloads go on meanwhile."""
    monkeypatch.setattr("hub.dataset_download.DOWNLOAD_STALL_SECONDS", 0.5)
    data = os.urandom(16 * 1024 * 1024)  # far more than the socket buffers on both sides hold
    path = tmp_path / "1.arrows"
    path.write_bytes(data)
    version = DatasetVersion("offers", 1, hashlib.sha256(data).hexdigest(), len(data), 1, 1, "parquet", None, 0.0)
    finished = asyncio.Event()

    async def serve(request):
        return await send_version(request, version, path, asyncio.to_thread)

    async def serve_and_tell(request):
        try:
            return await serve(request)
        finally:
            finished.set()

    app = web.Application()
    app.router.add_get("/v", serve)
    app.router.add_get("/stalled", serve_and_tell)
    async with TestServer(app) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /stalled HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with aiohttp.ClientSession() as session, session.get(  # another ship is served meanwhile
                server.make_url("/v"), headers={"Range": "bytes=-100"}) as answer:
            assert answer.status == 206 and await answer.read() == data[-100:]
        await asyncio.wait_for(finished.wait(), 10)
        received = 0
        while chunk := await asyncio.wait_for(reader.read(1024 * 1024), 10):  # EOF: the hub closed it
            received += len(chunk)
        assert received < len(data)
        writer.close()


@given(header=st.one_of(st.text(max_size=60), st.from_regex(r"bytes=\d{0,20}-\d{0,20}", fullmatch=True)),
       size=st.integers(min_value=1, max_value=2**31))
def test_any_range_header_is_a_span_inside_the_file_or_a_416(header, size):
    try:
        span = parse_range(header, size)
    except RemoteProtocolError as error:
        assert error.code is ErrorCode.RANGE_NOT_SATISFIABLE
        return
    first, last = span
    assert 0 <= first <= last < size


# -- through a real hub ------------------------------------------------------------------------------------


def publish(hub, name: str, path, *extra: str) -> int:
    return int(harbour("hub", "publish", name, str(path), "--data", str(hub.data), *extra).stdout.strip())


def price_list(path, rows: int, start: int = 0):
    table = pa.table({"sku": [f"sku-{i}" for i in range(start, start + rows)],
                      "price": [float(i) / 4 for i in range(start, start + rows)]})
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    return path


def cut_download(hub, token: str, path: str, keep: int) -> bytes:
    """Start a download, read ``keep`` bytes of the body, then drop the connection (a satellite link cut)."""
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    conn.request("GET", path, headers=bearer(token))
    response = conn.getresponse()
    assert response.status == 200
    part = response.read(keep)
    conn.sock.close()
    conn.close()
    return part


@pytest.mark.integration
@pytest.mark.guarantee("G3", "G4")
def test_publish_report_download_resume_prune(hub, tmp_path):
    ship1, ship2 = hub.add_site("ship-1"), hub.add_site("ship-2")
    assert report(hub, "ship-1", ship1).status == 204  # nothing offered, nothing managed: an older edge's answer

    assert publish(hub, "offers", price_list(tmp_path / "offers.parquet", 40_000)) == 1
    assert publish(hub, "menus", price_list(tmp_path / "menus.parquet", 10), "--ships", "ship-2") == 1

    answer = report(hub, "ship-1", ship1, {"datasets": {}, "settings": {"revision": 0}})
    assert answer.status == 200 and answer.headers["content-type"].startswith("application/json")
    desired = DesiredState.from_json(answer.body)
    assert [(o.name, o.version) for o in desired.datasets] == [("offers", 1)] and desired.settings is None
    offer = desired.datasets[0]
    assert {o.name for o in DesiredState.from_json(report(hub, "ship-2", ship2).body).datasets} == {"offers", "menus"}

    whole = hub.request("GET", offer.path, bearer(ship1))
    assert whole.status == 200 and len(whole.body) == offer.size == int(whole.headers["content-length"])
    assert hashlib.sha256(whole.body).hexdigest() == offer.sha256 and whole.headers["etag"] == offer.etag
    assert whole.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert whole.headers["harbour-dataset-version"] == "1" and whole.headers["accept-ranges"] == "bytes"
    assert pa_ipc.open_stream(whole.body).read_all().num_rows == 40_000

    # a cut after some bytes, then resumed with Range: the ship ends with exactly the published bytes
    held = cut_download(hub, ship1, offer.path, offer.size // 3)
    rest = hub.request("GET", offer.path, bearer(ship1, Range=f"bytes={len(held)}-"))
    assert rest.status == 206 and rest.headers["content-range"] == f"bytes {len(held)}-{offer.size - 1}/{offer.size}"
    assert rest.headers["etag"] == offer.etag and int(rest.headers["content-length"]) == offer.size - len(held)
    assert hashlib.sha256(held + rest.body).hexdigest() == offer.sha256

    middle = hub.request("GET", offer.path, bearer(ship1, Range="bytes=10-19"))
    assert middle.status == 206 and middle.body == whole.body[10:20]
    head = hub.request("HEAD", offer.path, bearer(ship1, Range="bytes=100-"))
    assert head.status == 206 and head.body == b"" and head.headers["content-length"] == str(offer.size - 100)
    past = hub.request("GET", offer.path, bearer(ship1, Range=f"bytes={offer.size}-"))
    assert past.status == 416 and past.headers["content-range"] == f"bytes */{offer.size}"
    assert json.loads(past.body)["code"] == "range-not-satisfiable"
    stale = hub.request("GET", offer.path, bearer(ship1, Range="bytes=5-", **{"If-Range": '"sha256:other"'}))
    assert stale.status == 200 and stale.body == whole.body  # another version's ETag: the whole of this one

    menus = DATASET_VERSION_PATH.format(name="menus", version=1)
    assert hub.request("GET", menus, bearer(ship1)).status == 404  # offered to ship-2 only
    assert hub.request("GET", menus, bearer(ship2)).status == 200

    for rows in (5, 6):
        publish(hub, "offers", price_list(tmp_path / f"offers{rows}.parquet", rows))
    gone = hub.request("GET", offer.path, bearer(ship1, Range="bytes=100-"))
    assert gone.status == 410 and json.loads(gone.body)["code"] == "dataset-gone"
    newest = DesiredState.from_json(report(hub, "ship-1", ship1).body).datasets[0]
    assert newest.version == 3 and hub.request("GET", newest.path, bearer(ship1)).status == 200


@pytest.mark.integration
@pytest.mark.guarantee("G6")
def test_hostile_download_and_report_requests_are_refused_cleanly(hub, tmp_path):
    ship1 = hub.add_site("ship-1")
    operator = hub.add_operator()
    publish(hub, "offers", price_list(tmp_path / "offers.parquet", 10))
    good = DATASET_VERSION_PATH.format(name="offers", version=1)
    assert hub.request("GET", good).status == 401
    assert hub.request("GET", good, bearer("hbs_" + "x" * 43)).status == 401
    assert hub.request("GET", good, bearer(operator)).status == 403

    for version in ("99999999999999999999999999999999", "9007199254740993", "0", "-1", "1e3", "01x", "%EF%BC%91"):
        answer = hub.request("GET", f"/v1/sync/datasets/offers/versions/{version}", bearer(ship1))
        assert answer.status == 404 and json.loads(answer.body)["error"], (version, answer)
    for name in ("..%2F..%2Fhub.db", "%2e%2e", "..", "Offers", "a" * 200, "offers%00", "%252e%252e"):
        answer = hub.request("GET", f"/v1/sync/datasets/{name}/versions/1", bearer(ship1))
        assert answer.status in (400, 404) and json.loads(answer.body)["error"], (name, answer)
    for header in ("bytes=a-", "bytes=5-1", "bytes=0-1,4-5", "lines=1-", "bytes=" + "9" * 300 + "-"):
        answer = hub.request("GET", good, bearer(ship1, Range=header))
        assert answer.status == 416 and json.loads(answer.body)["code"] == "range-not-satisfiable", header

    headers = bearer(ship1, **{"Content-Type": "application/json"})
    for downlink in ("x", [], {"datasets": {"Bad Name": 1}}, {"datasets": {"offers": 0}},
                     {"datasets": {"offers": True}}, {"settings": {"revision": -1}},
                     {"settings": {"pinned": {"token": "x"}}}, {"datasets": {f"d{i}": 1 for i in range(300)}}):
        answer = hub.request("PUT", REPORT.format("ship-1"), headers, report_body(downlink))
        assert answer.status == 400 and "downlink" in json.loads(answer.body)["error"], (downlink, answer.body)
    assert hub.request("GET", good, bearer(ship1)).status == 200  # still serving
    assert ship1 not in hub.log() and operator not in hub.log()
