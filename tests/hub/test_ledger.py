"""The exactly-once ledger on a real SQLite file (G2, G8): merge batches and status. What the upload service
needs of it (records, commit, chain, refusals) is in ``test_upload_storage.py``, shared with the in-memory ledger."""

from __future__ import annotations

import pytest

from hub.ledger_summary import rebuild, recompute_progress
from sync_protocol.errors import LocalProtocolError
from sync_protocol.identifiers import SegmentId, TableName
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import Manifest
from sync_protocol.merge_states import MergeState

from .conftest import chain


def test_batches_move_segments_through_their_states(ledger):
    segments = chain("ship-a", "telemetry", 3) + chain("ship-b", "events", 1)
    for i, segment in enumerate(segments):
        ledger.commit(segment.manifest, float(i))
    telemetry = TableName("telemetry")
    assert ledger.tables_pending() == [TableName("events"), telemetry]
    waiting = ledger.pending(telemetry, 10)
    assert [w.segment.seq for w in waiting] == [1, 2, 3]
    batch = ledger.plan_batch(telemetry, [w.segment for w in waiting[:2]])
    assert [s.state for s in batch.segments] == [MergeState.MERGING, MergeState.MERGING]
    assert [w.segment.seq for w in ledger.pending(telemetry, 10)] == [3]
    assert [b.batch_id for b in ledger.open_batches()] == [batch.batch_id]
    ledger.abandon_batch(batch.batch_id)
    assert [w.segment.seq for w in ledger.pending(telemetry, 10)] == [1, 2, 3]
    again = ledger.plan_batch(telemetry, [w.segment for w in ledger.pending(telemetry, 10)])
    assert again.batch_id > batch.batch_id
    ledger.finish_batch(again.batch_id, 7, 10.0)
    assert ledger.open_batches() == []
    assert ledger.segment_state(SegmentId.of("ship-a", "telemetry", 2)) is MergeState.MERGED
    with pytest.raises(ValueError):
        ledger.plan_batch(telemetry, [SegmentId.of("ship-b", "events", 1)])


def test_moves_the_merge_tables_do_not_allow_are_bugs(ledger):
    (segment,) = chain("ship-a", "telemetry", 1)
    ledger.commit(segment.manifest, 1.0)
    batch = ledger.plan_batch(TableName("telemetry"), [segment.manifest.segment])
    with pytest.raises(LocalProtocolError, match="not allowed in state 'merging'"):
        ledger.quarantine(segment.manifest.segment, "a batch in flight is not the merger's to set aside", 2.0)
    ledger.finish_batch(batch.batch_id, 3, 2.0)
    with pytest.raises(LocalProtocolError, match="not allowed in state 'done'"):
        ledger.abandon_batch(batch.batch_id)
    with pytest.raises(LocalProtocolError, match="not allowed in state 'merged'"):
        ledger.quarantine(segment.manifest.segment, "merged rows cannot be taken back", 3.0)
    assert ledger.segment_state(segment.manifest.segment) is MergeState.MERGED


@pytest.mark.guarantee("G8")
def test_quarantine_and_progress(ledger, clock):
    segments = chain("ship-a", "telemetry", 4, rows_per=5)
    for segment in segments[:2] + segments[3:]:  # seq 3 never arrives
        ledger.commit(segment.manifest, clock())
    ledger.quarantine(segments[1].manifest.segment, "schema conflict: x", clock())
    batch = ledger.plan_batch(TableName("telemetry"), [segments[0].manifest.segment])
    ledger.finish_batch(batch.batch_id, 0, clock())
    (progress,) = ledger.progress()
    assert (progress.site, progress.table) == ("ship-a", "telemetry")
    assert (progress.segments_committed, progress.rows_committed, progress.rows_merged) == (3, 15, 5)
    assert (progress.segments_pending, progress.quarantined) == (1, 1)
    assert (progress.chain.watermark, progress.chain.highest, progress.chain.gaps) == (2, 4, ((3, 3),))
    (entry,) = ledger.quarantined()
    assert entry.segment.seq == 2 and entry.reason == "schema conflict: x"
    assert ledger.segment_state(entry.segment) is MergeState.QUARANTINED
    assert ledger.segment_state(segments[3].manifest.segment) is MergeState.COMMITTED
    assert ledger.oldest_pending_commit() == clock()


# -- chain status from runs of seqs (issue 12, item 6) -----------------------------------------------------


def _insert(database, site: str, table: str, seq: int, sha256: str, prev_sha256: str) -> None:
    """A committed row as it stands in the table, bypassing the chain check (to make breaks and far seqs)."""
    with database.write() as db:
        db.execute("INSERT INTO segments (site, tbl, seq, sha256, prev_sha256, row_count, byte_size,"
                   " schema_fingerprint, priority, created_at_ms, committed_at, state)"
                   " VALUES (?, ?, ?, ?, ?, 1, 1, ?, 5, 0, 0, 'committed')",
                   [site, table, seq, sha256, prev_sha256, "f" * 64])


@pytest.mark.guarantee("G8")
def test_the_summary_built_from_segments_finds_runs_gaps_and_breaks_like_the_pure_walk(ledger, database):
    """What the start-up upgrade does with the segments of an older hub (which may hold breaks: the chain check at
    commit came later): the full recomputation, as the pure walk over every link would have it."""
    import random

    from sync_protocol.chain import ChainLink, chain_status
    from sync_protocol.manifest import sha256_hex

    rng = random.Random(12)
    expected = {}
    for site, table in (("ship-a", "telemetry"), ("ship-a", "events"), ("ship-b", "telemetry")):
        links = {}
        for seq in sorted(rng.sample(range(1, 60), 35)) + [2**62]:
            good = rng.random() < 0.85
            prev = (GENESIS_DIGEST if seq == 1 else sha256_hex(f"{site}{table}{seq - 1}".encode())) if good \
                else "9" * 64
            links[seq] = ChainLink(sha256_hex(f"{site}{table}{seq}".encode()), prev)
            _insert(database, site, table, seq, links[seq].sha256, prev)
        expected[(site, table)] = chain_status(links)
    assert {(p.site, p.table): p.chain for p in recompute_progress(database.db)} == expected
    with database.write() as db:
        rebuild(db)
    got = {(p.site, p.table): p.chain for p in ledger.progress()}
    assert got == expected
    assert any(status.breaks for status in got.values()) and all(s.highest == 2**62 for s in got.values())


def test_a_refused_manifest_is_remembered_until_its_seq_commits(ledger, clock):
    honest = chain("ship-a", "telemetry", 1)[0].manifest
    lie = Manifest.create(honest.segment, row_count=honest.row_count + 1, byte_size=honest.byte_size,
                          sha256=honest.sha256, schema_fingerprint=honest.schema_fingerprint,
                          prev_sha256=honest.prev_sha256, priority=honest.priority, clock=lambda: 0.0)
    ledger.save_staged(lie, lie.byte_size, 10.0)
    ledger.refuse(lie, "the manifest says 11 rows, the file holds 10", clock())
    assert ledger.staged(lie.segment) is None
    assert ledger.refusal(lie) == "the manifest says 11 rows, the file holds 10"
    assert ledger.refusal(honest) is None
    ledger.commit(honest, clock())
    assert ledger.refusal(lie) is None


def test_the_last_seq_commits_and_shows_as_one_gap(ledger, clock):
    """Its successor's seq does not fit a 64-bit INTEGER: the chain check must not ask for it (it raised
    OverflowError, which the hub answers as an internal error)."""
    from sync_protocol.limits import MAX_SEQ

    first = chain("ship-a", "telemetry", 1)[0].manifest
    last = Manifest(SegmentId.of("ship-a", "telemetry", MAX_SEQ), 1, 1, "a" * 64, first.schema_fingerprint,
                    "b" * 64, 5, 0)
    ledger.check_chain(last)
    assert ledger.commit(first, clock()) and ledger.commit(last, clock())
    (progress,) = ledger.progress()
    assert (progress.chain.watermark, progress.chain.highest, progress.chain.gaps) == (1, MAX_SEQ, ((2, MAX_SEQ - 1),))
