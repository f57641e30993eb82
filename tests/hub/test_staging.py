"""Staging files: durable reset, chunk handles that cut back stale bytes, hashing, quarantine."""

from __future__ import annotations

import hashlib

from hub.staging import StagingArea
from sync_protocol.identifiers import SegmentId


def test_chunk_lifecycle(layout):
    staging = StagingArea(layout)
    segment = SegmentId.of("ship-a", "telemetry", 1)
    staging.reset(segment)
    assert staging.size(segment) == 0
    handle = staging.open_chunk(segment, 0)
    hasher = hashlib.sha1()
    staging.write(handle, b"hello ", hasher)
    staging.write(handle, b"world", hasher)
    staging.finish_chunk(handle, keep_to=11)
    assert hasher.digest() == hashlib.sha1(b"hello world").digest()
    # A dropped chunk leaves bytes behind only until the next chunk handle cuts them off.
    handle = staging.open_chunk(segment, 11)
    staging.write(handle, b"garbage", None)
    staging.finish_chunk(handle, keep_to=None)
    staging.open_chunk(segment, 11).close()
    assert staging.path(segment).read_bytes() == b"hello world"
    assert staging.sha256(segment) == hashlib.sha256(b"hello world").hexdigest()
    staging.truncate(segment, 5)
    assert staging.path(segment).read_bytes() == b"hello"
    target = staging.quarantine(segment)
    assert target.read_bytes() == b"hello" and not staging.exists(segment)
    assert staging.size(segment) == -1
    staging.delete(segment)  # already gone: fine


def test_contents_come_from_the_parquet_footer_as_the_edge_reads_it(layout):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sync_protocol.segment_contents import arrow_schema_fingerprint

    staging = StagingArea(layout)
    segment = SegmentId.of("ship-a", "telemetry", 1)
    rows = pa.table({"row_id": pa.array(range(1000), pa.int64()), "tags": pa.array([["a"]] * 1000)})
    pq.write_table(rows, staging.path(segment), row_group_size=300)
    contents = staging.contents(segment)
    assert contents.row_count == 1000 and not contents.unreadable
    assert contents.schema_fingerprint == arrow_schema_fingerprint(pq.read_schema(staging.path(segment)))
    assert contents.schema_text == "row_id:int64;tags:list<element: string>"  # as read back, not as written
    staging.path(segment).write_bytes(b"PAR1 but not really")
    assert "Parquet" in staging.contents(segment).unreadable
    staging.delete(segment)
    assert staging.contents(segment).unreadable  # gone: unreadable, never an exception
