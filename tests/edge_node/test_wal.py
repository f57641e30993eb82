"""The write-ahead log: group append, torn tails, corrupt records, and recovery after a seal (G1)."""

import os
from pathlib import Path

import pyarrow as pa
import pytest

from edge_node import wal
from edge_node.node import _ipc_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def append(log: wal.WriteAheadLog, table: str, rows: pa.Table) -> None:
    log.append_group([wal.Append(table, rows.schema, _ipc_bytes(rows), rows.num_rows)])


def rows_in(path: Path) -> list[int]:
    return [v for r in wal.iter_records(path) for v in wal.read_record(r).column("v").to_pylist()]


@pytest.fixture
def log(tmp_path):
    writer = wal.WriteAheadLog(tmp_path / "wal", Clock(), seal_bytes=1 << 20)
    writer.recover(lambda table: 0, tmp_path / "quarantine")
    yield writer
    writer.close()


def test_group_is_appended_in_order_and_counted(log, tmp_path):
    group = [wal.Append("t", pa.schema([("v", pa.int64())]), _ipc_bytes(pa.table({"v": [i, i]})), 2) for i in range(5)]
    log.append_group(group)
    (path,) = wal.list_logs(tmp_path / "wal" / "t")
    assert rows_in(path) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert log.pending_summary("t").rows == 10
    assert log.pending_summary("t").first_ms == 1_000_000


def test_group_shares_one_fdatasync_per_log(log, monkeypatch):
    calls = []
    monkeypatch.setattr(wal.os, "fdatasync", lambda fd: calls.append(fd))
    group = [wal.Append("t", pa.schema([("v", pa.int64())]), _ipc_bytes(pa.table({"v": [i]})), 1) for i in range(50)]
    log.append_group(group)
    assert len(calls) == 1


def test_a_new_schema_rolls_to_a_new_log(log, tmp_path):
    append(log, "t", pa.table({"v": [1]}))
    append(log, "t", pa.table({"v": [2], "w": ["x"]}))
    logs = wal.list_logs(tmp_path / "wal" / "t")
    assert len(logs) == 2
    assert log.closed_logs("t") == logs[:1]


@pytest.mark.guarantee("G1")
def test_a_log_closed_within_a_group_is_made_durable_before_it_is_closed(log, tmp_path, monkeypatch):
    """A group whose second write starts a new log (a new schema) must fdatasync the first log before closing
    it: the close frees the fd number for the new log, so a sync after the loop would miss the first log."""
    (tmp_path / "wal" / "t").mkdir(parents=True, exist_ok=True)  # only the logs' fds are closed in the group
    synced, closed = [], []
    real_sync, real_close = wal.os.fdatasync, wal.os.close
    monkeypatch.setattr(wal.os, "fdatasync", lambda fd: (synced.append(fd), real_sync(fd)))
    monkeypatch.setattr(wal.os, "close", lambda fd: (closed.append((fd, list(synced))), real_close(fd)))
    one, two = pa.table({"v": [1]}), pa.table({"v": [2], "w": ["x"]})
    log.append_group([wal.Append("t", one.schema, _ipc_bytes(one), 1), wal.Append("t", two.schema, _ipc_bytes(two), 1)])
    (first_fd, synced_before_close), *_ = closed
    assert first_fd in synced_before_close
    assert [rows_in(path) for path in wal.list_logs(tmp_path / "wal" / "t")] == [[1], [2]]


def test_a_log_holds_no_more_rows_than_a_segment_may(log, tmp_path, monkeypatch):
    monkeypatch.setattr(wal, "MAX_SEGMENT_ROWS", 5)
    for value in range(4):
        append(log, "t", pa.table({"v": [value, value]}))  # 2 rows each: a third write would make 6
    assert [rows_in(path) for path in wal.list_logs(tmp_path / "wal" / "t")] == [[0, 0, 1, 1], [2, 2, 3, 3]]


def test_size_rolls_the_log(tmp_path):
    writer = wal.WriteAheadLog(tmp_path / "wal", Clock(), seal_bytes=100)
    append(writer, "t", pa.table({"v": [1]}))
    assert len(writer.closed_logs("t")) == 1  # over 100 bytes at once: closed for the sealer
    writer.close()


def test_age_rolls_the_log(tmp_path):
    clock = Clock()
    writer = wal.WriteAheadLog(tmp_path / "wal", clock, seal_bytes=1 << 20)
    append(writer, "t", pa.table({"v": [1]}))
    assert writer.roll_older_than(60) == []
    clock.now += 61
    assert writer.roll_older_than(60) == ["t"]
    assert len(writer.closed_logs("t")) == 1
    writer.close()


@pytest.mark.guarantee("G1")
def test_torn_tail_is_truncated_and_whole_records_kept(log, tmp_path, caplog):
    for i in range(3):
        append(log, "t", pa.table({"v": [i]}))
    log.close()
    (path,) = wal.list_logs(tmp_path / "wal" / "t")
    whole = path.stat().st_size
    with open(path, "ab") as file:
        file.write(wal.encode_record(b"x" * 500, 1, 0)[:200])  # a crash mid-append
    recovered = wal.WriteAheadLog(tmp_path / "wal", Clock(), 1 << 20)
    (scan,) = recovered.recover(lambda t: 0, tmp_path / "quarantine")
    assert scan.records == 3 and path.stat().st_size == whole
    assert rows_in(path) == [0, 1, 2]
    assert "torn record" in caplog.text
    assert not (tmp_path / "quarantine").exists()


@pytest.mark.guarantee("G1")
def test_torn_header_is_truncated(log, tmp_path):
    append(log, "t", pa.table({"v": [7]}))
    log.close()
    (path,) = wal.list_logs(tmp_path / "wal" / "t")
    with open(path, "ab") as file:
        file.write(b"HWR")
    assert wal.scan_log(path).problem == "torn"


@pytest.mark.guarantee("G1")
@pytest.mark.parametrize("tail", [bytes(700), wal.encode_record(b"x" * 900, 1, 0)[:10] + bytes(690)],
                         ids=["zeros", "header-then-zeros"])
def test_a_tail_a_power_cut_zero_filled_is_torn_not_corrupt(log, tmp_path, caplog, tail):
    """A filesystem may keep a file's new size and lose its last sectors: zeros, where the record was."""
    for i in range(2):
        append(log, "t", pa.table({"v": [i]}))
    log.close()
    (path,) = wal.list_logs(tmp_path / "wal" / "t")
    with open(path, "ab") as file:
        file.write(tail)
    recovered = wal.WriteAheadLog(tmp_path / "wal", Clock(), 1 << 20)
    (scan,) = recovered.recover(lambda t: 0, tmp_path / "quarantine")
    assert scan.problem == "torn" and rows_in(path) == [0, 1]
    assert "corrupt" not in caplog.text and not (tmp_path / "quarantine").exists()


@pytest.mark.guarantee("G1")
def test_corrupt_record_keeps_the_prefix_and_quarantines_the_rest(log, tmp_path, caplog):
    for i in range(3):
        append(log, "t", pa.table({"v": [i]}))
    log.close()
    (path,) = wal.list_logs(tmp_path / "wal" / "t")
    data = bytearray(path.read_bytes())
    record = len(data) // 3
    data[record + wal.HEADER_BYTES + 10] ^= 0xFF  # a flipped bit in the second record's payload
    path.write_bytes(bytes(data))
    recovered = wal.WriteAheadLog(tmp_path / "wal", Clock(), 1 << 20)
    (scan,) = recovered.recover(lambda t: 0, tmp_path / "quarantine")
    assert scan.problem == "corrupt" and scan.records == 1
    assert rows_in(path) == [0]
    (kept,) = (tmp_path / "quarantine").iterdir()
    assert kept.stat().st_size == len(data) - record
    assert "corrupt record" in caplog.text and "check the disk" in caplog.text


def test_recovery_deletes_logs_already_sealed_and_empty_ones(log, tmp_path):
    append(log, "t", pa.table({"v": [1]}))
    log.roll("t")
    append(log, "t", pa.table({"v": [2]}))
    log.close()
    first, second = wal.list_logs(tmp_path / "wal" / "t")
    empty = wal.log_path(tmp_path / "wal" / "t", 9)
    empty.touch()
    recovered = wal.WriteAheadLog(tmp_path / "wal", Clock(), 1 << 20)
    scans = recovered.recover(lambda t: wal.log_number(first), tmp_path / "quarantine")
    assert [s.path for s in scans] == [second]
    assert not first.exists() and not empty.exists()
    append(recovered, "t", pa.table({"v": [3]}))
    assert wal.log_number(wal.list_logs(tmp_path / "wal" / "t")[-1]) == 10  # numbers never reused downwards
    recovered.close()


@pytest.mark.guarantee("G1")
def test_failed_write_leaves_no_half_record(log, tmp_path, monkeypatch):
    append(log, "t", pa.table({"v": [1]}))
    real_write = os.write

    def short_then_fail(fd, data):
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wal.os, "write", short_then_fail)
    with pytest.raises(OSError):
        append(log, "t", pa.table({"v": [2]}))
    monkeypatch.undo()
    (path,) = wal.list_logs(tmp_path / "wal" / "t")
    assert wal.scan_log(path).problem == ""
    assert rows_in(path) == [1]
    assert log.closed_logs("t") == [path]  # never appended to again after a failure


@pytest.mark.guarantee("G1")
def test_a_table_directory_is_durable_even_when_its_first_group_fails(log, tmp_path, monkeypatch):
    """A full disk fails the first group of a new table after its directory was made; later groups find the
    directory there. Its entry must have been synced when it was made, or a power cut takes it with every row
    acknowledged after the disk had room again (found by the power-loss harness)."""
    import errno

    synced_dirs = []
    real_fsync_dir = wal.fsync_dir
    monkeypatch.setattr("edge_node.durable.fsync_dir", lambda d: (synced_dirs.append(d), real_fsync_dir(d)))
    real_write = wal.os.write

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal.os, "write", full_disk)
    one = pa.table({"v": [1]})
    with pytest.raises(OSError):
        log.append_group([wal.Append("t", one.schema, _ipc_bytes(one), 1)])
    monkeypatch.setattr(wal.os, "write", real_write)
    assert (tmp_path / "wal" / "t").is_dir() and tmp_path / "wal" in synced_dirs
