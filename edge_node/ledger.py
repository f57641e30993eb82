"""The segment ledger: the edge's record of tables, their schemas and every sealed segment (G1, G8).

One SQLite file (WAL mode, ``synchronous=FULL``) through sqlite-utils. The ledger is the commit point
of sealing: a segment exists once its row is committed, and the log it came from (``sealed_log_no``)
is deleted only after that, so a crash between the two is repaired at start-up without a duplicate.

Every state change goes through ``sync_protocol.segment_states.next_segment_state``: collecting a
segment the hub never acknowledged is an error, not a bug waiting to lose data.

Per-table counters (acked rows, bytes, segments) live in the ``tables`` row and are updated in the same
transaction as the segments they count, so status and start-up never scan acked or collected segments:
queries touch only the ``(state, ...)`` index ranges of pending ones.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import sqlite_utils

from sync_protocol import Manifest, SegmentId, SiteId, TableName
from sync_protocol.limits import FIRST_SEQ, GENESIS_DIGEST
from sync_protocol.segment_states import SegmentEvent, SegmentState, next_segment_state

from . import schemas
from .config import DEFAULT_PRIORITY

LEDGER_FILE = "ledger.db"
BUSY_TIMEOUT_MS = 10_000
"""How long a reader (``harbour edge status`` next to a running node) waits for the writer's lock."""

PENDING_STATES = (SegmentState.SEALED.value, SegmentState.UPLOADING.value)
_MANIFEST_COLUMNS = "table_name, seq, row_count, byte_size, sha256, schema_fingerprint, prev_sha256, priority, " \
                    "created_at_ms"


@dataclass(frozen=True)
class StoredSegment:
    manifest: Manifest
    path: str  # relative to the data directory
    state: SegmentState


@dataclass(frozen=True)
class TableCounts:
    table: str
    priority: int
    pending_segments: int
    pending_rows: int
    pending_bytes: int
    oldest_pending_ms: int | None
    parked_segments: int
    acked_segments: int
    acked_rows: int
    last_acked_at: float | None


class SegmentLedger:
    def __init__(self, data_dir: Path, site: SiteId | None, clock: Callable[[], float]) -> None:
        """``site`` None: a reader (``harbour edge status``) that learns the site from the ledger."""
        self._clock = clock
        self._lock = threading.Lock()  # the node uses it from the event loop and the sealer thread
        conn = sqlite3.connect(data_dir / LEDGER_FILE, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db = sqlite_utils.Database(conn)
        self.db.enable_wal()
        conn.execute("PRAGMA synchronous = FULL")  # measured: FULL costs ~15% over NORMAL and keeps acks
        self._create()
        self._site = site or self.stored_site()

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[None]:
        """One SQLite transaction under the thread lock. The connection is in autocommit mode (so that
        reads see the latest commit), hence the explicit BEGIN: without it a crash between two statements
        of one change would leave them half applied."""
        with self._lock:
            self.db.execute(f"BEGIN {mode}")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def stored_site(self) -> SiteId | None:
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'site'").fetchone()
        return SiteId(row[0]) if row else None

    def _create(self) -> None:
        self.db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
        self.db["tables"].create({
            "name": str, "schema": bytes, "priority": int, "sealed_log_no": int, "last_seq": int,
            "last_sha256": str, "acked_rows": int, "acked_bytes": int, "acked_segments": int,
            "acked_kept_bytes": int, "last_acked_at": float,
        }, pk="name", if_not_exists=True)
        self.db["segments"].create({
            "table_name": str, "seq": int, "state": str, "path": str, "row_count": int, "byte_size": int,
            "sha256": str, "schema_fingerprint": str, "prev_sha256": str, "priority": int,
            "created_at_ms": int, "log_no": int, "acked_at": float, "park_reason": str, "first_written_ms": int,
        }, pk=("table_name", "seq"), if_not_exists=True)
        if "first_written_ms" not in self.db["segments"].columns_dict:  # a ledger from before it was kept
            self.db["segments"].add_column("first_written_ms", int)
        self.db["segments"].create_index(["state", "priority", "seq"], if_not_exists=True)
        self.db["segments"].create_index(["state", "acked_at"], if_not_exists=True)

    def claim_site(self) -> None:
        """Bind the data directory to one site; starting it as another ship would corrupt both chains."""
        assert self._site is not None, "claim_site needs the site"
        with self._transaction():
            row = self.db.execute("SELECT value FROM meta WHERE key = 'site'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('site', ?)", [str(self._site)])
            elif row[0] != str(self._site):
                raise RuntimeError(
                    f"this data directory belongs to site {row[0]!r}, not {self._site!r}: start it with "
                    f"--site {row[0]}, or give site {self._site!r} a data directory of its own")

    def close(self) -> None:
        self.db.conn.close()

    # -- tables -----------------------------------------------------------------------------------

    def table_schemas(self) -> dict[str, pa.Schema]:
        with self._lock:
            rows = self.db.execute("SELECT name, schema FROM tables").fetchall()
        return {name: schemas.deserialize(blob) for name, blob in rows}

    def sealed_log_upto(self, table: str) -> int:
        with self._lock:
            row = self.db.execute("SELECT sealed_log_no FROM tables WHERE name = ?", [table]).fetchone()
        return row[0] if row else 0

    def chain_head(self, table: str) -> tuple[int, str]:
        """The seq the next segment of ``table`` gets, and the digest it must point back to."""
        with self._lock:
            row = self.db.execute("SELECT last_seq, last_sha256 FROM tables WHERE name = ?", [table]).fetchone()
        return (row[0] + 1, row[1]) if row and row[0] else (FIRST_SEQ, GENESIS_DIGEST)

    # -- sealing ----------------------------------------------------------------------------------

    def record_sealed(self, manifest: Manifest, path: str, log_no: int, table_schema: pa.Schema,
                      first_written_ms: int | None = None) -> None:
        """Commit a sealed segment and the log it replaces, in one transaction. ``first_written_ms``: when its
        first row was acknowledged (so "oldest pending" is the age of the data, not of the seal)."""
        table, seq = str(manifest.segment.table), manifest.segment.seq
        state = next_segment_state(SegmentState.OPEN, SegmentEvent.SEAL)
        with self._transaction():
            self.db.execute(
                f"INSERT INTO segments ({_MANIFEST_COLUMNS}, state, path, log_no, first_written_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [table, seq, manifest.row_count, manifest.byte_size, manifest.sha256, manifest.schema_fingerprint,
                 manifest.prev_sha256, manifest.priority, manifest.created_at_ms, state.value, path, log_no,
                 first_written_ms])
            self.db.execute(
                "INSERT INTO tables (name, schema, priority, sealed_log_no, last_seq, last_sha256, acked_rows, "
                "acked_bytes, acked_segments, acked_kept_bytes) VALUES (?,?,?,?,?,?,0,0,0,0) "
                "ON CONFLICT(name) DO UPDATE SET "
                "schema = excluded.schema, sealed_log_no = excluded.sealed_log_no, last_seq = excluded.last_seq, "
                "last_sha256 = excluded.last_sha256",
                [table, schemas.serialize(table_schema), manifest.priority, log_no, seq, manifest.sha256])

    # -- what the sync agent (issue 5) uses ---------------------------------------------------------

    def pending_segments(self, limit: int = 100) -> list[StoredSegment]:
        """Segments to upload, most urgent first: priority class, then seq (then table, for a stable order)."""
        with self._lock:
            rows = self.db.execute(
                f"SELECT {_MANIFEST_COLUMNS}, path, state FROM segments WHERE state IN (?, ?) "
                "ORDER BY priority, seq, table_name LIMIT ?", [*PENDING_STATES, limit]).fetchall()
        return [self._stored(row) for row in rows]

    def pending_priorities(self) -> set[int]:
        """Priority classes that still have a segment to upload (the ``(state, priority, seq)`` index)."""
        with self._lock:
            rows = self.db.execute("SELECT DISTINCT priority FROM segments WHERE state IN (?, ?)",
                                   list(PENDING_STATES)).fetchall()
        return {row[0] for row in rows}

    def segment(self, segment: SegmentId) -> StoredSegment | None:
        with self._lock:
            row = self.db.execute(
                f"SELECT {_MANIFEST_COLUMNS}, path, state FROM segments WHERE table_name = ? AND seq = ?",
                [str(segment.table), segment.seq]).fetchone()
        return self._stored(row) if row else None

    def _stored(self, row: tuple) -> StoredSegment:
        table, seq, rows, size, sha, fingerprint, prev, priority, created, path, state = row
        segment = SegmentId(self._site, TableName(table), seq)
        manifest = Manifest(segment, rows, size, sha, fingerprint, prev, priority, created)
        return StoredSegment(manifest, path, SegmentState(state))

    def _move(self, segment: SegmentId, event: SegmentEvent, extra_sql: str = "", extra: tuple = ()) -> SegmentState:
        key = [str(segment.table), segment.seq]
        row = self.db.execute("SELECT state FROM segments WHERE table_name = ? AND seq = ?", key).fetchone()
        if row is None:
            raise KeyError(f"segment {segment} is not in the ledger")
        target = next_segment_state(SegmentState(row[0]), event)
        self.db.execute(f"UPDATE segments SET state = ?{extra_sql} WHERE table_name = ? AND seq = ?",
                        [target.value, *extra, *key])
        return target

    def mark_uploading(self, segment: SegmentId) -> None:
        with self._transaction():
            self._move(segment, SegmentEvent.START_UPLOAD)

    def mark_parked(self, segment: SegmentId, reason: str = "") -> None:
        """The hub refused ``segment`` for good; keep it, and why, until an operator releases it."""
        with self._transaction():
            self._move(segment, SegmentEvent.HUB_REJECTED, ", park_reason = ?", (reason,))

    def release(self, segment: SegmentId) -> None:
        """An operator fixed the cause (e.g. a rotated token, a schema fixed at the hub): send it again."""
        with self._transaction():
            self._move(segment, SegmentEvent.RELEASE, ", park_reason = NULL")

    def parked(self) -> list[tuple[SegmentId, str]]:
        """Every parked segment with the hub's reason, by table and seq."""
        with self._lock:
            rows = self.db.execute("SELECT table_name, seq, park_reason FROM segments WHERE state = ? "
                                   "ORDER BY table_name, seq", [SegmentState.PARKED.value]).fetchall()
        return [(SegmentId(self._site, TableName(t), seq), reason or "") for t, seq, reason in rows]

    def mark_acked(self, segment: SegmentId) -> None:
        """The hub durably committed ``segment``: count it, and start its retention clock."""
        now = self._clock()
        with self._transaction():
            self._move(segment, SegmentEvent.HUB_COMMITTED, ", acked_at = ?", (now,))
            self.db.execute(
                "UPDATE tables SET acked_rows = acked_rows + s.row_count, acked_bytes = acked_bytes + s.byte_size, "
                "acked_segments = acked_segments + 1, acked_kept_bytes = acked_kept_bytes + s.byte_size, "
                "last_acked_at = ? FROM (SELECT row_count, byte_size "
                "FROM segments WHERE table_name = ? AND seq = ?) AS s WHERE name = ?",
                [now, str(segment.table), segment.seq, str(segment.table)])

    def collectable(self, acked_before: float, limit: int = 1000) -> list[StoredSegment]:
        """Acked segments acknowledged before ``acked_before``, oldest first."""
        with self._lock:
            rows = self.db.execute(
                f"SELECT {_MANIFEST_COLUMNS}, path, state FROM segments WHERE state = ? AND acked_at <= ? "
                "ORDER BY acked_at LIMIT ?", [SegmentState.ACKED.value, acked_before, limit]).fetchall()
        return [self._stored(row) for row in rows]

    def mark_collected(self, segment: SegmentId) -> None:
        with self._transaction():
            self._move(segment, SegmentEvent.RETENTION_EXPIRED)
            self.db.execute(
                "UPDATE tables SET acked_kept_bytes = acked_kept_bytes - s.byte_size FROM (SELECT byte_size "
                "FROM segments WHERE table_name = ? AND seq = ?) AS s WHERE name = ?",
                [str(segment.table), segment.seq, str(segment.table)])

    # -- status and quota ---------------------------------------------------------------------------

    def stored_bytes(self) -> tuple[int, int, int]:
        """(bytes of segment files still on disk, of those not acked, count not acked). Unacked ones are
        summed through the state index; acked ones come from the per-table counter, since there may be
        a retention period's worth of them."""
        with self._transaction("DEFERRED"):
            count, size = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(byte_size), 0) FROM segments WHERE state IN (?, ?, ?)",
                [*PENDING_STATES, SegmentState.PARKED.value]).fetchone()
            (acked,) = self.db.execute("SELECT COALESCE(SUM(acked_kept_bytes), 0) FROM tables").fetchone()
        return size + acked, size, count

    def segment_files(self) -> tuple[dict[str, list[str]], dict[str, int]]:
        """Segment files on disk per table (relative paths, seq order), and each table's sealed_log_no."""
        with self._transaction("DEFERRED"):  # one snapshot for both reads, see query.py
            rows = self.db.execute(
                "SELECT table_name, path FROM segments WHERE state IN (?, ?, ?, ?) ORDER BY table_name, seq",
                [*PENDING_STATES, SegmentState.PARKED.value, SegmentState.ACKED.value]).fetchall()
            upto = dict(self.db.execute("SELECT name, sealed_log_no FROM tables").fetchall())
        files: dict[str, list[str]] = {}
        for table, path in rows:
            files.setdefault(table, []).append(path)
        return files, upto

    def table_counts(self) -> list[TableCounts]:
        with self._transaction("DEFERRED"):
            pending = {row[0]: row[1:] for row in self.db.execute(
                "SELECT table_name, COUNT(*), SUM(row_count), SUM(byte_size),"
                " MIN(COALESCE(first_written_ms, created_at_ms)) FROM segments "
                "WHERE state IN (?, ?) GROUP BY table_name", list(PENDING_STATES))}
            parked = dict(self.db.execute(
                "SELECT table_name, COUNT(*) FROM segments WHERE state = ? GROUP BY table_name",
                [SegmentState.PARKED.value]).fetchall())
            tables = self.db.execute(
                "SELECT name, priority, acked_segments, acked_rows, last_acked_at FROM tables ORDER BY name").fetchall()
        result = []
        for name, priority, acked_segments, acked_rows, last_acked in tables:
            count, rows, size, oldest = pending.get(name, (0, 0, 0, None))
            result.append(TableCounts(name, priority if priority is not None else DEFAULT_PRIORITY, count,
                                      rows or 0, size or 0, oldest, parked.get(name, 0), acked_segments,
                                      acked_rows, last_acked))
        return result

