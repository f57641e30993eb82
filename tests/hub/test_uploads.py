"""The upload service with real staging files and ledger, a fake clock and in-memory request bodies."""

from __future__ import annotations

import asyncio

import pytest

from hub.staging import StagingArea
from hub.uploads import UploadService
from sync_protocol.errors import RemoteProtocolError
from sync_protocol.limits import UPLOAD_EXPIRY_SECONDS
from sync_protocol.tus import checksum_of

from .conftest import chain


class Body:
    """A request body that delivers ``data`` in pieces, then ends (or stalls, or breaks)."""

    def __init__(self, data: bytes, piece: int = 1000, stall: bool = False, fail: bool = False) -> None:
        self.data, self.piece, self.stall, self.fail = data, piece, stall, fail

    async def read(self, n: int) -> bytes:
        if not self.data:
            if self.fail:
                raise ConnectionResetError("Connection lost")
            if self.stall:
                await asyncio.sleep(3600)
            return b""
        size = min(n, self.piece)
        out, self.data = self.data[:size], self.data[size:]
        return out


@pytest.fixture
def service(ledger, layout, clock):
    def make(**kwargs) -> UploadService:
        return UploadService(ledger, StagingArea(layout), clock, asyncio.to_thread, **kwargs)

    return make


async def test_chunks_commit_and_call_back(service, ledger):
    committed = []
    uploads = service(on_commit=committed.append)
    segment = chain("ship-a", "telemetry", 1)[0]
    m = segment.manifest
    assert (await uploads.create(m, m.byte_size)).status == 201
    half = m.byte_size // 2
    answer = await uploads.patch(m.segment, 0, half, checksum_of(segment.data[:half]), Body(segment.data[:half]))
    assert answer.headers["Upload-Offset"] == str(half)
    assert ledger.staged(m.segment).offset == half
    answer = await uploads.patch(m.segment, half, m.byte_size - half, None, Body(segment.data[half:]))
    assert answer.headers["Harbour-Commit"] == "committed"
    assert committed == [m.segment] and ledger.committed(m.segment) == m
    assert uploads.stats.segments_committed == 1
    assert uploads._locks == {} and uploads._receivers == {}  # nothing kept for finished uploads


async def test_cut_and_stalled_bodies(service, ledger):
    uploads = service(body_idle_timeout=0.2)
    segment = chain("ship-a", "telemetry", 1)[0]
    m = segment.manifest
    await uploads.create(m, m.byte_size)
    # Cut with no checksum: what arrived is kept.
    assert await uploads.patch(m.segment, 0, 600, None, Body(segment.data[:250], fail=True)) is not None
    assert ledger.staged(m.segment).offset == 250
    # Stalled with a checksum, after the idle timeout: what arrived is kept too, as an unverified tail
    # (the checksum covers the whole chunk, so it cannot vouch for part of it).
    await uploads.patch(m.segment, 250, 400, checksum_of(segment.data[250:650]),
                        Body(segment.data[250:400], stall=True))
    assert ledger.staged(m.segment).offset == 400
    head = await uploads.probe(m.segment)
    assert head.headers["Harbour-Verified-Offset"] == "0"
    # Nothing arrived at all: nothing to keep.
    assert await uploads.patch(m.segment, 400, 100, None, Body(b"", fail=True)) is None
    assert ledger.staged(m.segment).offset == 400 and uploads.stats.chunks_dropped == 1


async def test_expiry_drops_idle_uploads(service, ledger, clock, layout):
    uploads = service()
    segment = chain("ship-a", "telemetry", 1)[0]
    await uploads.create(segment.manifest, segment.manifest.byte_size)
    assert await uploads.expire() == 0
    clock.advance(UPLOAD_EXPIRY_SECONDS + 1)
    assert await uploads.expire() == 1
    assert ledger.staged(segment.manifest.segment) is None
    assert not StagingArea(layout).exists(segment.manifest.segment)
    with pytest.raises(RemoteProtocolError) as gone:
        await uploads.probe(segment.manifest.segment)
    assert gone.value.status == 404


async def test_recover_cuts_back_to_the_durable_offset_and_commits_complete_uploads(service, ledger, layout):
    staging = StagingArea(layout)
    partial, complete = chain("ship-a", "telemetry", 2)
    ledger.save_staged(partial.manifest, 100, 2e9)
    staging.path(partial.manifest.segment).write_bytes(partial.data[:300])  # 200 bytes never counted
    ledger.save_staged(complete.manifest, complete.manifest.byte_size, 2e9)
    staging.path(complete.manifest.segment).write_bytes(complete.data)
    uploads = service()
    assert await uploads.recover() == 2
    assert staging.size(partial.manifest.segment) == 100
    assert (await uploads.probe(partial.manifest.segment)).headers["Upload-Offset"] == "100"
    assert ledger.committed(complete.manifest.segment) == complete.manifest


async def test_recover_restarts_an_upload_whose_file_lost_bytes(service, ledger, layout):
    segment = chain("ship-a", "telemetry", 1)[0]
    ledger.save_staged(segment.manifest, 500, 2e9)
    StagingArea(layout).path(segment.manifest.segment).write_bytes(segment.data[:10])
    await service().recover()
    assert ledger.staged(segment.manifest.segment) is None


async def test_concurrent_requests_for_one_upload_are_serialised(service, ledger):
    uploads = service()
    segment = chain("ship-a", "telemetry", 1)[0]
    m = segment.manifest
    await uploads.create(m, m.byte_size)
    results = await asyncio.gather(
        uploads.patch(m.segment, 0, 100, None, Body(segment.data[:100], piece=10)),
        uploads.patch(m.segment, 0, 100, None, Body(segment.data[:100], piece=10)),
        return_exceptions=True,
    )
    statuses = sorted(r.status if isinstance(r, RemoteProtocolError) else r.status for r in results)
    assert statuses == [204, 409]  # the second sees the first's offset
    assert ledger.staged(m.segment).offset == 100


# -- a PATCH of any length (issue 12, item 3) -------------------------------------------------------------


def long_upload(size: int):
    import hashlib
    import os

    from sync_protocol.manifest import Manifest

    data = os.urandom(size)
    stub = chain("ship-a", "blob", 1)[0].manifest
    manifest = Manifest.create(stub.segment, row_count=1, byte_size=size, sha256=hashlib.sha256(data).hexdigest(),
                               schema_fingerprint=stub.schema_fingerprint, prev_sha256=stub.prev_sha256, priority=5,
                               clock=lambda: 0.0)
    return manifest, data


class WatchedBody(Body):
    """A body that notes the durable offset in the ledger each time the hub asks for more."""

    def __init__(self, data: bytes, ledger, segment, **kwargs) -> None:
        super().__init__(data, piece=256 * 1024, **kwargs)
        self.ledger, self.segment, self.seen = ledger, segment, []

    async def read(self, n: int) -> bytes:
        self.seen.append(self.ledger.staged(self.segment).offset)
        return await super().read(n)


async def test_a_long_chunk_is_made_durable_slice_by_slice(service, ledger, layout):
    from sync_protocol.limits import DURABLE_SLICE_BYTES

    uploads = service()
    manifest, data = long_upload(2 * DURABLE_SLICE_BYTES + 12345 + 1)
    await uploads.create(manifest, manifest.byte_size)
    length = len(data) - 1
    body = WatchedBody(data[:length], ledger, manifest.segment)
    answer = await uploads.patch(manifest.segment, 0, length, checksum_of(data[:length]), body)
    assert answer.headers["Upload-Offset"] == str(length) and answer.headers["Harbour-Verified-Offset"] == str(length)
    durable = sorted(set(body.seen))
    assert durable[0] == 0 and len(durable) == 3  # two slices made durable while the body still arrived
    assert DURABLE_SLICE_BYTES <= durable[1] < durable[2] < length
    assert layout.segment_file(manifest.segment).stat().st_size == length


async def test_a_cut_long_chunk_keeps_its_slices_and_the_rest(service, ledger):
    from sync_protocol.limits import DURABLE_SLICE_BYTES

    uploads = service()
    manifest, data = long_upload(3 * DURABLE_SLICE_BYTES)
    await uploads.create(manifest, manifest.byte_size)
    arrived = DURABLE_SLICE_BYTES + 54321
    await uploads.patch(manifest.segment, 0, len(data) - 1, checksum_of(data[:-1]), Body(data[:arrived], fail=True))
    assert ledger.staged(manifest.segment).offset == arrived
    assert (await uploads.probe(manifest.segment)).headers["Harbour-Verified-Offset"] == "0"  # no checksum covers it


async def test_a_damaged_long_chunk_takes_its_slices_back(service, ledger, layout):
    from sync_protocol.limits import DURABLE_SLICE_BYTES

    uploads = service()
    manifest, data = long_upload(2 * DURABLE_SLICE_BYTES + 1)
    await uploads.create(manifest, manifest.byte_size)
    damaged = bytearray(data[:-1])
    damaged[-1] ^= 0xFF
    body = WatchedBody(bytes(damaged), ledger, manifest.segment)
    with pytest.raises(RemoteProtocolError) as caught:
        await uploads.patch(manifest.segment, 0, len(damaged), checksum_of(data[:-1]), body)
    assert caught.value.status == 460
    assert max(body.seen) >= DURABLE_SLICE_BYTES  # a slice was counted ...
    assert ledger.staged(manifest.segment).offset == 0  # ... and taken back with the chunk
    assert layout.segment_file(manifest.segment).stat().st_size == 0
