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
