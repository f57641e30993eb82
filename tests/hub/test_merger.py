"""The merger on real files: Delta tables on disk, the SQLite ledger, staged Parquet segments."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from hub.merger import MERGER_APP_ID, Merger
from hub.query import run_query
from hub.staging import StagingArea
from sync_protocol.identifiers import TableName
from sync_protocol.merge_states import MergeState

from .conftest import Segment, chain, make_segment, rows_table


@pytest.fixture
def staging(layout):
    return StagingArea(layout)


@pytest.fixture
def merger(layout, ledger, staging, clock):
    return Merger(layout, ledger, staging, clock, min_commit_interval=0.0)


def commit(ledger, staging, segment: Segment, now: float = 1.0) -> None:
    staging.path(segment.manifest.segment).write_bytes(segment.data)
    ledger.commit(segment.manifest, now)


def query(layout, sql: str) -> list[tuple]:
    return run_query(layout, sql).rows


def test_three_schema_versions_merge_into_one_table(layout, ledger, staging, merger):
    v1 = pa.table({"row_id": pa.array([1, 2], pa.int32()), "value": pa.array([1.5, 2.5], pa.float32())})
    v2 = pa.table({"row_id": pa.array([3], pa.int64()), "value": pa.array([3.5], pa.float64()),
                   "firmware": ["2.1"]})
    v3 = pa.table({"row_id": pa.array([4], pa.int16())})
    for site, rows in (("ship-a", v1), ("ship-b", v2), ("ship-c", v3)):
        commit(ledger, staging, make_segment(site, "telemetry", 1, rows))
    assert merger.run_once() == 3
    assert merger.stats.commits == 1  # one batch, one Delta commit
    rows = query(layout, "SELECT _site, row_id, value, firmware, _seq FROM telemetry ORDER BY row_id")
    assert rows == [("ship-a", 1, 1.5, None, 1), ("ship-a", 2, 2.5, None, 1), ("ship-b", 3, 3.5, "2.1", 1),
                    ("ship-c", 4, None, None, 1)]
    types = dict(query(layout, "SELECT column_name, column_type FROM (DESCRIBE telemetry)"))
    assert types["row_id"] == "BIGINT" and types["value"] == "DOUBLE"
    assert not list(layout.uploads.iterdir())  # merged files are gone


@pytest.mark.guarantee("G7")
def test_conflicting_segment_is_quarantined_and_later_ones_still_merge(layout, ledger, staging, merger):
    commit(ledger, staging, make_segment("ship-a", "telemetry", 1, rows_table(0, 3)))
    merger.run_once()
    bad = make_segment("ship-b", "telemetry", 1, pa.table({"row_id": ["not", "a", "number"]}))
    later = make_segment("ship-b", "telemetry", 2, rows_table(10, 2), prev=bad)
    reserved = make_segment("ship-c", "telemetry", 1, pa.table({"row_id": [1], "_site": ["ship-a"]}))
    for segment in (bad, later, reserved):
        commit(ledger, staging, segment)
    merger.run_once()
    assert query(layout, "SELECT _site, count(*) FROM telemetry GROUP BY 1 ORDER BY 1") == [
        ("ship-a", 3), ("ship-b", 2)]
    reasons = {(str(q.segment.site), q.segment.seq): q.reason for q in ledger.quarantined()}
    assert "row_id" in reasons[("ship-b", 1)] and "another site" in reasons[("ship-c", 1)]
    assert (layout.quarantine / f"{bad.key}.seg").read_bytes() == bad.data


def test_unreadable_and_miscounted_segments_are_quarantined(ledger, staging, merger):
    garbage = make_segment("ship-a", "telemetry", 1, rows_table(0, 3))
    staging.path(garbage.manifest.segment).write_bytes(b"PAR1 not really")
    ledger.commit(garbage.manifest, 1.0)
    liar = make_segment("ship-b", "telemetry", 1, rows_table(0, 3))
    staging.path(liar.manifest.segment).write_bytes(make_segment("ship-b", "telemetry", 1, rows_table(0, 4)).data)
    ledger.commit(liar.manifest, 1.0)
    huge = make_segment("ship-c", "telemetry", 1, pa.table({"row_id": pa.array([2**63], pa.uint64())}))
    commit(ledger, staging, huge)
    merger.run_once()
    reasons = {str(q.segment.site): q.reason for q in ledger.quarantined()}
    assert "Parquet" in reasons["ship-a"]
    assert "manifest says 3" in reasons["ship-b"]
    assert "does not fit int64" in reasons["ship-c"]


@pytest.mark.guarantee("G2")
def test_reconcile_finishes_batches_that_reached_the_table_and_reopens_the_rest(
        layout, ledger, staging, merger, clock):
    first = make_segment("ship-a", "telemetry", 1, rows_table(0, 5))
    commit(ledger, staging, first)
    # Plan a batch and write it to Delta, as a merger killed before telling the ledger would have.
    batch = ledger.plan_batch(TableName("telemetry"), [first.manifest.segment])
    from deltalake import CommitProperties, Transaction, write_deltalake
    rows = pa.table({"row_id": pa.array(range(5), pa.int64()), "value": pa.array([0.0] * 5),
                     "_site": ["ship-a"] * 5})
    write_deltalake(str(layout.table_dir(TableName("telemetry"))), rows, mode="append", partition_by=["_site"],
                    commit_properties=CommitProperties(app_transactions=[Transaction(MERGER_APP_ID, batch.batch_id)]))
    second = make_segment("ship-b", "telemetry", 1, rows_table(100, 5))
    commit(ledger, staging, second)
    ledger.plan_batch(TableName("telemetry"), [second.manifest.segment])  # planned, never written
    assert merger.reconcile() == (1, 1)
    assert ledger.segment_state(first.manifest.segment) is MergeState.MERGED
    assert not staging.path(first.manifest.segment).exists()
    merger.run_once()
    assert query(layout, "SELECT _site, count(*) FROM telemetry GROUP BY 1 ORDER BY 1") == [
        ("ship-a", 5), ("ship-b", 5)]
    assert merger.reconcile() == (0, 0)


def test_failed_write_puts_the_segments_back(layout, ledger, staging, merger, monkeypatch):
    segment = make_segment("ship-a", "telemetry", 1, rows_table(0, 5))
    commit(ledger, staging, segment)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("hub.merger.write_deltalake", broken)
    with pytest.raises(OSError):
        merger.run_once()
    assert ledger.open_batches() == []
    assert [p.segment for p in ledger.pending(TableName("telemetry"), 10)] == [segment.manifest.segment]


def test_batches_are_bounded_and_maintenance_compacts(layout, ledger, staging, clock):
    merger = Merger(layout, ledger, staging, clock, max_batch_segments=4, min_commit_interval=0.0)
    previous = None
    for seq in range(1, 11):
        previous = make_segment("ship-a", "telemetry", seq, rows_table(seq * 10, 10), prev=previous)
        commit(ledger, staging, previous, now=float(seq))
    while merger.run_once():
        pass
    assert merger.stats.commits == 3  # 4 + 4 + 2 segments
    table = DeltaTable(str(layout.table_dir(TableName("telemetry"))))
    assert table.transaction_version(MERGER_APP_ID) is not None
    before = len(table.file_uris())
    merger.maintain(TableName("telemetry"))
    assert len(DeltaTable(str(layout.table_dir(TableName("telemetry")))).file_uris()) < before
    assert query(layout, "SELECT count(*), count(DISTINCT row_id) FROM telemetry") == [(100, 100)]


def test_a_busy_table_gathers_what_arrives_into_the_next_commit(layout, ledger, staging, clock):
    """One commit per table per MIN_COMMIT_INTERVAL_SECONDS at most: what arrives meanwhile waits for
    the next one, so a fleet of small segments makes few commits; an idle table merges at once."""
    merger = Merger(layout, ledger, staging, clock, min_commit_interval=30.0)
    segments = chain("aurora", "telemetry", 3)
    commit(ledger, staging, segments[0])
    assert merger.run_once() == 1  # idle: at once
    for segment in segments[1:]:
        commit(ledger, staging, segment)
    assert merger.run_once() == 0 and 0 < merger._next_wait() <= 2.0
    merger._last_commit_at.clear()  # the interval passed
    assert merger.run_once() == 2
    assert DeltaTable(str(layout.table_dir(TableName("telemetry")))).version() == 1  # two commits for three


@pytest.mark.guarantee("G2")
def test_an_int_column_widens_to_float_by_one_rewrite_and_keeps_exactly_once(layout, ledger, staging, merger):
    commit(ledger, staging, make_segment("ship-a", "telemetry", 1, pa.table({"row_id": [1], "v": pa.array([1])})))
    merger.run_once()
    version = DeltaTable(str(layout.table_dir(TableName("telemetry")))).transaction_version(MERGER_APP_ID)
    commit(ledger, staging, make_segment("ship-b", "telemetry", 1, pa.table({"row_id": [2], "V": pa.array([2.5])})))
    merger._last_commit_at.clear()
    merger.run_once()
    assert query(layout, "SELECT _site, row_id, v FROM telemetry ORDER BY row_id") == [
        ("ship-a", 1, 1.0), ("ship-b", 2, 2.5)]
    types = dict(query(layout, "SELECT column_name, column_type FROM (DESCRIBE telemetry)"))
    assert types["v"] == "DOUBLE" and "V" not in types
    table = DeltaTable(str(layout.table_dir(TableName("telemetry"))))
    assert table.transaction_version(MERGER_APP_ID) == version + 1  # the rewrite kept the merger's marks
    assert ledger.quarantined() == [] and merger.reconcile() == (0, 0)


def test_legacy_zone_less_timestamps_become_utc(layout, ledger, staging, merger):
    from deltalake import write_deltalake

    path = str(layout.table_dir(TableName("events")))
    write_deltalake(path, pa.table({"ts": pa.array([0], pa.timestamp("us")), "_site": ["ship-a"]}),
                    partition_by=["_site"])  # as the hub stored zone-less timestamps before the type rules
    commit(ledger, staging, make_segment("ship-b", "events", 1,
                                         pa.table({"ts": pa.array([1], pa.timestamp("s", tz="UTC"))})))
    merger.run_once()
    assert str(pa.schema(DeltaTable(path).schema().to_arrow()).field("ts").type) == "timestamp[us, tz=UTC]"
    assert sorted(DeltaTable(path).to_pyarrow_table().column("ts").cast(pa.int64()).to_pylist()) == [0, 1_000_000]


def poison(monkeypatch, *, row_id: int, in_scratch: bool = True) -> None:
    """write_deltalake refuses any batch holding ``row_id`` -- a refusal the type rules did not foresee."""
    from hub import merger as module

    real = module.write_deltalake

    def refusing(path, data, **kwargs):
        holds = isinstance(data, pa.Table) and row_id in data.column("row_id").to_pylist()
        if holds and (in_scratch or ".merge-probe-" not in str(path)):
            raise Exception(f"Generic error: poisoned row {row_id}\n   0: <backtrace>")
        return real(path, data, **kwargs)

    monkeypatch.setattr(module, "write_deltalake", refusing)


@pytest.mark.guarantee("G7")
def test_a_segment_delta_refuses_is_narrowed_down_and_quarantined(layout, ledger, staging, merger, monkeypatch):
    poison(monkeypatch, row_id=666)
    segments = []
    for seq in range(1, 7):
        first = 666 if seq == 4 else seq * 10
        segments.append(make_segment("ship-a", "telemetry", seq, rows_table(first, 1),
                                     prev=segments[-1] if segments else None))
        commit(ledger, staging, segments[-1], now=float(seq))
    commit(ledger, staging, make_segment("ship-b", "zulu", 1, rows_table(0, 2)))
    assert merger.run_once() == 7
    assert query(layout, "SELECT count(*) FROM telemetry") == [(5,)]
    assert query(layout, "SELECT count(*) FROM zulu") == [(2,)]  # the table after it merged in the same round
    (entry,) = ledger.quarantined()
    assert entry.segment.seq == 4 and entry.reason == "Delta Lake refused its rows: Generic error: poisoned row 666"
    assert (layout.quarantine / f"{segments[3].key}.seg").exists()
    assert ledger.open_batches() == [] and not list(layout.root.glob(".merge-probe-*"))


def test_a_refusal_of_the_table_not_the_rows_is_retried_never_quarantined(layout, ledger, staging, merger,
                                                                          monkeypatch):
    poison(monkeypatch, row_id=7, in_scratch=False)  # the same rows go into a fresh table: the table is at fault
    segment = make_segment("ship-a", "telemetry", 1, rows_table(7, 1))
    commit(ledger, staging, segment)
    commit(ledger, staging, make_segment("ship-b", "zulu", 1, rows_table(0, 2)))
    with pytest.raises(Exception, match="poisoned"):
        merger.run_once()
    assert ledger.quarantined() == [] and ledger.open_batches() == []
    assert [p.segment for p in ledger.pending(TableName("telemetry"), 10)] == [segment.manifest.segment]
    assert query(layout, "SELECT count(*) FROM zulu") == [(2,)]


@pytest.mark.guarantee("G7")
def test_a_segment_that_decodes_past_the_limit_is_quarantined_without_being_read(ledger, staging, merger):
    """The commit refuses such a segment (413); this is for a file committed before it did, or released later."""
    bomb = pa.table({"text": pa.repeat(pa.scalar("x" * 1000), 1_200_000)})  # 1.2 GB of one string
    commit(ledger, staging, make_segment("ship-a", "telemetry", 1, bomb))
    merger.run_once()
    [held] = ledger.quarantined()
    assert "once decoded" in held.reason


def test_a_commit_of_many_ships_closes_each_ships_file_at_once(layout, ledger, staging, merger):
    """delta-rs holds a writer (~1.2 MiB) open per partition until the end of a write unless its file reaches the
    target size: a commit of a whole fleet's small segments gets a tiny target, so its memory does not grow with
    the fleet. The rows arrive exactly once, and a ship with many rows is not cut into tiny files."""
    from hub.merger import MANY_PARTITIONS, SMALL_PARTITION_ROWS, _target_file_size

    ships = [f"ship-{n:02d}" for n in range(MANY_PARTITIONS + 4)]
    for ship in ships:
        commit(ledger, staging, chain(ship, "telemetry", 1, rows_per=50)[0])
    assert merger.run_once() == len(ships)
    table = DeltaTable(str(layout.table_dir(TableName("telemetry"))))
    assert table.version() == 0 and len(table.file_uris()) == len(ships)  # one commit, one file per ship
    assert query(layout, "SELECT count(*), count(DISTINCT (_site, row_id)) FROM telemetry") == [(1000, 1000)]

    small = pa.table({"_site": [s for s in ships for _ in range(10)]})
    assert _target_file_size(small) is not None
    big = pa.table({"_site": ships * 10 + ["ship-00"] * (SMALL_PARTITION_ROWS + 1)})
    assert _target_file_size(big) is None  # one ship's many rows: delta-rs's default file size
    assert _target_file_size(pa.table({"_site": ships[:MANY_PARTITIONS - 1]})) is None  # few ships: no need
