"""Shared helpers for the hub tests: segments built with pyarrow, a real `harbour hub run` subprocess,
and a tiny tus client on ``http.client`` that sends exactly what a test tells it to (including garbage)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import Manifest
from sync_protocol.segment_contents import arrow_schema_fingerprint
from sync_protocol.tus import UPLOADS_PATH

HARBOUR = [sys.executable, "-m", "harbour_cli"]
REPO = Path(__file__).resolve().parents[2]
FIXED_CLOCK = 1_760_000_000.0


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


@dataclass(frozen=True)
class Segment:
    manifest: Manifest
    data: bytes

    @property
    def key(self) -> str:
        return self.manifest.segment.upload_key


def make_segment(site: str, table: str, seq: int, rows: pa.Table, prev: Segment | None = None,
                 prev_sha256: str | None = None) -> Segment:
    data = parquet_bytes(rows)
    if prev_sha256 is None:
        prev_sha256 = GENESIS_DIGEST if seq == 1 else (prev.manifest.sha256 if prev else "1" * 64)
    fingerprint = arrow_schema_fingerprint(pq.read_schema(pa.BufferReader(data)))  # as the edge's sealer does
    manifest = Manifest.create(
        SegmentId.of(site, table, seq), row_count=rows.num_rows, byte_size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), schema_fingerprint=fingerprint,
        prev_sha256=prev_sha256, priority=5, clock=lambda: FIXED_CLOCK,
    )
    return Segment(manifest, data)


def rows_table(first_id: int, n: int, **extra) -> pa.Table:
    columns = {"row_id": pa.array(range(first_id, first_id + n), pa.int64()),
               "value": pa.array([float(i) for i in range(n)], pa.float64())}
    columns.update(extra)
    return pa.table(columns)


def chain(site: str, table: str, count: int, rows_per: int = 10, start_id: int = 0) -> list[Segment]:
    segments: list[Segment] = []
    for seq in range(1, count + 1):
        first = start_id + (seq - 1) * rows_per
        segments.append(make_segment(site, table, seq, rows_table(first, rows_per),
                                     prev=segments[-1] if segments else None))
    return segments


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def harbour(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([*HARBOUR, *args], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"harbour {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def offset(self) -> int:
        return int(self.headers["upload-offset"])

    @property
    def committed(self) -> bool:
        return self.headers.get("harbour-commit") == "committed"


@dataclass
class Hub:
    data: Path
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)
    places: tuple[str, ...] = ()  # --ledger/--staging/--warehouse of a cluster, for `run` and every command

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, crash_at: str | None = None, timeout: float = 30.0) -> Hub:
        env = {**os.environ, **self.env}
        env.pop("HARBOUR_HUB_CRASH_AT", None)
        if crash_at:
            env["HARBOUR_HUB_CRASH_AT"] = crash_at
        log = open(self.log_path, "ab")  # noqa: SIM115 -- handed to the child
        self.process = subprocess.Popen(
            [*HARBOUR, "hub", "run", "--data", str(self.data), "--listen", f"127.0.0.1:{self.port}", *self.places],
            stdout=log, stderr=log, cwd=REPO, env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"hub exited with {self.process.returncode}: {self.log()}")
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"hub did not become healthy: {self.log()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def add_site(self, site: str) -> str:
        return harbour("hub", "add-site", site, "--data", str(self.data), *self.places).stdout.strip()

    def add_operator(self, name: str = "ops") -> str:
        return harbour("hub", "add-operator", name, "--data", str(self.data), *self.places).stdout.strip()

    # -- raw HTTP ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
                timeout: float = 30.0) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            conn.close()

    # -- tus -----------------------------------------------------------------------------------------

    def create(self, token: str, segment: Segment, **overrides) -> Answer:
        headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0",
                   "Upload-Length": str(segment.manifest.byte_size),
                   "Upload-Metadata": segment.manifest.to_upload_metadata()}
        headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
        headers = {k: v for k, v in headers.items() if v is not None}
        return self.request("POST", UPLOADS_PATH, headers)

    def head(self, token: str, key: str) -> Answer:
        return self.request("HEAD", f"{UPLOADS_PATH}/{key}",
                            {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"})

    def patch(self, token: str, key: str, offset: int, chunk: bytes, checksum: bool = True,
              **overrides) -> Answer:
        headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0",
                   "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
        if checksum:
            headers["Upload-Checksum"] = "sha1 " + base64.b64encode(hashlib.sha1(chunk).digest()).decode()
        headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
        headers = {k: v for k, v in headers.items() if v is not None}
        return self.request("PATCH", f"{UPLOADS_PATH}/{key}", headers, chunk)

    def delete(self, token: str, key: str) -> Answer:
        return self.request("DELETE", f"{UPLOADS_PATH}/{key}",
                            {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"})

    def upload(self, token: str, segment: Segment, chunk_size: int = 64 * 1024) -> Answer:
        answer = self.create(token, segment)
        assert answer.status == 201, answer
        offset = answer.offset
        while not answer.committed:
            answer = self.patch(token, segment.key, offset, segment.data[offset:offset + chunk_size])
            assert answer.status == 204, (answer.status, answer.body)
            offset = answer.offset
        return answer

    def cut_patch(self, token: str, key: str, offset: int, chunk: bytes, send: int,
                  checksum: bool = False) -> None:
        """Start a PATCH of ``chunk`` and drop the connection after ``send`` body bytes."""
        lines = [f"PATCH {UPLOADS_PATH}/{key} HTTP/1.1", f"Host: 127.0.0.1:{self.port}",
                 f"Authorization: Bearer {token}", "Tus-Resumable: 1.0.0",
                 "Content-Type: application/offset+octet-stream", f"Upload-Offset: {offset}",
                 f"Content-Length: {len(chunk)}"]
        if checksum:
            lines.append("Upload-Checksum: sha1 " + base64.b64encode(hashlib.sha1(chunk).digest()).decode())
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + chunk[:send])
            time.sleep(0.2)

    def query(self, sql: str) -> list[dict]:
        result = harbour("hub", "query", "--data", str(self.data), *self.places, "--format", "json", sql)
        return json.loads(result.stdout)

    def wait_merged(self, expected_rows: int, table: str, timeout: float = 60.0, site: str | None = None) -> list[dict]:
        """Wait until ``table`` holds ``expected_rows`` rows (of ``site`` only, on a hub shared by tests)."""
        deadline = time.monotonic() + timeout
        rows: list[dict] = []
        where = f" WHERE _site = '{site}'" if site else ""
        while time.monotonic() < deadline:
            try:
                rows = self.query(f"SELECT count(*) AS n FROM {table}{where}")
                if rows[0]["n"] >= expected_rows:
                    return rows
            except AssertionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{table} did not reach {expected_rows} rows (last {rows}); log: {self.log()[-3000:]}")


@pytest.fixture
def hub_factory(tmp_path):
    hubs: list[Hub] = []

    def make(data: Path | None = None) -> Hub:
        hub = Hub(data or tmp_path / "hub", free_port(), tmp_path / f"hub-{len(hubs)}.log")
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.stop()


@pytest.fixture
def hub(hub_factory) -> Hub:
    return hub_factory().start()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = FIXED_CLOCK) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def layout(tmp_path):
    from hub.layout import HubLayout

    return HubLayout.create(tmp_path / "data")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, layout):
    """The hub's ledger database, once embedded (SQLite in --data) and once on a real PostgreSQL server (a fresh
    database per test): every test of the ledger, registry, reports and history runs against both."""
    from hub.layout import open_database

    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    db = open_database(url, layout.database)
    yield db
    db.close()


@pytest.fixture
def sqlite_database(layout):
    """For the tests of what only the embedded SQLite file has (its pragmas, its bytes on disk, old files)."""
    from hub.db import Database

    db = Database(layout.database)
    yield db
    db.close()


@pytest.fixture
def ledger(database, clock):
    from hub.ledger import SqliteLedger

    return SqliteLedger(database, clock)


def assert_exactly_once(hub: Hub, table: str, expected_rows: int) -> None:
    """Every (site, row_id) once, ``expected_rows`` in all, and the ledger's rows-merged agrees."""
    hub.wait_merged(expected_rows, table)
    time.sleep(0.5)  # a duplicate merge would land right after the first one
    got = hub.query(f"SELECT count(*) AS n, count(DISTINCT _site || ':' || row_id) AS d FROM {table}")[0]
    assert got["n"] == expected_rows == got["d"], got
    report = json.loads(harbour("hub", "status", "--data", str(hub.data), "--format", "json").stdout)
    merged = sum(s["tables"].get(table, {}).get("rows_merged", 0) for s in report["sites"])
    assert merged == got["n"], "the ledger disagrees with the table"


REPORT = "/v1/sync/sites/{}/report"


def bearer(token: str, **headers) -> dict:
    return {"Authorization": f"Bearer {token}", **headers}


def report_body(downlink: dict | None = None) -> bytes:
    doc = {"backlog_bytes": 0, "pending_segments": 0, "link": {"state": "good"}, "reported_at": 1_760_000_000.0}
    if downlink is not None:
        doc["downlink"] = downlink
    return json.dumps(doc).encode()


def report(hub, site: str, token: str, downlink: dict | None = None):
    return hub.request("PUT", REPORT.format(site), bearer(token, **{"Content-Type": "application/json"}),
                       report_body(downlink))
