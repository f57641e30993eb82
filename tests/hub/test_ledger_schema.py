"""The hub ledger keeps manifests as columns, and upgrades a ``hub.db`` made by a hub that kept them as
``Upload-Metadata`` text, in place, once (G2, G8: nothing committed is lost or changed by the upgrade)."""

from __future__ import annotations

import pytest

from hub.db import Database
from hub.ledger import SqliteLedger
from hub.ledger_schema import MANIFEST_COLUMNS, TABLES
from hub.ledger_summary import SUMMARY_TABLES, recompute_progress
from sync_protocol.identifiers import TableName
from sync_protocol.merge_states import MergeState

from .conftest import chain

# The tables exactly as hubs before the manifest columns created them.
OLD_SCHEMA = (
    "CREATE TABLE uploads (site TEXT NOT NULL, tbl TEXT NOT NULL, seq INTEGER NOT NULL,"
    " metadata TEXT NOT NULL, durable_offset INTEGER NOT NULL, expires_at REAL NOT NULL,"
    " PRIMARY KEY (site, tbl, seq))",
    "CREATE TABLE segments (site TEXT NOT NULL, tbl TEXT NOT NULL, seq INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL, prev_sha256 TEXT NOT NULL, row_count INTEGER NOT NULL,"
    " byte_size INTEGER NOT NULL, metadata TEXT NOT NULL, committed_at REAL NOT NULL,"
    " state TEXT NOT NULL, batch_id INTEGER, merged_at REAL, delta_version INTEGER, reason TEXT,"
    " PRIMARY KEY (site, tbl, seq))",
    "CREATE INDEX segments_state ON segments(state, tbl, committed_at)",
    "CREATE TABLE refused_manifests (site TEXT NOT NULL, tbl TEXT NOT NULL,"
    " seq INTEGER NOT NULL, metadata TEXT NOT NULL, reason TEXT NOT NULL, refused_at REAL NOT NULL,"
    " PRIMARY KEY (site, tbl, seq))",
    "CREATE TABLE merge_batches (batch_id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " tbl TEXT NOT NULL, state TEXT NOT NULL)",
)


def _segment_row(manifest, committed_at, state, batch_id=None, merged_at=None, delta_version=None, reason=None):
    return [str(manifest.segment.site), str(manifest.segment.table), manifest.segment.seq, manifest.sha256,
            manifest.prev_sha256, manifest.row_count, manifest.byte_size, manifest.to_upload_metadata(),
            committed_at, state, batch_id, merged_at, delta_version, reason]


@pytest.fixture
def old_hub(layout):
    """A hub.db as an older hub left it: merged, quarantined, merging (batch 2 open), waiting, uploading, refused."""
    segments = chain("ship-a", "telemetry", 5, rows_per=4)
    other = chain("ship-b", "events", 1, rows_per=3)[0]
    refused = chain("ship-c", "telemetry", 1)[0].manifest
    database = Database(layout.database)
    with database.write() as db:
        for statement in OLD_SCHEMA:
            db.execute(statement)
        db.execute("INSERT INTO merge_batches (tbl, state) VALUES ('telemetry', 'done')")
        db.execute("INSERT INTO merge_batches (tbl, state) VALUES ('telemetry', 'open')")
        rows = [_segment_row(segments[0].manifest, 10.0, "merged", 1, 11.0, 0),
                _segment_row(segments[1].manifest, 12.0, "quarantined", None, 13.0, None, "schema conflict: x"),
                _segment_row(segments[2].manifest, 14.0, "merging", 2),
                _segment_row(segments[3].manifest, 15.0, "committed"),
                _segment_row(other.manifest, 16.0, "committed")]
        db.conn.executemany(f"INSERT INTO segments VALUES ({', '.join('?' * 14)})", rows)
        db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                   ["ship-a", "telemetry", 5, segments[4].manifest.to_upload_metadata(), 4096, 99.0])
        db.execute("INSERT INTO refused_manifests VALUES (?, ?, ?, ?, ?, ?)",
                   ["ship-c", "telemetry", 1, refused.to_upload_metadata(), "the file holds 9 rows", 17.0])
    database.close()
    return segments, other, refused


def _columns(database: Database, table: str) -> list[str]:
    return [row[1] for row in database.db.execute(f"PRAGMA table_info({table})").fetchall()]


@pytest.mark.guarantee("G2")
def test_an_old_hub_db_is_upgraded_in_place_and_reads_as_before(layout, clock, old_hub):
    segments, other, refused = old_hub
    database = Database(layout.database)
    ledger = SqliteLedger(database, clock)
    for table in ("uploads", "segments", "refused_manifests"):
        assert "metadata" not in _columns(database, table)
        assert _columns(database, table)[:len(MANIFEST_COLUMNS)] == list(MANIFEST_COLUMNS)
    assert [s.manifest for s in segments[:4]] == [ledger.committed(s.manifest.segment) for s in segments[:4]]
    assert ledger.committed(other.manifest.segment) == other.manifest
    (staged,) = ledger.all_staged()
    assert (staged.manifest, staged.offset, staged.expires_at) == (segments[4].manifest, 4096, 99.0)
    assert ledger.refusal(refused) == "the file holds 9 rows"
    assert ledger.segment_state(segments[2].manifest.segment) is MergeState.MERGING
    (batch,) = ledger.open_batches()
    assert batch.batch_id == 2 and [s.manifest for s in batch.segments] == [segments[2].manifest]
    assert [p.manifest for p in ledger.pending(TableName("telemetry"), 10)] == [segments[3].manifest]
    (entry,) = ledger.quarantined()
    assert (entry.segment, entry.reason, entry.at) == (segments[1].manifest.segment, "schema conflict: x", 13.0)
    progress = {(p.site, p.table): p for p in ledger.progress()}
    telemetry = progress[("ship-a", "telemetry")]
    assert (telemetry.segments_committed, telemetry.rows_merged, telemetry.segments_pending) == (4, 4, 2)
    assert (telemetry.chain.watermark, telemetry.chain.breaks) == (4, ())
    assert ledger.oldest_pending_commit() == 14.0
    # the upgraded ledger carries on: the next batch gets a new id, and the waiting upload commits
    assert ledger.plan_batch(TableName("telemetry"), [segments[3].manifest.segment]).batch_id == 3
    assert ledger.commit(segments[4].manifest, 20.0) is True
    database.close()


def test_the_upgrade_runs_once_and_ends_where_a_new_hub_starts(layout, clock, old_hub, tmp_path):
    database = Database(layout.database)
    SqliteLedger(database, clock)
    before = database.db.execute("SELECT * FROM segments ORDER BY site, tbl, seq").fetchall()
    SqliteLedger(database, clock)  # a restart: nothing left to upgrade
    assert database.db.execute("SELECT * FROM segments ORDER BY site, tbl, seq").fetchall() == before
    fresh = Database(tmp_path / "fresh.db")
    SqliteLedger(fresh, clock)
    for table in TABLES:
        assert database.db.execute(f"PRAGMA table_info({table})").fetchall() == \
               fresh.db.execute(f"PRAGMA table_info({table})").fetchall()
    assert database.db.execute("PRAGMA index_info(segments_state)").fetchall() == \
           fresh.db.execute("PRAGMA index_info(segments_state)").fetchall()
    database.close()
    fresh.close()


def test_a_row_that_does_not_decode_stops_the_upgrade_and_leaves_the_old_tables(layout, clock, old_hub):
    database = Database(layout.database)
    with database.write() as db:
        db.execute("UPDATE refused_manifests SET metadata = 'site c2hpcC1j'")
    with pytest.raises(RuntimeError, match=r"refused_manifests row \('ship-c', 'telemetry', 1\).*no valid manifest"):
        SqliteLedger(database, clock)
    for table in ("uploads", "segments", "refused_manifests"):  # one transaction: the earlier tables stay old too
        assert "metadata" in _columns(database, table)
    database.close()


# -- the progress summary (issue 14, item 4) ----------------------------------------------------------------


@pytest.mark.guarantee("G8")
def test_a_hub_db_from_before_the_progress_summary_gets_it_built_once_at_start_up(layout, clock):
    """The hub before the summary had every table but the summary's: the first start builds it from the segments
    (merged, quarantined, merging, waiting; a gap), the next starts leave it alone (no O(history) start-up)."""
    database = Database(layout.database)
    ledger = SqliteLedger(database, clock)
    segments = chain("ship-a", "telemetry", 6, rows_per=4)
    for segment in segments[:3] + segments[4:] + chain("ship-b", "events", 2, rows_per=3):
        ledger.commit(segment.manifest, clock())
    telemetry = TableName("telemetry")
    merged = ledger.plan_batch(telemetry, [segments[0].manifest.segment])
    ledger.finish_batch(merged.batch_id, 0, clock())
    ledger.quarantine(segments[1].manifest.segment, "schema conflict: x", clock())
    ledger.plan_batch(telemetry, [segments[2].manifest.segment])
    before, merged_before = ledger.progress(), ledger.rows_merged_since(0.0)
    with database.write() as db:
        for table in SUMMARY_TABLES:
            db.execute(f"DROP TABLE {table}")
    database.close()

    database = Database(layout.database)
    upgraded = SqliteLedger(database, clock)
    assert upgraded.progress() == before == recompute_progress(database.db)
    assert upgraded.rows_merged_since(0.0) == merged_before == {"ship-a": 4}
    (telemetry_progress,) = [p for p in before if p.table == "telemetry"]
    assert telemetry_progress.chain.gaps == ((4, 4),) and telemetry_progress.quarantined == 1
    assert (telemetry_progress.rows_merged, telemetry_progress.segments_pending) == (4, 3)
    with database.write() as db:  # a mark the next start would wipe if it rebuilt the summary
        db.execute("UPDATE table_progress SET rows_merged = 999 WHERE site = 'ship-b'")
    SqliteLedger(database, clock)
    assert [p.rows_merged for p in upgraded.progress() if p.site == "ship-b"] == [999]
    database.close()
