"""A manifest must describe its file: the hub reads the Parquet footer of a complete upload and checks the row
count and the schema fingerprint BEFORE it answers `committed` (G6), against a real `harbour hub run`. A lying
manifest gets `422 manifest-mismatch` naming both values, is never committed, and the same manifest again is
refused at creation without its bytes; Harbour's own sender parks it after three such answers, having sent
the segment once."""

from __future__ import annotations

import base64
import hashlib
import time

import numpy as np
import pyarrow as pa
import pytest
from multidict import CIMultiDict

from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import Manifest, schema_fingerprint
from sync_protocol.sender import CreateUpload, ProbeOffset, SendChunk, TxState, UploadSender
from sync_protocol.tus import UPLOADS_PATH

from .conftest import FIXED_CLOCK, Hub, Segment, make_segment, rows_table

pytestmark = pytest.mark.integration


def lying(segment: Segment, **fields) -> Segment:
    m = segment.manifest
    values = {"row_count": m.row_count, "schema_fingerprint": m.schema_fingerprint, **fields}
    manifest = Manifest.create(m.segment, byte_size=m.byte_size, sha256=m.sha256, prev_sha256=m.prev_sha256,
                               priority=m.priority, clock=lambda: FIXED_CLOCK, **values)
    return Segment(manifest, segment.data)


def send_whole(hub: Hub, token: str, segment: Segment):
    assert hub.create(token, segment).status == 201
    return hub.patch(token, segment.key, 0, segment.data)


def committed_segments(hub: Hub, operator: str, site: str) -> dict:
    answer = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"})
    (entry,) = [s for s in answer.json()["sites"] if s["site"] == site]
    return {name: t["segments_committed"] for name, t in entry["tables"].items()}


@pytest.mark.guarantee("G4", "G6")
@pytest.mark.parametrize("lie, words", [
    ({"row_count": 11}, ["11 rows", "10"]),
    ({"schema_fingerprint": schema_fingerprint("row_id:int64")}, ["schema fingerprint", "row_id:int64;value:double"]),
])
def test_a_manifest_that_lies_about_its_file_is_refused_before_the_commit(hub, lie, words):
    token, operator = hub.add_site("ship-liar"), hub.add_operator("ops")
    honest = make_segment("ship-liar", "telemetry", 1, rows_table(0, 10))
    answer = send_whole(hub, token, lying(honest, **lie))
    assert answer.status == 422, answer.body
    error = answer.json()
    assert error["code"] == "manifest-mismatch" and "committed" not in answer.headers.get("harbour-commit", "")
    assert all(word in error["error"] for word in words), error
    assert hub.head(token, honest.key).status == 404  # the upload is gone, its staging file too
    assert not list((hub.data / "uploads").iterdir())
    # The same lie again is refused at creation, before any byte is sent.
    again = hub.create(token, lying(honest, **lie))
    assert again.status == 422 and again.json()["code"] == "manifest-mismatch"
    assert committed_segments(hub, operator, "ship-liar") == {}
    # The truth is taken: the edge is the authority on its uncommitted segment.
    assert hub.upload(token, honest).committed
    hub.wait_merged(10, "telemetry")
    assert committed_segments(hub, operator, "ship-liar") == {"telemetry": 1}


@pytest.mark.guarantee("G6")
def test_a_file_that_is_not_parquet_is_refused_before_the_commit(hub):
    token = hub.add_site("ship-junk")
    data = b"not a parquet file at all " * 40
    manifest = Manifest.create(
        SegmentId.of("ship-junk", "telemetry", 1), row_count=1,
        byte_size=len(data), sha256=hashlib.sha256(data).hexdigest(), schema_fingerprint="a" * 64,
        prev_sha256=GENESIS_DIGEST, priority=5, clock=lambda: FIXED_CLOCK)
    answer = send_whole(hub, token, Segment(manifest, data))
    assert answer.status == 422 and answer.json()["code"] == "manifest-mismatch"
    assert "Parquet" in answer.json()["error"]
    assert hub.head(token, manifest.segment.upload_key).status == 404


def drive(hub: Hub, token: str, sender: UploadSender, segment: Segment, limit: int = 30) -> tuple[int, int]:
    """Harbour's sender against the real hub over plain HTTP; returns (requests made, body bytes sent)."""
    requests = sent = 0
    while (request := sender.next_request()) is not None and requests < limit:
        requests += 1
        auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
        if isinstance(request, CreateUpload):
            answer = hub.request("POST", UPLOADS_PATH, {**auth, "Upload-Length": str(request.length),
                                                        "Upload-Metadata": request.metadata})
        elif isinstance(request, ProbeOffset):
            answer = hub.request("HEAD", f"{UPLOADS_PATH}/{segment.key}", auth)
        else:
            assert isinstance(request, SendChunk)
            chunk = segment.data[request.offset:request.offset + request.length]
            headers = {**auth, "Content-Type": "application/offset+octet-stream",
                       "Upload-Offset": str(request.offset),
                       "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(chunk).digest()).decode()}
            if request.tail_from is not None:
                tail = hashlib.sha256(segment.data[request.tail_from:request.offset]).hexdigest()
                headers["Harbour-Tail-Sha256"] = f"{request.tail_from} {tail}"
            answer = hub.request("PATCH", f"{UPLOADS_PATH}/{segment.key}", headers, chunk)
            sent += len(chunk)
        sender.on_answer(answer.status, CIMultiDict(answer.headers), answer.body, 0.01)
        time.sleep(0.01)
    return requests, sent


def test_harbours_sender_parks_a_refused_manifest_after_sending_it_once(hub):
    token = hub.add_site("ship-sender")
    values = np.random.default_rng(7).random(80_000)
    rows = rows_table(0, 80_000, value=pa.array(values, pa.float64()))
    segment = lying(make_segment("ship-sender", "telemetry", 1, rows), row_count=80_001)
    sender = UploadSender(segment.manifest)
    assert segment.manifest.byte_size > 2 * sender.sizer.size  # several chunks, each one accepted
    requests, sent = drive(hub, token, sender, segment)
    assert sender.state is TxState.PARKED, (requests, sender.last_error)
    assert "manifest-mismatch" in sender.park_reason and "80001 rows" in sender.park_reason
    assert sent == segment.manifest.byte_size and requests < 12
