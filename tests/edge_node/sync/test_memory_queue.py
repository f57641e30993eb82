"""The agent's view of the ledger, checked on both implementations: the real SQLite ``SegmentLedger``
and the in-memory ``MemorySegmentQueue`` the agent's unit tests and the benchmarks use (STYLE 6)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from edge_node.ledger import SegmentLedger
from edge_node.sync.memory_queue import MemorySegmentQueue
from sync_protocol import Manifest, SegmentId, SiteId
from sync_protocol.errors import LocalProtocolError
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import sha256_hex

SCHEMA = pa.schema([("v", pa.int64())])


def manifest(table: str, seq: int, priority: int) -> Manifest:
    prev = GENESIS_DIGEST if seq == 1 else sha256_hex(f"{table}{seq - 1}".encode())
    return Manifest(SegmentId.of("ship-1", table, seq), 1, 10, sha256_hex(f"{table}{seq}".encode()),
                    sha256_hex(b"s"), prev, priority, 0)


@pytest.fixture(params=["sqlite", "memory"])
def queue(request, tmp_path):
    if request.param == "memory":
        memory = MemorySegmentQueue()
        yield memory, lambda m: memory.add(m, f"{m.segment.table}-{m.segment.seq}.parquet")
        return
    ledger = SegmentLedger(tmp_path, SiteId("ship-1"), clock=lambda: 1000.0)
    ledger.claim_site()
    yield ledger, lambda m: ledger.record_sealed(m, f"{m.segment.table}-{m.segment.seq}.parquet", m.segment.seq,
                                                 SCHEMA)
    ledger.close()


def test_pending_is_most_urgent_class_first_then_seq(queue):
    q, add = queue
    for m in (manifest("sales", 1, 5), manifest("sales", 2, 5), manifest("alarms", 1, 0), manifest("telemetry", 1, 2)):
        add(m)
    order = [(str(s.manifest.segment.table), s.manifest.segment.seq) for s in q.pending_segments(10)]
    assert order == [("alarms", 1), ("telemetry", 1), ("sales", 1), ("sales", 2)]
    assert len(q.pending_segments(2)) == 2


def test_acked_and_parked_segments_leave_the_queue_and_parked_ones_keep_their_reason(queue):
    q, add = queue
    first, second = manifest("sales", 1, 5), manifest("sales", 2, 5)
    add(first)
    add(second)
    q.mark_uploading(first.segment)
    q.mark_acked(first.segment)
    q.mark_uploading(second.segment)
    q.mark_parked(second.segment, "HTTP 409 segment-conflict")
    assert q.pending_segments(10) == []
    assert q.parked() == [(second.segment, "HTTP 409 segment-conflict")]
    q.release(second.segment)
    assert [s.manifest.segment for s in q.pending_segments(10)] == [second.segment] and q.parked() == []


def test_an_uploading_segment_stays_pending_so_a_restarted_agent_resumes_it(queue):
    q, add = queue
    m = manifest("telemetry", 1, 2)
    add(m)
    q.mark_uploading(m.segment)
    (pending,) = q.pending_segments(10)
    assert pending.state.value == "uploading"


def test_a_segment_cannot_be_acked_before_it_was_uploading_or_acked_twice(queue):
    q, add = queue
    m = manifest("telemetry", 1, 2)
    add(m)
    q.mark_uploading(m.segment)
    q.mark_acked(m.segment)
    with pytest.raises(LocalProtocolError):
        q.mark_acked(m.segment)
