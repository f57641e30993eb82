"""A hub cluster of real processes: PostgreSQL (the shared ledger), three `harbour hub run` sharing ledger,
staging and warehouse, and HAProxy in front of them, round robin without affinity.

Each PATCH of an upload may land on another process; processes are SIGKILLed mid-upload and at the merger's crash
points; every acknowledged segment is merged exactly once, and a token revoked through any one process is refused
by all of them at once (G2, G3, G5). A dataset published once is served by every process.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sync_protocol.downlink import DesiredState

from .conftest import Hub, Segment, chain, free_port, harbour

pytestmark = pytest.mark.integration

PROCESSES = 3


class Cluster:
    def __init__(self, tmp_path: Path, ledger: str, balancer) -> None:
        staging, warehouse = tmp_path / "staging", tmp_path / "warehouse"
        self.places = ("--ledger", ledger, "--staging", str(staging), "--warehouse", str(warehouse))
        self.hubs = [Hub(tmp_path / f"hub{i}", free_port(), tmp_path / f"hub{i}.log", places=self.places)
                     for i in range(PROCESSES)]
        for hub in self.hubs:
            hub.start()
        self.balancer = balancer([f"127.0.0.1:{hub.port}" for hub in self.hubs])
        # The client's view: the balancer's address, and any process's --data for the commands.
        self.front = Hub(self.hubs[0].data, urlsplit(self.balancer.url).port, tmp_path / "front.log",
                         places=self.places)

    def logs(self) -> str:
        return "\n".join(f"--- hub{i}\n{hub.log()[-2500:]}" for i, hub in enumerate(self.hubs))

    def stop(self) -> None:
        for hub in self.hubs:
            hub.stop()


@pytest.fixture
def cluster(tmp_path, postgres_url, balancer):
    running = Cluster(tmp_path, postgres_url, balancer)
    yield running
    running.stop()


def upload_through(front: Hub, token: str, segment: Segment, chunk: int, deadline: float) -> None:
    """A persistent tus sender: retries what a balancer in front of dying processes may answer (a cut
    connection, 502/503, 423 while another process holds the upload), resyncs with HEAD, until committed."""
    offset = None
    while time.monotonic() < deadline:
        try:
            if offset is None:
                answer = front.create(token, segment)
                if answer.status not in (200, 201):
                    time.sleep(0.2)
                    continue
                if answer.committed:
                    return
                offset = answer.offset
            answer = front.patch(token, segment.key, offset, segment.data[offset:offset + chunk])
        except (OSError, http.client.HTTPException):
            offset = None  # the connection was cut: ask again where the upload stands
            time.sleep(0.2)
            continue
        if answer.status == 204:
            if answer.committed:
                return
            offset = answer.offset
        elif answer.status == 409 and answer.json().get("code") == "already-committed":
            return
        else:  # 409 offset mismatch, 404/410 (restart), 423, 5xx: start again from the hub's view
            offset = None
            time.sleep(0.1)
    raise AssertionError(f"{segment.key} not committed in time")


def merged_rows(cluster: Cluster, table: str) -> tuple[int, int]:
    (row,) = cluster.front.query(f"SELECT count(*) AS n, count(DISTINCT (_site, row_id)) AS d FROM {table}")
    return row["n"], row["d"]


def wait_merged(cluster: Cluster, table: str, expected: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    seen = (0, 0)
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError):  # no table yet
            seen = merged_rows(cluster, table)
        if seen[0] >= expected:
            break
        time.sleep(0.3)
    assert seen == (expected, expected), f"merged (rows, distinct) {seen}, expected {expected}\n{cluster.logs()}"


@pytest.mark.guarantee("G2", "G3")
def test_every_request_of_an_upload_may_reach_another_process(cluster):
    token = cluster.front.add_site("ship-a")
    segments = chain("ship-a", "telemetry", 6, rows_per=200)
    deadline = time.monotonic() + 60
    for segment in segments:
        # 3 KiB PATCHes: each segment's chunks are spread over all three processes by the balancer
        upload_through(cluster.front, token, segment, 3 * 1024, deadline)
    wait_merged(cluster, "telemetry", 6 * 200)
    served = {address: int(stats["hrsp_2xx"]) for address, stats in cluster.balancer.backend_stats().items()}
    assert len(served) == PROCESSES and all(count > 0 for count in served.values()), served
    status = harbour("hub", "status", "--data", str(cluster.hubs[1].data), *cluster.places, "--format", "json")
    assert '"watermark": 6' in status.stdout


@pytest.mark.guarantee("G5")
def test_a_token_revoked_through_one_process_is_refused_by_all_at_once(cluster):
    token = cluster.front.add_site("ship-r")
    for hub in cluster.hubs:
        assert hub.head(token, "ship-r.telemetry.1").status == 404  # known token, no such upload
    harbour("hub", "revoke-site", "ship-r", "--data", str(cluster.hubs[2].data), *cluster.places)
    for hub in cluster.hubs:
        assert hub.head(token, "ship-r.telemetry.1").status == 401


@pytest.mark.guarantee("G2", "G3")
@pytest.mark.parametrize("crash_at", ["after-chunk-fsync", "after-ledger-commit", "before-delta-commit",
                                      "after-delta-commit"])
def test_a_process_killed_mid_upload_or_mid_merge_is_taken_over(cluster, crash_at):
    """One process dies at ``crash_at`` (and at random SIGKILLs); the others carry on with its uploads and its
    tables, and every segment is merged exactly once."""
    token = cluster.front.add_site("ship-k")
    victim = cluster.hubs[0]
    victim.stop()
    victim.start(crash_at=crash_at)
    segments = chain("ship-k", "telemetry", 8, rows_per=100)
    deadline = time.monotonic() + 90
    for number, segment in enumerate(segments):
        upload_through(cluster.front, token, segment, 2 * 1024, deadline)
        if victim.process.poll() is not None:  # it reached its crash point: back, without one this time
            victim.start()
        if number == 3:
            cluster.hubs[1].kill()  # and a plain SIGKILL of another, mid-stream
            cluster.hubs[1].start()
    wait_merged(cluster, "telemetry", 8 * 100)


@pytest.mark.guarantee("G3")
def test_two_processes_never_write_one_upload_at_once(cluster):
    """A slow PATCH holds its upload on one process; the same chunk sent to another process meanwhile waits for
    it, then finds the offset moved (409): the staging file is written by one process at a time."""
    token = cluster.front.add_site("ship-w")
    (segment,) = chain("ship-w", "telemetry", 1, rows_per=500)
    first, second = cluster.hubs[0], cluster.hubs[1]
    assert first.create(token, segment).status == 201
    head = (f"PATCH /v1/sync/uploads/{segment.key} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            f"Content-Length: {len(segment.data)}\r\nConnection: close\r\n\r\n").encode()
    half = len(segment.data) // 2
    with socket.create_connection(("127.0.0.1", first.port), timeout=30) as slow:
        slow.sendall(head + segment.data[:half])
        time.sleep(0.5)  # the first process holds the upload now, its body half read
        answers: list = []
        racer = threading.Thread(target=lambda: answers.append(second.patch(token, segment.key, 0, segment.data)))
        started = time.monotonic()
        racer.start()
        time.sleep(1.5)
        slow.sendall(segment.data[half:])
        reply = slow.recv(65536).decode(errors="replace")
        racer.join(30)
    waited = time.monotonic() - started
    assert reply.startswith("HTTP/1.1 204"), reply
    assert "Harbour-Commit: committed" in reply or "harbour-commit: committed" in reply.lower()
    (late,) = answers
    assert late.status == 409 and waited >= 1.5, (late.status, late.body, waited)
    wait_merged(cluster, "telemetry", 500)


def test_a_fleet_page_login_on_one_process_holds_on_every_process(cluster):
    operator = cluster.front.add_operator("ops")
    answer = cluster.hubs[0].request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"},
                                     f"token={operator}".encode())
    assert answer.status == 303, answer.body
    cookie = answer.headers["set-cookie"].split(";")[0]
    for hub in cluster.hubs[1:]:
        page = hub.request("GET", "/", {"Cookie": cookie})
        assert page.status == 200 and b'name="token"' not in page.body, page.body[:300]
    harbour("hub", "revoke-operator", "ops", "--data", str(cluster.hubs[0].data), *cluster.places)
    assert b'name="token"' in cluster.hubs[2].request("GET", "/", {"Cookie": cookie}).body  # back to the login form


def test_a_dataset_published_once_is_served_by_every_process(cluster, tmp_path):
    """Published from any process's --data with the cluster's places, a version lives in the shared staging
    directory: each process offers it in the report answer and serves it, and a download cut on one process
    resumes on another."""
    token = cluster.front.add_site("ship-1")
    (tmp_path / "offers.csv").write_text("sku,price\n" + "".join(f"s{i},{i}.25\n" for i in range(5000)))
    published = harbour("hub", "publish", "offers", str(tmp_path / "offers.csv"), "--data",
                        str(tmp_path / "publisher"), *cluster.places)
    assert published.stdout == "1\n"
    assert (tmp_path / "staging" / "datasets" / "offers" / "1.arrows").is_file()
    auth = {"Authorization": f"Bearer {token}"}
    body = json.dumps({"backlog_bytes": 0, "pending_segments": 0, "link": {"state": "good"},
                       "reported_at": 1_760_000_000.0}).encode()
    offers = [DesiredState.from_json(hub.request("PUT", "/v1/sync/sites/ship-1/report",
                                                 {**auth, "Content-Type": "application/json"}, body).body).datasets
              for hub in cluster.hubs]
    assert offers[0] == offers[1] == offers[2] and len(offers[0]) == 1
    offer = offers[0][0]
    half = offer.size // 2
    first = cluster.hubs[0].request("GET", offer.path, {**auth, "Range": f"bytes=0-{half - 1}"})
    rest = cluster.hubs[2].request("GET", offer.path, {**auth, "Range": f"bytes={half}-"})
    assert (first.status, rest.status) == (206, 206) and first.headers["etag"] == rest.headers["etag"] == offer.etag
    assert hashlib.sha256(first.body + rest.body).hexdigest() == offer.sha256
