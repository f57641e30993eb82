"""PATCH of any length (tus 1.0.0 puts no limit below Upload-Length), against a real `harbour hub run`:
tus clients we did not write, with their default options, send a whole segment of more than 32 MiB in one
PATCH -- tus-js-client (node; `tests/npm_setup.sh` installs it, as `make test` does) and tuspy -- and both
commit exactly once (G2). The hub streams such a body to its staging file in slices: its memory stays flat
whatever the body size (G7), and a cut or a SIGKILL mid-PATCH keeps what arrived (G3).

If node or tus-js-client is missing, the test FAILS: a client nobody could run is not a passing client."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sync_protocol.manifest import Manifest
from sync_protocol.tus import UPLOADS_PATH

from .conftest import REPO, Hub, Segment, make_segment

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
TUS_JS = REPO / "tests" / "tus_js"
BIG_ROWS = 4_500_000
"""Random float64 values do not compress: 4.5 M rows make a segment of about 36 MiB, above 32 MiB (twice the
hub's old per-PATCH limit) and small enough that the merge stays quick on two cores."""


def big_segment(site: str, table: str, seq: int, first_id: int, prev: Segment | None = None) -> Segment:
    values = np.random.default_rng(seq).random(BIG_ROWS)
    rows = pa.table({"row_id": pa.array(np.arange(first_id, first_id + BIG_ROWS), pa.int64()),
                     "value": pa.array(values, pa.float64())})
    segment = make_segment(site, table, seq, rows, prev=prev)
    assert segment.manifest.byte_size > 32 * MIB, segment.manifest.byte_size
    return segment


def fleet_table(hub: Hub, operator: str, site: str, table: str) -> dict:
    answer = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"})
    assert answer.status == 200, answer.body
    (entry,) = [s for s in answer.json()["sites"] if s["site"] == site]
    return entry["tables"][table]


def tus_js_upload(hub: Hub, token: str, segment: Segment, path: Path) -> dict:
    node = shutil.which("node")
    assert node, "node is not installed: apt-get install nodejs npm, then sh tests/npm_setup.sh"
    assert (TUS_JS / "node_modules" / "tus-js-client").is_dir(), "run sh tests/npm_setup.sh (make test does)"
    result = subprocess.run(
        [node, str(TUS_JS / "upload.mjs"), hub.url + UPLOADS_PATH, str(path), token,
         json.dumps(segment.manifest.fields())],
        capture_output=True, text=True, timeout=180, cwd=TUS_JS)
    lines = result.stdout.strip().splitlines()
    assert lines, f"tus-js-client printed nothing ({result.returncode}): {result.stderr[-2000:]}"
    return json.loads(lines[-1])


def tuspy_upload(hub: Hub, token: str, segment: Segment, path: Path, **options) -> str:
    from tusclient.client import TusClient

    client = TusClient(hub.url + UPLOADS_PATH, headers={"Authorization": f"Bearer {token}"})
    # Default chunk size: the whole file in one PATCH.
    uploader = client.uploader(str(path), metadata=segment.manifest.fields(), **options)
    uploader.upload()
    return uploader.url


@pytest.mark.guarantee("G2")
def test_tus_js_client_and_tuspy_with_default_options_commit_big_segments_exactly_once(hub, tmp_path):
    site, table = "ship-big", "bulk"
    token, operator = hub.add_site(site), hub.add_operator("ops-big")
    first = big_segment(site, table, 1, 0)
    second = big_segment(site, table, 2, BIG_ROWS, prev=first)
    paths = {}
    for segment in (first, second):
        paths[segment.key] = tmp_path / f"{segment.key}.parquet"
        paths[segment.key].write_bytes(segment.data)

    outcome = tus_js_upload(hub, token, first, paths[first.key])
    assert outcome["ok"], outcome
    assert outcome["url"].endswith(f"{UPLOADS_PATH}/{first.key}")
    assert hub.head(token, first.key).committed
    assert tuspy_upload(hub, token, second, paths[second.key]).endswith(f"{UPLOADS_PATH}/{second.key}")
    assert hub.head(token, second.key).committed
    hub.wait_merged(2 * BIG_ROWS, table, timeout=120)

    # Each segment again, by the other client: it ends done, and no row is added. A plain tus client PATCHes a
    # new upload from 0; for a committed segment that is the 409 tus prescribes (with Upload-Offset at the end and
    # Harbour-Commit: committed), after which a client that resumes finds it complete: tus-js-client does by
    # default, tuspy when allowed one retry (its default is none: it would report the 409).
    outcome = tus_js_upload(hub, token, second, paths[second.key])
    assert outcome["ok"], outcome
    assert tuspy_upload(hub, token, first, paths[first.key], retries=1, retry_delay=0).endswith(first.key)
    time.sleep(2)  # a merge round would have run by now
    status = fleet_table(hub, operator, site, table)
    assert (status["segments_committed"], status["rows_committed"], status["watermark"]) == (2, 2 * BIG_ROWS, 2)
    assert hub.query(f"SELECT count(*) AS n, count(DISTINCT row_id) AS d FROM {table}") == [
        {"n": 2 * BIG_ROWS, "d": 2 * BIG_ROWS}]


# -- what the hub does with a long body ------------------------------------------------------------------


def hand_made_upload(hub: Hub, token: str, site: str, length: int) -> Segment:
    """An upload of ``length`` bytes whose digest no body will match: it never completes, so no merge runs
    and the hub's memory and staging file show the PATCH alone."""
    stub = make_segment(site, "blob", 1, pa.table({"x": [1]}))
    manifest = Manifest.create(
        stub.manifest.segment, row_count=1, byte_size=length, sha256="e" * 64,
        schema_fingerprint=stub.manifest.schema_fingerprint, prev_sha256=stub.manifest.prev_sha256, priority=5,
        clock=lambda: 1_760_000_000.0)
    segment = Segment(manifest, b"")
    answer = hub.create(token, segment)
    assert answer.status == 201, answer.body
    return segment


def body(total: int, piece: int = MIB):
    block = os.urandom(piece)
    for start in range(0, total, piece):
        yield block[:min(piece, total - start)]


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


@pytest.mark.guarantee("G7")
def test_a_long_patch_streams_to_disk_with_flat_memory(hub):
    site = "ship-long"
    token = hub.add_site(site)
    length = 200 * MIB
    segment = hand_made_upload(hub, token, site, length + 1)
    before = peak_rss(hub.process.pid)
    answer = hub.request("PATCH", f"{UPLOADS_PATH}/{segment.key}", {
        "Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream", "Content-Length": str(length)}, body(length),
        timeout=120)
    assert answer.status == 204, answer.body
    assert answer.offset == length
    grown = peak_rss(hub.process.pid) - before
    assert grown < 48 * MIB, f"the hub's peak memory grew by {grown / MIB:.0f} MiB for a {length // MIB} MiB PATCH"
    assert hub.head(token, segment.key).offset == length
    assert hub.delete(token, segment.key).status == 204


def send_part_of_patch(hub: Hub, token: str, key: str, length: int, send: int, hold: threading.Event) -> None:
    """A PATCH declaring ``length`` body bytes that sends ``send`` of them, then waits for ``hold`` and
    closes the connection (a link that dropped mid-body)."""
    import socket

    head = (f"PATCH {UPLOADS_PATH}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\n"
            f"Authorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {length}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", hub.port), timeout=60) as sock:
        sock.sendall(head.encode())
        for piece in body(send):
            sock.sendall(piece)
        hold.wait(60)


@pytest.mark.guarantee("G3")
def test_a_cut_mid_patch_keeps_every_byte_that_arrived(hub):
    site = "ship-cut"
    token = hub.add_site(site)
    segment = hand_made_upload(hub, token, site, 64 * MIB)
    hold = threading.Event()
    hold.set()  # close as soon as the bytes are sent
    send_part_of_patch(hub, token, segment.key, 40 * MIB, 20 * MIB + 12345, hold)
    assert hub.head(token, segment.key).offset == 20 * MIB + 12345  # HEAD waits for the cut PATCH


@pytest.mark.guarantee("G3")
def test_a_hub_killed_mid_patch_keeps_the_slices_it_made_durable(hub):
    site = "ship-kill"
    token = hub.add_site(site)
    segment = hand_made_upload(hub, token, site, 64 * MIB)
    hold = threading.Event()
    sender = threading.Thread(target=send_part_of_patch, args=(hub, token, segment.key, 40 * MIB, 30 * MIB, hold))
    sender.start()
    staging = next((hub.data / "uploads").iterdir())
    deadline = time.monotonic() + 60
    while staging.stat().st_size < 30 * MIB and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staging.stat().st_size >= 30 * MIB, "the hub did not receive the body"
    time.sleep(0.5)  # the last slice's fsync and offset
    hub.kill()
    hold.set()
    sender.join(10)
    hub.start()
    offset = hub.head(token, segment.key).offset
    assert 24 * MIB <= offset <= 30 * MIB, offset  # every slice made durable before the kill is kept
