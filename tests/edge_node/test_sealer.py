"""Sealing a log into a Parquet segment: content, manifest, hash chain, and every crash point (G1, G8)."""

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_node import sealer, wal
from edge_node.ledger import SegmentLedger
from edge_node.node import _ipc_bytes
from sync_protocol import SiteId
from sync_protocol.limits import GENESIS_DIGEST

SITE = SiteId("ship-1")


def write_log(tmp_path, tables: list[pa.Table]):
    log = wal.WriteAheadLog(tmp_path / "wal", lambda: 1.0, 1 << 30)
    log.recover(lambda t: 0, tmp_path / "q")
    for table in tables:
        log.append_group([wal.Append("t", table.schema, _ipc_bytes(table), table.num_rows)])
    log.close()
    return wal.list_logs(tmp_path / "wal" / "t")[-1]


def seal(tmp_path, ledger, path):
    return sealer.seal_log(tmp_path, SITE, "t", path, ledger, table_schema=pa.schema([("v", pa.int64())]),
                           priority=3, clock=lambda: 2.0, quarantine=tmp_path / "q")


def test_segment_holds_the_rows_with_site_and_a_true_manifest(tmp_path):
    ledger = SegmentLedger(tmp_path, SITE, lambda: 1.0)
    path = write_log(tmp_path, [pa.table({"v": [1, 2]}), pa.table({"v": [3]})])
    manifest = seal(tmp_path, ledger, path)
    segment = sealer.segment_path(tmp_path, "t", 1)
    assert pq.read_table(segment).to_pylist() == [{"v": v, "_site": "ship-1"} for v in (1, 2, 3)]
    assert manifest.row_count == 3 and manifest.priority == 3 and manifest.created_at_ms == 2000
    assert manifest.sha256 == hashlib.sha256(segment.read_bytes()).hexdigest()
    assert manifest.byte_size == segment.stat().st_size
    assert manifest.prev_sha256 == GENESIS_DIGEST
    assert pq.ParquetFile(segment).metadata.row_group(0).column(0).compression == "ZSTD"
    assert not path.exists()
    path2 = write_log(tmp_path, [pa.table({"v": [4]})])
    assert seal(tmp_path, ledger, path2).prev_sha256 == manifest.sha256


def test_the_manifest_is_made_while_writing_and_matches_the_file_as_read(tmp_path, monkeypatch):
    """sha256, size and schema fingerprint come from the bytes as they were written and the writer's footer;
    they are what the hub will find when it reads the file (Parquet reads date64 back as date32, a list's
    item as element, timestamp[s] as [ms]: the fingerprint is of what is read)."""
    import datetime

    from edge_node import schemas

    monkeypatch.setattr(pq, "read_schema", lambda *a, **k: pytest.fail("the sealer read the segment back"))
    table = pa.table({"d": pa.array([datetime.date(2025, 6, 1)] * 3, pa.date64()),
                      "s": pa.array([1, 2, 3], pa.timestamp("s")), "l": pa.array([[1], [2, 3], []]),
                      "v": pa.array([1.5, 2.5, None]), "name": ["a", "b", "c"]})
    ledger = SegmentLedger(tmp_path, SITE, lambda: 1.0)
    manifest = seal(tmp_path, ledger, write_log(tmp_path, [table, table]))
    monkeypatch.undo()
    segment = sealer.segment_path(tmp_path, "t", 1)
    assert manifest.sha256 == hashlib.sha256(segment.read_bytes()).hexdigest()
    assert manifest.byte_size == segment.stat().st_size and manifest.row_count == 6
    assert manifest.schema_fingerprint == schemas.fingerprint(pq.read_schema(segment))


@pytest.mark.guarantee("G1")
def test_crash_before_the_ledger_commit_reseals_to_the_same_seq(tmp_path, monkeypatch):
    ledger = SegmentLedger(tmp_path, SITE, lambda: 1.0)
    path = write_log(tmp_path, [pa.table({"v": [1]})])

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ledger, "record_sealed", crash)
    with pytest.raises(KeyboardInterrupt):
        seal(tmp_path, ledger, path)
    monkeypatch.undo()
    assert path.exists() and sealer.segment_path(tmp_path, "t", 1).exists()
    manifest = seal(tmp_path, ledger, path)
    assert manifest.segment.seq == 1 and manifest.row_count == 1
    assert [s.manifest for s in ledger.pending_segments()] == [manifest]


def test_stray_tmp_files_are_removed(tmp_path):
    stray = tmp_path / "segments" / "t" / "000000000001.parquet.tmp"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half")
    sealer.remove_stray_tmp_files(tmp_path)
    assert not stray.exists()


def test_an_empty_log_makes_no_segment(tmp_path):
    ledger = SegmentLedger(tmp_path, SITE, lambda: 1.0)
    (tmp_path / "wal" / "t").mkdir(parents=True)
    empty = wal.log_path(tmp_path / "wal" / "t", 1)
    empty.touch()
    assert seal(tmp_path, ledger, empty) is None
    assert not empty.exists() and ledger.pending_segments() == []


def test_columns_get_the_encoding_that_suits_their_kind():
    import pyarrow as pa

    from edge_node.sealer import column_encodings

    schema = pa.schema([("venue", pa.string()), ("temp", pa.float64()), ("row_id", pa.int64()),
                        ("ts", pa.timestamp("ms")), ("ok", pa.bool_()), ("small", pa.int8())])
    dictionary, encodings = column_encodings(schema)
    assert dictionary == ["venue"]
    assert encodings == {"temp": "BYTE_STREAM_SPLIT", "row_id": "DELTA_BINARY_PACKED", "ts": "DELTA_BINARY_PACKED"}
