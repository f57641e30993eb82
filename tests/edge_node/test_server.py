"""The ingest API of a real ``harbour edge run`` process over a real socket: bad input gets a clear 4xx
JSON error, nothing is stored, and the node stays up (G6); the quota answers 507 (G7)."""

import asyncio
import http.client
import io
import json
import time
import urllib.request
from urllib.parse import urlsplit

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_node.codecs import ARROW_STREAM, CSV, JSON_LINES, PARQUET, encode_arrow_stream
from edge_node.query import run_query

pytestmark = pytest.mark.integration
GOOD = pa.table({"id": [1, 2], "name": ["a", "b"]})


@pytest.fixture
def edge(shared_edge):
    return shared_edge


def stored_rows(edge) -> int:
    try:
        return run_query(edge.data_dir, "SELECT COUNT(*) AS n FROM events").to_pylist()[0]["n"]
    except Exception:  # the table does not exist yet
        return 0


def assert_error(status: int, body: dict, expected: int, *words: str) -> None:
    assert status == expected, body
    assert isinstance(body.get("error"), str) and body["error"]
    for word in words:
        assert word in body["error"], body


def test_good_writes_in_every_format(edge, http):
    sink = io.BytesIO()
    pq.write_table(GOOD, sink)
    bodies = [(ARROW_STREAM, encode_arrow_stream(GOOD)), (PARQUET, sink.getvalue()),
              (JSON_LINES, b'{"id": 3, "name": "c"}\n'), (CSV, b"id,name\n4,d\n")]
    before = stored_rows(edge)
    for content_type, body in bodies:
        status, answer = http.post(edge.url, "events", body, content_type)
        assert (status, answer["table"]) == (200, "events")
    assert stored_rows(edge) == before + 6


BAD_BODIES = [
    (ARROW_STREAM, b"\xff\xff\xff\xff garbage", "Arrow"),
    (ARROW_STREAM, encode_arrow_stream(GOOD)[:-30], "Arrow"),
    (JSON_LINES, b'{"id": 1,', "JSON"),
    (JSON_LINES, b'"just a string"\n', "JSON"),
    (JSON_LINES, b"null", "JSON object"),  # once crashed the node inside pyarrow's JSON reader (SIGSEGV)
    (CSV, b"id,name\n1\n", "CSV"),
    (CSV, b"id,name\n1,a,b,c\n", "CSV"),
    (PARQUET, b"PAR1\x00\x00PAR1", "Parquet"),
    (ARROW_STREAM, b"", "empty"),
    (CSV, b"", "empty"),
    (JSON_LINES, b'{"id": "text now"}\n', "'id'"),  # schema conflict with the int64 column
    (JSON_LINES, b'{"_site": "forged"}\n', "column name"),
    (CSV, ("," .join(f"c{i}" for i in range(3000)) + "\n" + ",".join("1" * 3000) + "\n").encode(), "at most"),
    # 10,000 levels deep: pyarrow's reader takes minutes on it (time grows with the cube of the depth)
    (JSON_LINES, b'{"id": 1, "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n", "nested more than 32"),
]


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize(("content_type", "body", "says"), BAD_BODIES)
def test_bad_bodies_are_400_and_store_nothing(edge, http, content_type, body, says):
    http.post(edge.url, "events", encode_arrow_stream(GOOD))  # make sure the table exists with id int64
    before = stored_rows(edge)
    status, answer = http.post(edge.url, "events", body, content_type)
    assert_error(status, answer, 400, says)
    assert stored_rows(edge) == before
    assert http.get(edge.url, "/healthz")[0] == 200


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("name", ["..%2Fx", "%C3%A9v%C3%A9nements", "x" * 200, "Events", "9lives", "sqlite_master"])
def test_hostile_table_names_are_400(edge, http, name):
    status, answer = http.post(edge.url, name, encode_arrow_stream(GOOD))
    assert_error(status, answer, 400, "table name")
    assert not any(p.name != "events" for p in (edge.data_dir / "wal").iterdir())


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/octet-stream", ""])
def test_wrong_content_type_is_415(edge, http, content_type):
    status, answer = http.post(edge.url, "events", b'{"id": 1}\n', content_type)
    assert_error(status, answer, 415, "Content-Type")


def test_content_type_parameters_are_accepted(edge, http):
    status, _ = http.post(edge.url, "events", b"id,name\n5,e\n", "text/csv; charset=utf-8")
    assert status == 200


@pytest.mark.guarantee("G6")
def test_oversized_body_is_413(edge, http):
    body = encode_arrow_stream(pa.table({"id": list(range(200_000))}))
    assert len(body) > 1024 * 1024
    before = stored_rows(edge)
    status, answer = http.post(edge.url, "events", body)
    assert_error(status, answer, 413, "larger than 1.0 MiB")
    assert stored_rows(edge) == before


@pytest.mark.guarantee("G6")
def test_oversized_chunked_body_is_413(edge):
    url = urlsplit(edge.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    chunks = (b"x" * 65536 for _ in range(40))  # 2.5 MiB without a Content-Length
    try:
        connection.request("POST", "/v1/tables/events", body=chunks, headers={"Content-Type": CSV},
                           encode_chunked=True)
        response = connection.getresponse()
    except (BrokenPipeError, ConnectionResetError):
        # The server may refuse by closing before the client reads the 413; what matters then is that
        # nothing was stored and the node still serves.
        assert urllib.request.urlopen(f"{edge.url}/healthz", timeout=10).status == 200
        assert stored_rows(edge) == 0
        return
    assert response.status == 413
    assert "larger than" in json.loads(response.read())["error"]


@pytest.mark.guarantee("G6")
def test_unknown_paths_and_methods_get_json_errors(edge, http):
    status, answer = http.get(edge.url, "/v1/nothing")
    assert_error(status, answer, 404, "Not Found")
    assert answer["code"] == "no-such-path"  # status and code agree (it was bad-request)
    status, answer = http.get(edge.url, "/v1/tables/events")
    assert_error(status, answer, 405, "Method Not Allowed")
    assert answer["code"] == "method-not-allowed"


def test_status_and_healthz(edge, http):
    http.post(edge.url, "events", encode_arrow_stream(GOOD))
    status, report = http.get(edge.url, "/v1/status")
    assert status == 200 and report["site"] == "ship-1"
    (events,) = [t for t in report["tables"] if t["table"] == "events"]
    assert events["pending_rows"] >= 2 and events["oldest_pending_age_seconds"] is not None
    assert report["last_successful_sync"] is None and report["link"].startswith("no hub configured")
    assert http.get(edge.url, "/healthz") == (200, {"ok": True, "site": "ship-1"})


@pytest.mark.guarantee("G7")
def test_quota_gives_507_with_how_much_is_pending(tmp_path, start_edge, http):
    edge = start_edge(tmp_path / "edge", "--max-disk", "200KiB", "--hub", "http://hub.invalid:8700", "--token", "t")
    body = encode_arrow_stream(pa.table({"v": list(range(5000))}))
    statuses = [http.post(edge.url, "telemetry", body) for _ in range(10)]
    accepted = sum(1 for status, _ in statuses if status == 200)
    status, answer = statuses[-1]
    assert_error(status, answer, 507, "disk quota of 200.0 KiB reached", "waiting to be synced")
    assert "sync starting" in answer["error"] or "link " in answer["error"]  # what the link is doing
    assert answer["hint"] and answer["code"] == "disk-full"
    rows = run_query(edge.data_dir, "SELECT COUNT(*) AS n FROM telemetry").to_pylist()[0]["n"]
    assert rows == accepted * 5000


async def test_healthz_at_full_quota_answers_507_with_the_disk_full_code(tmp_path):
    """Status and code agree: ``disk-full`` means 507 everywhere (it was a 503 carrying a 507 code)."""
    from aiohttp.test_utils import TestClient, TestServer

    from edge_node.config import EdgeConfig
    from edge_node.node import EdgeNode
    from edge_node.quota import Usage
    from edge_node.server import make_app
    from sync_protocol import ErrorCode, SiteId

    node = EdgeNode(EdgeConfig(SiteId("ship-1"), tmp_path / "edge", max_disk_bytes=1000), lambda: 1000.0)
    node.recover()
    node.usage = lambda: Usage(2000, 2000, 1, 0)  # the disk filled up while the link was down
    async with TestClient(TestServer(make_app(node))) as client:
        answer = await client.get("/healthz")
        body = await answer.json()
    assert answer.status == ErrorCode.DISK_FULL.status == 507
    assert body["code"] == "disk-full" and "disk quota reached" in body["error"]


@pytest.mark.guarantee("G7")
async def test_bodies_that_stall_are_408_and_free_the_budget_for_other_writes(tmp_path):
    """Bodies announced as large and never sent once held the whole in-flight budget: every other write hung."""
    from aiohttp.test_utils import TestServer

    from edge_node.config import MAX_INFLIGHT_BODY_BYTES, EdgeConfig
    from edge_node.node import EdgeNode
    from edge_node.server import make_app
    from sync_protocol import SiteId

    node = EdgeNode(EdgeConfig(SiteId("ship-1"), tmp_path / "edge"), time.time)
    node.recover()
    async with TestServer(make_app(node, body_idle_timeout=0.5)) as server:
        announced = 64 * 1024 * 1024
        stalled = []
        for _ in range(MAX_INFLIGHT_BODY_BYTES // announced + 1):  # more than the whole budget
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(f"POST /v1/tables/events HTTP/1.1\r\nHost: x\r\nContent-Type: {CSV}\r\n"
                         f"Content-Length: {announced}\r\n\r\nid\n1\n".encode())
            await writer.drain()
            stalled.append((reader, writer))
        good = encode_arrow_stream(GOOD)
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.post(f"http://{server.host}:{server.port}/v1/tables/events", data=good,
                                    headers={"Content-Type": ARROW_STREAM}) as answer:
                assert answer.status == 200
            assert time.monotonic() - started < 10
        for reader, writer in stalled:
            head = await asyncio.wait_for(reader.read(4096), 10)
            assert head.startswith(b"HTTP/1.1 408") and b"body-timeout" in head, head[:300]
            writer.close()


def test_metrics_show_the_backlog_by_table_and_the_refused_writes(tmp_path, start_edge, http):
    from prometheus_client.parser import text_string_to_metric_families

    process = start_edge(tmp_path / "ship", "--priority", "alarms=0")
    http.post(process.url, "alarms", encode_arrow_stream(pa.table({"id": [1, 2]})))
    http.post(process.url, "alarms", b'{"id": "text"}\n', JSON_LINES)  # refused: id is an integer
    with urllib.request.urlopen(process.url + "/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    assert got[("harbour_edge_pending_rows", (("priority", "0"), ("table", "alarms")))] == 2
    assert got[("harbour_edge_writes_refused_total", (("code", "bad-request"),))] == 1
    assert got[("harbour_edge_writes_total", ())] == 1 and got[("harbour_edge_disk_used_bytes", ())] > 0
    assert ("harbour_edge_oldest_pending_seconds", (("table", "alarms"),)) in got
    assert not any(name.startswith("harbour_edge_link") for name, _ in got)  # no --hub: no link to describe


@pytest.mark.guarantee("G7")
def test_300_slow_clients_are_cut_at_the_header_deadline_while_writes_go_on(tmp_path, start_edge, http,
                                                                           slow_clients):
    """300 connections sending one header byte a second were held 90 s and starved healthy writers (issue 16)."""
    from hub.http_shell.slow_clients import HEADER_TIMEOUT_SECONDS

    process = start_edge(tmp_path / "ship")
    port = urlsplit(process.url).port
    writes = []

    def healthy_client() -> None:
        assert http.get(process.url, "/healthz")[0] == 200
        assert http.post(process.url, "events", encode_arrow_stream(GOOD), timeout=5)[0] == 200
        writes.append(GOOD.num_rows)

    result = slow_clients.attack(port, healthy_client, sockets=300, seconds=HEADER_TIMEOUT_SECONDS + 10)
    print(f"healthy: {len(result.probe_seconds)} probes, max {max(result.probe_seconds):.3f} s; slow closed after "
          f"{min(result.closed_after):.1f}-{max(result.closed_after):.1f} s")
    assert all(after is not None and after < HEADER_TIMEOUT_SECONDS + 3 for after in result.closed_after), \
        sorted(result.closed_after, key=lambda a: a or 1e9)[-5:]
    assert sum(answer.startswith(b"HTTP/1.1 408") and b"header-timeout" in answer for answer in result.answers) \
        >= 290, result.answers[:3]
    assert len(result.probe_seconds) >= 10 and max(result.probe_seconds) < 2.0, result.probe_seconds
    log = process.stderr()
    assert len(log) < 20_000 and "Traceback" not in log, log[-2000:]
    assert stored_rows(process) == sum(writes)


@pytest.mark.guarantee("G6")
def test_a_release_token_that_is_not_utf8_is_401_not_500(edge):
    """Found by fuzzing: a byte of a damaged Harbour-Lock-Token that is not UTF-8 made the release route a 500."""
    import socket

    port = urlsplit(edge.url).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST /v1/parked/release HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           b"Harbour-Lock-Token: \xc3\x28\xff\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 13\r\n\r\n{\"all\": true}")
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]

async def test_reference_datasets_are_listed_and_read_as_arrow_or_json_lines(tmp_path, seed_dataset):
    from aiohttp.test_utils import TestClient, TestServer

    from edge_node.config import EdgeConfig
    from edge_node.node import EdgeNode
    from edge_node.server import make_app
    from sync_protocol import SiteId

    prices = pa.table({"sku": [1, 2, 3], "price": [9.5, 3.0, None]})
    data = seed_dataset(tmp_path / "edge", "offers", 2, prices)
    node = EdgeNode(EdgeConfig(SiteId("ship-1"), tmp_path / "edge"), lambda: 1000.0)
    node.recover()
    async with TestClient(TestServer(make_app(node))) as client:
        listing = await (await client.get("/v1/datasets")).json()
        arrow = await client.get("/v1/datasets/offers")
        arrow_body = await arrow.read()
        lines = await client.get("/v1/datasets/offers", headers={"Accept": JSON_LINES})
        lines_body = await lines.read()
        missing = await client.get("/v1/datasets/menus")
        missing_body = await missing.json()
        bad = await client.get("/v1/datasets/Bad-Name")
    assert listing == {"datasets": [{"name": "offers", "version": 2, "sha256": listing["datasets"][0]["sha256"],
                                     "size": len(data), "rows": 3, "switched_at": 1000.0}]}
    assert (arrow.status, arrow.headers["Harbour-Dataset-Version"], arrow.headers["Content-Type"]) == (
        200, "2", ARROW_STREAM)
    assert arrow_body == data
    assert lines.headers["Content-Type"] == JSON_LINES and lines.headers["Harbour-Dataset-Version"] == "2"
    assert [json.loads(line) for line in lines_body.splitlines()] == prices.to_pylist()
    assert missing.status == 404 and "no reference dataset 'menus'" in missing_body["error"]
    assert "offers" in missing_body["error"] and "GET /v1/datasets" in missing_body["hint"]
    assert bad.status == 400
