"""The write-ahead log: where a write becomes durable before it is acknowledged (G1).

Theory of operation. Each table has a directory of log files, ``wal/<table>/<log-no>.log``; only the
newest one of a table is open for appends, all older ones are *closed* and wait for the sealer, which
turns each closed log into exactly one Parquet segment and then deletes it. A log holds records of one
schema (a write with another schema rolls to a new log), so a log maps to one segment.

A record is a 28-byte header -- magic, payload length, row count, write time, CRC-32 over header and
payload -- followed by one Arrow IPC stream (the rows of one write). Appends are group-committed: the
caller hands over every write that arrived while the previous fsync ran, they are appended in order and
made durable by one ``fdatasync`` per touched log, and only then are the writers answered.

A crash can leave the last record of a log half-written (*torn*), and a power cut can leave it ending in
zeros (the file's new size reached the disk, its last sectors did not). Recovery keeps every whole record
before it and truncates the rest; a record that fails its CRC with more data behind it -- another record's
header -- is *corruption* (a disk fault, not a crash): the bytes from it on are moved to ``quarantine/`` for an
operator and an error is logged, since whatever follows cannot be trusted to be framed correctly.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as pa_ipc

from sync_protocol.limits import MAX_SEGMENT_ROWS

from .durable import fsync_dir, make_dirs

log = logging.getLogger(__name__)

MAGIC = b"HWR1"
HEADER = struct.Struct("<4sQIQ")  # magic, payload length, rows, written-at ms
CRC = struct.Struct("<I")
HEADER_BYTES = HEADER.size + CRC.size
LOG_SUFFIX = ".log"


@dataclass(frozen=True)
class Record:
    offset: int
    rows: int
    written_ms: int
    payload: bytes


@dataclass(frozen=True)
class LogScan:
    """What reading a log found: the whole records, and where and why it stopped."""

    path: Path
    records: int
    rows: int
    first_ms: int | None
    good_bytes: int
    file_bytes: int
    problem: str  # "" (clean), "torn" (crash tail) or "corrupt" (bad record followed by more data)


def log_number(path: Path) -> int:
    return int(path.stem)


def log_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}{LOG_SUFFIX}"


def list_logs(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.suffix == LOG_SUFFIX and p.stem.isdigit()), key=log_number)


def encode_record(payload: bytes, rows: int, written_ms: int) -> bytes:
    header = HEADER.pack(MAGIC, len(payload), rows, written_ms)
    return header + CRC.pack(zlib.crc32(payload, zlib.crc32(header))) + payload


def iter_records(path: Path, scan: list[LogScan] | None = None, *, payloads: bool = True) -> Iterator[Record]:
    """Whole records of a log, in order, stopping at the first torn or corrupt one. If ``scan`` is given,
    a LogScan describing the file is appended to it once the iteration ends."""
    records = rows = 0
    first_ms = None
    offset = 0
    problem = ""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        while offset < size:
            head = file.read(HEADER_BYTES)
            if len(head) < HEADER_BYTES:
                problem = "torn"
                break
            magic, length, count, written_ms = HEADER.unpack_from(head)
            end = offset + HEADER_BYTES + length
            if magic != MAGIC or end > size:
                # A length pointing past the end is what a crash mid-append leaves; a bad magic is not.
                problem = "torn" if magic == MAGIC else "corrupt"
                break
            payload = file.read(length)
            (crc,) = CRC.unpack_from(head, HEADER.size)
            if zlib.crc32(payload, zlib.crc32(head[: HEADER.size])) != crc:
                problem = "torn" if end == size else "corrupt"
                break
            records, rows, offset = records + 1, rows + count, end
            first_ms = written_ms if first_ms is None else first_ms
            yield Record(end - HEADER_BYTES - length, count, written_ms, payload if payloads else b"")
    if problem == "corrupt" and (offset == 0 and records == 0 and size <= HEADER_BYTES or _zero_tail(path, offset)):
        problem = "torn"
    if scan is not None:
        scan.append(LogScan(path, records, rows, first_ms, offset, size, problem))


def _zero_tail(path: Path, offset: int) -> bool:
    """Whether the bytes from ``offset`` on are what a power cut leaves, not a disk fault: they end in zeros
    (sectors the filesystem had allocated, the data never written) and hold no later record header, so
    nothing whole is behind them to lose."""
    with open(path, "rb") as file:
        file.seek(offset)
        rest = file.read()
    return rest.endswith(b"\0") and MAGIC not in rest[1:]


def scan_log(path: Path) -> LogScan:
    found: list[LogScan] = []
    for _ in iter_records(path, found, payloads=False):
        pass
    return found[0]


def read_record(record: Record) -> pa.Table:
    return pa_ipc.open_stream(pa.py_buffer(record.payload)).read_all()


def repair_log(scan: LogScan, quarantine: Path) -> None:
    """Make a log end at its last whole record (see the module docstring for torn vs corrupt)."""
    if scan.problem == "corrupt":
        make_dirs(quarantine)
        target = quarantine / f"{scan.path.parent.name}-{scan.path.name}-from-{scan.good_bytes}"
        with open(scan.path, "rb") as source, open(target, "wb") as sink:
            source.seek(scan.good_bytes)
            shutil.copyfileobj(source, sink)
            sink.flush()
            os.fsync(sink.fileno())
        log.error(
            "write-ahead log %s has a corrupt record at byte %d: kept %d whole records, moved the remaining %d "
            "bytes to %s. This is a disk fault, not a crash: check the disk (smartctl, dmesg) and keep the "
            "quarantined file for support", scan.path, scan.good_bytes, scan.records,
            scan.file_bytes - scan.good_bytes, target)
    elif scan.problem == "torn":
        log.warning("write-ahead log %s ends in a torn record (a crash mid-write, never acknowledged): "
                    "truncated %d bytes, kept %d whole records", scan.path, scan.file_bytes - scan.good_bytes,
                    scan.records)
    with open(scan.path, "r+b") as file:
        file.truncate(scan.good_bytes)
        os.fsync(file.fileno())


@dataclass
class OpenLog:
    table: str
    number: int
    path: Path
    fd: int
    schema: pa.Schema
    size: int = 0


@dataclass
class PendingLog:
    """Rows in a log that is not sealed yet, for status and the quota."""

    rows: int = 0
    size: int = 0
    first_ms: int | None = None


@dataclass(frozen=True)
class Append:
    table: str
    schema: pa.Schema
    payload: bytes
    rows: int


class WriteAheadLog:
    """All tables' logs under ``root``. ``append_group`` and ``roll*`` run on one writer thread; the
    sealer calls ``closed_logs`` and ``forget`` from its own thread, hence the lock."""

    def __init__(self, root: Path, clock: Callable[[], float], seal_bytes: int) -> None:
        self.root = root
        self._clock = clock
        self.seal_bytes = seal_bytes  # may change while the node runs (managed settings)
        self._lock = threading.Lock()
        self._open: dict[str, OpenLog] = {}
        self._next: dict[str, int] = {}
        self.pending: dict[str, dict[Path, PendingLog]] = {}
        self.has_closed_logs = False  # set when a log closes; the sealer clears it before a round

    def recover(self, sealed_upto: Callable[[str], int], quarantine: Path) -> list[LogScan]:
        """Before any append: drop logs already sealed, repair the rest, and return their scans."""
        make_dirs(self.root)  # durable: an entry lost at a power cut would take every log below it along
        scans = []
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            table, upto = directory.name, sealed_upto(directory.name)
            self._next[table] = upto + 1
            for path in list_logs(directory):
                self._next[table] = max(self._next[table], log_number(path) + 1)
                if log_number(path) <= upto:
                    path.unlink()  # sealed just before a crash, not yet deleted
                    continue
                scan = scan_log(path)
                if scan.problem:
                    repair_log(scan, quarantine)
                if scan.records == 0:
                    path.unlink()
                    continue
                scans.append(scan)
                self.pending.setdefault(table, {})[path] = PendingLog(scan.rows, scan.good_bytes, scan.first_ms)
        return scans

    def append_group(self, group: list[Append]) -> bool:
        """Append every write, then make them all durable. Raises OSError if any could not be.
        Returns whether a log was closed (rolled), i.e. whether the sealer has work."""
        touched: dict[int, OpenLog] = {}
        new_dirs: set[Path] = set()
        written_ms = int(self._clock() * 1000)
        try:
            for item in group:
                current = self._open.get(item.table)
                # A log never holds more rows than the hub takes in one segment: a write that would cross
                # MAX_SEGMENT_ROWS starts the next log (a write is never larger than that).
                full = (current is not None
                        and self.pending[item.table][current.path].rows + item.rows > MAX_SEGMENT_ROWS)
                if current is None or full or not current.schema.equals(item.schema):
                    if current is not None and current.fd in touched:
                        # This group wrote to the log about to be closed: make that durable first (closing does
                        # not, and the fd number is free for the next log once closed).
                        os.fdatasync(current.fd)
                        del touched[current.fd]
                    current = self._start_log(item.table, item.schema, new_dirs)
                touched[current.fd] = current
                self._write(current, encode_record(item.payload, item.rows, written_ms))
                stats = self.pending[item.table][current.path]
                stats.rows += item.rows
                stats.size = current.size
                stats.first_ms = written_ms if stats.first_ms is None else stats.first_ms
            for fd in touched:
                os.fdatasync(fd)
            for directory in new_dirs:
                fsync_dir(directory)
        except OSError:
            # After a failed write or fsync the file's state is unknown (fsyncgate): never append to it again.
            for current in touched.values():
                self.roll(current.table)
            raise
        for current in touched.values():
            if current.size >= self.seal_bytes:
                self.roll(current.table)
        return self.has_closed_logs
    def _write(self, current: OpenLog, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(current.fd, view):]
        except OSError:
            os.ftruncate(current.fd, current.size)  # no half record in front of later ones
            raise
        current.size += len(data)

    def _start_log(self, table: str, schema: pa.Schema, new_dirs: set[Path]) -> OpenLog:
        directory = self.root / table
        if not directory.exists():
            directory.mkdir(parents=True)
            new_dirs.add(self.root)
        with self._lock:
            self._close(table)
            number = self._next.get(table, 1)
            self._next[table] = number + 1
            path = log_path(directory, number)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            current = OpenLog(table, number, path, fd, schema)
            self._open[table] = current
            self.pending.setdefault(table, {})[path] = PendingLog()
        new_dirs.add(directory)
        return current

    def _close(self, table: str) -> None:
        current = self._open.pop(table, None)
        if current is not None:
            os.close(current.fd)
            self.has_closed_logs = True

    def roll(self, table: str) -> None:
        """Close the table's open log so the sealer may take it."""
        with self._lock:
            self._close(table)

    def roll_older_than(self, max_age_seconds: float | Callable[[str], float]) -> list[str]:
        """Close open logs whose oldest record is at least ``max_age_seconds`` old (one age for every
        table, or a table's own); returns their tables."""
        now_ms = int(self._clock() * 1000)
        rolled = []
        for table, current in list(self._open.items()):
            first = self.pending[table][current.path].first_ms
            age = max_age_seconds(table) if callable(max_age_seconds) else max_age_seconds
            if first is not None and now_ms - first >= age * 1000:
                self.roll(table)
                rolled.append(table)
        return rolled

    def closed_logs(self, table: str) -> list[Path]:
        with self._lock:
            current = self._open.get(table)
            logs = list_logs(self.root / table)
            return [p for p in logs if current is None or log_number(p) < current.number]

    def open_tables(self) -> list[str]:
        """Tables with an open log that holds rows: the ones a sealing decision is about."""
        with self._lock:
            return [table for table, current in self._open.items() if self.pending[table][current.path].rows]

    def tables(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def forget(self, table: str, path: Path) -> None:
        """The sealer made ``path`` a segment and deleted it."""
        with self._lock:
            self.pending.get(table, {}).pop(path, None)

    def pending_summary(self, table: str) -> PendingLog:
        with self._lock:
            logs = list(self.pending.get(table, {}).values())
        firsts = [p.first_ms for p in logs if p.first_ms is not None]
        return PendingLog(sum(p.rows for p in logs), sum(p.size for p in logs), min(firsts) if firsts else None)

    def close(self) -> None:
        with self._lock:
            for table in list(self._open):
                self._close(table)
