"""The segment ledger: sealing commits, legal state moves only, sync-agent order, counters (G1, G8)."""

import time

import pyarrow as pa
import pytest

from edge_node.ledger import SegmentLedger
from sync_protocol import LocalProtocolError, Manifest, SegmentId, SiteId, sha256_hex
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.segment_states import SegmentState

SITE = SiteId("ship-1")
SCHEMA = pa.schema([("v", pa.int64())])


class Clock:
    now = 5_000.0

    def __call__(self) -> float:
        return self.now


def seal(ledger: SegmentLedger, table: str, priority: int = 5, rows: int = 10, size: int = 100) -> Manifest:
    seq, prev = ledger.chain_head(table)
    manifest = Manifest.create(SegmentId.of("ship-1", table, seq), row_count=rows, byte_size=size,
                               sha256=sha256_hex(f"{table}{seq}".encode()), schema_fingerprint=sha256_hex(b"s"),
                               prev_sha256=prev, priority=priority, clock=lambda: 1.0)
    ledger.record_sealed(manifest, f"segments/{table}/{seq}.parquet", log_no=seq, table_schema=SCHEMA)
    return manifest


@pytest.fixture
def ledger(tmp_path):
    opened = SegmentLedger(tmp_path, SITE, Clock())
    opened.claim_site()
    yield opened
    opened.close()


@pytest.mark.guarantee("G8")
def test_sealing_extends_the_hash_chain(ledger):
    first, second = seal(ledger, "t"), seal(ledger, "t")
    assert first.segment.seq == 1 and first.prev_sha256 == GENESIS_DIGEST
    assert second.segment.seq == 2 and second.prev_sha256 == first.sha256
    assert ledger.sealed_log_upto("t") == 2
    assert ledger.table_schemas() == {"t": SCHEMA}
    assert ledger.segment(second.segment).manifest == second


def test_pending_is_priority_then_seq(ledger):
    seal(ledger, "bulk", priority=9)
    seal(ledger, "telemetry")
    seal(ledger, "alarms", priority=0)
    seal(ledger, "telemetry")
    order = [(str(s.manifest.segment.table), s.manifest.segment.seq) for s in ledger.pending_segments()]
    assert order == [("alarms", 1), ("telemetry", 1), ("telemetry", 2), ("bulk", 1)]


@pytest.mark.guarantee("G8")
def test_ack_counts_and_collect_after_retention(ledger):
    ledger._clock.now = 100.0
    manifest = seal(ledger, "t", rows=7)
    ledger.mark_uploading(manifest.segment)
    ledger.mark_acked(manifest.segment)
    assert ledger.pending_segments() == []
    (counts,) = ledger.table_counts()
    assert (counts.acked_rows, counts.acked_segments, counts.pending_segments) == (7, 1, 0)
    assert ledger.collectable(acked_before=99.0) == []
    (due,) = ledger.collectable(acked_before=100.0)
    ledger.mark_collected(due.manifest.segment)
    assert ledger.segment(manifest.segment).state is SegmentState.COLLECTED
    assert ledger.stored_bytes() == (0, 0, 0)


@pytest.mark.guarantee("G8")
def test_an_unacked_segment_can_never_be_collected(ledger):
    manifest = seal(ledger, "t")
    with pytest.raises(LocalProtocolError, match="only acked segments may be collected"):
        ledger.mark_collected(manifest.segment)
    ledger.mark_uploading(manifest.segment)
    with pytest.raises(LocalProtocolError):
        ledger.mark_collected(manifest.segment)
    assert ledger.segment(manifest.segment).state is SegmentState.UPLOADING


def test_parked_segments_wait_for_release(ledger):
    manifest = seal(ledger, "t")
    ledger.mark_uploading(manifest.segment)
    ledger.mark_parked(manifest.segment)
    assert ledger.pending_segments() == []
    assert ledger.table_counts()[0].parked_segments == 1
    ledger.release(manifest.segment)
    assert [s.manifest for s in ledger.pending_segments()] == [manifest]


def test_a_data_directory_belongs_to_one_site(tmp_path, ledger):
    other = SegmentLedger(tmp_path, SiteId("ship-2"), Clock())
    with pytest.raises(RuntimeError, match="belongs to site 'ship-1'"):
        other.claim_site()
    other.close()
    reader = SegmentLedger(tmp_path, None, Clock())
    assert reader.stored_site() == SITE
    reader.close()


@pytest.mark.guarantee("G1")
def test_a_failed_transaction_leaves_nothing_half_done(ledger):
    manifest = seal(ledger, "t")
    with pytest.raises(Exception, match="UNIQUE"):
        ledger.record_sealed(manifest, "dup", log_no=99, table_schema=SCHEMA)  # same (table, seq)
    assert ledger.sealed_log_upto("t") == 1


@pytest.mark.guarantee("G7")
def test_startup_reads_do_not_grow_with_acked_segments(tmp_path):
    """The queries recovery and status make use the state index, so 20,000 acked segments cost
    about what none do (G7: start-up time does not grow with the acked backlog)."""
    def timed(ledger: SegmentLedger) -> float:
        start = time.perf_counter()
        for _ in range(20):
            ledger.table_schemas(), ledger.stored_bytes(), ledger.table_counts(), ledger.pending_segments()
            ledger.sealed_log_upto("t"), ledger.chain_head("t")
        return time.perf_counter() - start

    (tmp_path / "small").mkdir()
    (tmp_path / "big").mkdir()
    small, big = SegmentLedger(tmp_path / "small", SITE, Clock()), SegmentLedger(tmp_path / "big", SITE, Clock())
    seal(small, "t")
    rows = [("old", seq, "collected" if seq % 2 else "acked", "p", 1, 1, "a" * 64, "b" * 64, "c" * 64, 5, 0, seq, 1.0)
            for seq in range(1, 20_001)]
    with big._transaction():
        big.db.conn.executemany("INSERT INTO segments (table_name, seq, state, path, row_count, byte_size, sha256, "
                                "schema_fingerprint, prev_sha256, priority, created_at_ms, log_no, acked_at) "
                                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    seal(big, "t")
    timed(small), timed(big)  # warm up
    assert timed(big) < 3 * timed(small) + 0.05
    plan = big.db.execute("EXPLAIN QUERY PLAN SELECT COALESCE(SUM(byte_size), 0) FROM segments "
                          "WHERE state IN ('sealed', 'uploading')").fetchall()
    assert "USING INDEX" in str(plan)


def test_a_ledger_from_before_first_written_times_is_upgraded_in_place(tmp_path):
    ledger = SegmentLedger(tmp_path, SiteId("ship-1"), lambda: 1.0)
    manifest = seal(ledger, "telemetry")
    ledger.db.execute("ALTER TABLE segments DROP COLUMN first_written_ms")  # what the older version made
    ledger.close()
    reopened = SegmentLedger(tmp_path, SiteId("ship-1"), lambda: 1.0)
    (counts,) = reopened.table_counts()
    assert counts.oldest_pending_ms == manifest.created_at_ms  # no write time kept: the seal time stands in
    assert "first_written_ms" in reopened.db["segments"].columns_dict
    reopened.close()
