"""The progress summary (G8): whatever commits, repeats, refusals, batches, quarantines and releases come in
whatever order, ``progress()`` and the rows merged per day read from the summary are what the full recomputation
over every segment gives (what status computed before the summary), and the summary's rows are what a rebuild
from the segments writes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.db import Database
from hub.ledger import SqliteLedger
from hub.ledger_summary import (
    DAY_SECONDS,
    SUMMARY_TABLES,
    rebuild,
    recompute_progress,
    recompute_rows_merged_since,
)
from sync_protocol.errors import LocalProtocolError, RemoteProtocolError
from sync_protocol.identifiers import SegmentId, TableName
from sync_protocol.limits import GENESIS_DIGEST, MAX_SEQ
from sync_protocol.manifest import Manifest, sha256_hex

SITES = ("ship-a", "ship-b")
TABLES = ("telemetry", "events")
SEQS = (1, 2, 3, 4, 5, 6, 7, 8, 10**12, MAX_SEQ)
FINGERPRINT = sha256_hex(b"schema")
VARIANTS = ("honest", "other digest", "other prev")
"""An honest segment of the chain; the same seq with other bytes (a conflict once the honest one is committed,
and one that refuses its honest neighbours if it commits first); one that does not follow its predecessor."""


def manifest(site: str, table: str, seq: int, variant: str = "honest") -> Manifest:
    def digest(number: int) -> str:
        return sha256_hex(f"{site}/{table}/{number}".encode())

    sha256 = digest(seq) if variant != "other digest" else sha256_hex(f"other {site}/{table}/{seq}".encode())
    prev = GENESIS_DIGEST if seq == 1 else digest(seq - 1) if variant != "other prev" else sha256_hex(b"elsewhere")
    return Manifest(SegmentId.of(site, table, seq), seq % 7 + 1, 100, sha256, FINGERPRINT, prev, 5, 0)


COMMIT = st.tuples(st.just("commit"), st.sampled_from(SITES), st.sampled_from(TABLES), st.sampled_from(SEQS),
                   st.sampled_from(VARIANTS))
HONEST_COMMIT = st.tuples(st.just("commit"), st.sampled_from(SITES), st.sampled_from(TABLES), st.sampled_from(SEQS),
                          st.just("honest"))
OPERATIONS = st.one_of(
    COMMIT, HONEST_COMMIT, HONEST_COMMIT, HONEST_COMMIT,
    st.tuples(st.sampled_from(["quarantine", "release"]), st.integers(0, 99)),
    st.tuples(st.sampled_from(["plan", "merge"]), st.sampled_from(TABLES), st.integers(1, 4)),
    st.tuples(st.sampled_from(["finish", "abandon"]), st.integers(0, 9)),
)
"""Commits weigh most (a duplicate is a commit drawn twice); ``merge`` is a batch planned and finished at once."""


def apply(ledger: SqliteLedger, database: Database, operation: tuple, now: float) -> None:
    """One operation as the upload service, the merger or an operator makes it; refusals change nothing."""
    kind, *args = operation
    committed = [SegmentId.of(*row) for row in
                 database.db.execute("SELECT site, tbl, seq FROM segments ORDER BY site, tbl, seq").fetchall()]
    try:
        if kind == "commit":
            ledger.commit(manifest(*args), now)
        elif kind in ("quarantine", "release") and committed:
            segment = committed[args[0] % len(committed)]
            if kind == "quarantine":
                ledger.quarantine(segment, "cannot be merged", now)
            else:
                ledger.release_quarantined(segment)
        elif kind in ("plan", "merge"):
            waiting = ledger.pending(TableName(args[0]), args[1])
            if waiting:
                batch = ledger.plan_batch(TableName(args[0]), [w.segment for w in waiting])
                if kind == "merge":
                    ledger.finish_batch(batch.batch_id, 1, now)
        elif kind in ("finish", "abandon") and (batches := ledger.open_batches()):
            batch = batches[args[0] % len(batches)]
            if kind == "finish":
                ledger.finish_batch(batch.batch_id, 1, now)
            else:
                ledger.abandon_batch(batch.batch_id)
    except (RemoteProtocolError, LocalProtocolError):
        pass  # a conflict, a splice or a move the merge table does not allow: refused, as in the hub


STEP_SECONDS = 20_000.0
"""The clock moves this much per operation: merges land on several UTC days."""


def summary_rows(database: Database) -> dict[str, list]:
    return {name: database.db.execute(f"SELECT * FROM {name} ORDER BY 1, 2, 3").fetchall() for name in SUMMARY_TABLES}


def same_as_recomputed(ledger: SqliteLedger, database: Database, days: int) -> bool:
    merged = all(ledger.rows_merged_since(day * DAY_SECONDS)
                 == recompute_rows_merged_since(database.db, day * DAY_SECONDS) for day in range(days + 1))
    return merged and ledger.progress() == recompute_progress(database.db)


@pytest.mark.guarantee("G8")
@settings(max_examples=100, deadline=None)
@given(st.lists(OPERATIONS, min_size=10, max_size=80))
def test_progress_from_the_summary_is_the_full_recomputation_whatever_the_order(operations):
    with tempfile.TemporaryDirectory(prefix="harbour-summary-") as tmp:
        database = Database(Path(tmp) / "hub.db")
        database.db.execute("PRAGMA synchronous = OFF")  # a scratch ledger per example
        ledger = SqliteLedger(database, lambda: 0.0)
        try:
            for step, operation in enumerate(operations):
                apply(ledger, database, operation, step * STEP_SECONDS)
                assert same_as_recomputed(ledger, database, int(step * STEP_SECONDS // DAY_SECONDS) + 1), operation
            kept = summary_rows(database)
            with database.write() as db:
                rebuild(db)
            assert summary_rows(database) == kept
        finally:
            database.close()


def test_rows_merged_are_tallied_per_utc_day(ledger, database):
    first, second = (manifest("ship-a", "telemetry", seq) for seq in (1, 2))
    for number, (segment, at) in enumerate(((first, DAY_SECONDS - 1.0), (second, DAY_SECONDS + 1.0))):
        ledger.commit(segment, at)
        batch = ledger.plan_batch(TableName("telemetry"), [segment.segment])
        ledger.finish_batch(batch.batch_id, number, at)
    assert ledger.rows_merged_since(0.0) == {"ship-a": first.row_count + second.row_count}
    assert ledger.rows_merged_since(DAY_SECONDS) == {"ship-a": second.row_count}
    assert ledger.rows_merged_since(2 * DAY_SECONDS) == {}
    with pytest.raises(LocalProtocolError, match="per UTC day"):
        ledger.rows_merged_since(DAY_SECONDS - 1.0)
