"""The exactly-once segment ledger (G2, G3, G8).

Every record holds its manifest as columns (``hub.ledger_schema``, which also upgrades a ``hub.db`` that an older hub
made); three kinds of record live here:

* **upload records** (``uploads``): the manifest and the *durable* offset of every upload not yet
  committed. The offset is written after the staging file's fsync and before the answer, so after a
  crash the record is the truth and anything past it in the staging file is garbage.
* **refused manifests** (``refused_manifests``): the last manifest per ``(site, table, seq)`` whose file
  turned out not to be what it said (``sync_protocol.segment_contents``), so that the same manifest is
  refused again at creation, before its bytes are sent again.
* **segments** (``segments``): one row per committed ``(site, table, seq)``, the primary key that
  makes a commit happen exactly once. A row moves ``committed -> merging -> merged`` as the merger
  puts it into the Delta table, or to ``quarantined`` when it cannot be merged.
* **the progress summary** (``hub.ledger_summary``): per (site, table) the counts, gaps and chain breaks that
  status shows, updated in the transaction of every commit and move, so that ``progress()`` never reads the
  segments themselves.

Merge batches (``merge_batches``) record which segments a Delta commit holds: the batch id is written
into that commit as a Delta application transaction (``app_id=MERGER_APP_ID, version=batch_id``), so
a restarted hub can tell whether a batch it planned reached the table (see ``hub/merger.py``). Segment and
batch states move only as ``sync_protocol.merge_states`` allows.

Handlers and the merger see only the ``SegmentLedger`` protocol; ``SqliteLedger`` is the embedded
implementation, and a PostgreSQL one can follow without touching them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sync_protocol.chain import ChainLink, check_link
from sync_protocol.identifiers import SegmentId, TableName
from sync_protocol.limits import MAX_SEQ
from sync_protocol.manifest import Manifest
from sync_protocol.merge_states import (
    AWAITING_MERGE,
    BATCH_START,
    MERGE_START,
    BatchState,
    MergeEvent,
    MergeState,
    MergeTally,
    merge_move,
    next_batch_state,
    next_merge_state,
)
from sync_protocol.receiver import SiteUploads

from .db import LedgerDatabase, upsert
from .ledger_schema import MANIFEST_COLUMNS, MANIFEST_SELECT, ensure_schema, manifest_from_row, manifest_values
from .ledger_summary import (
    TableProgress,
    merged_rows_since,
    read_progress,
    record_commit,
    record_merged,
    record_move,
)
from .upload_storage import StagedUpload, UploadLedger, segment_conflict

_STAGED = f"SELECT {MANIFEST_SELECT}, durable_offset, expires_at FROM uploads"
_COMMITTED = f"SELECT {MANIFEST_SELECT}, committed_at, state FROM segments"
_AWAITING_VALUES = sorted(state.value for state in AWAITING_MERGE)
_AWAITING = ", ".join("?" * len(_AWAITING_VALUES))
_KEY = ("site", "tbl", "seq")
_SAVE_STAGED = upsert("uploads", [*MANIFEST_COLUMNS, "durable_offset", "expires_at"], _KEY)
_SAVE_REFUSED = upsert("refused_manifests", [*MANIFEST_COLUMNS, "reason", "refused_at"], _KEY)


@dataclass(frozen=True)
class CommittedSegment:
    manifest: Manifest
    committed_at: float
    state: MergeState

    @property
    def segment(self) -> SegmentId:
        return self.manifest.segment


@dataclass(frozen=True)
class MergeBatch:
    batch_id: int
    table: TableName
    segments: tuple[CommittedSegment, ...]


@dataclass(frozen=True)
class QuarantineEntry:
    segment: SegmentId
    reason: str
    at: float


class SegmentLedger(UploadLedger, Protocol):
    """What the upload service (``UploadLedger``), the merger and status need from a ledger."""

    # merger
    def tables_pending(self) -> list[TableName]: ...
    def pending(self, table: TableName, limit: int) -> list[CommittedSegment]: ...
    def plan_batch(self, table: TableName, segments: list[SegmentId]) -> MergeBatch: ...
    def open_batches(self) -> list[MergeBatch]: ...
    def finish_batch(self, batch_id: int, delta_version: int | None, now: float) -> None: ...
    def abandon_batch(self, batch_id: int) -> None: ...
    def quarantine(self, segment: SegmentId, reason: str, now: float) -> None: ...
    def segment_state(self, segment: SegmentId) -> MergeState | None: ...
    # status
    def progress(self) -> list[TableProgress]: ...
    def quarantined(self) -> list[QuarantineEntry]: ...
    def release_quarantined(self, segment: SegmentId) -> None: ...
    def oldest_pending_commit(self) -> float | None: ...
    def rows_merged_since(self, since: float) -> dict[str, int]: ...


def _staged(row) -> StagedUpload:
    return StagedUpload(manifest_from_row(row), *row[-2:])


def _committed(row) -> CommittedSegment:
    return CommittedSegment(manifest_from_row(row), row[-2], MergeState(row[-1]))


class SqliteLedger:
    """``SegmentLedger`` on the hub's SQLite database."""

    def __init__(self, database: LedgerDatabase, clock: Callable[[], float]) -> None:
        self._database = database
        self._clock = clock
        ensure_schema(database)

    # -- uploads -------------------------------------------------------------------------------------

    def staged(self, segment: SegmentId) -> StagedUpload | None:
        row = self._database.db.execute(f"{_STAGED} WHERE site = ? AND tbl = ? AND seq = ?", _key(segment)).fetchone()
        return None if row is None else _staged(row)

    def all_staged(self) -> list[StagedUpload]:
        return [_staged(row) for row in self._database.db.execute(_STAGED).fetchall()]

    def save_staged(self, manifest: Manifest, offset: int, expires_at: float) -> None:
        # One upsert, decided by the upload's holder (``hub.uploads`` serialises each upload): no write lock.
        with self._database.write(serial=False) as db:
            db.execute(_SAVE_STAGED, [*manifest_values(manifest), offset, expires_at])

    def site_uploads(self, segment: SegmentId, now: float) -> SiteUploads:
        count, announced = self._database.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(byte_size), 0) FROM uploads WHERE site = ? AND expires_at > ?"
            " AND NOT (tbl = ? AND seq = ?)", [str(segment.site), now, str(segment.table), segment.seq]).fetchone()
        return SiteUploads(count, announced)

    def drop_staged(self, segment: SegmentId) -> None:
        with self._database.write(serial=False) as db:
            db.execute("DELETE FROM uploads WHERE site = ? AND tbl = ? AND seq = ?", _key(segment))

    def refuse(self, manifest: Manifest, reason: str, now: float) -> None:
        """Drop the upload and remember its manifest as refused, in one transaction. One row per seq: only the
        latest refused manifest of a seq is refused again (any other is a new upload)."""
        with self._database.write() as db:
            db.execute("DELETE FROM uploads WHERE site = ? AND tbl = ? AND seq = ?", _key(manifest.segment))
            db.execute(_SAVE_REFUSED, [*manifest_values(manifest), reason, now])

    def refusal(self, manifest: Manifest) -> str | None:
        """Why exactly this manifest was refused before, or None."""
        row = self._database.db.execute(
            f"SELECT {MANIFEST_SELECT}, reason FROM refused_manifests WHERE site = ? AND tbl = ? AND seq = ?",
            _key(manifest.segment),
        ).fetchone()
        return row[-1] if row is not None and manifest_from_row(row) == manifest else None

    # -- commit --------------------------------------------------------------------------------------

    def committed(self, segment: SegmentId) -> Manifest | None:
        row = self._database.db.execute(
            f"SELECT {MANIFEST_SELECT} FROM segments WHERE site = ? AND tbl = ? AND seq = ?", _key(segment)
        ).fetchone()
        return None if row is None else manifest_from_row(row)

    @staticmethod
    def _check_chain(db, manifest: Manifest) -> tuple[ChainLink | None, ChainLink | None]:
        """The one chain check: ``manifest`` against its committed neighbours, as ``db`` sees them; returns
        them (predecessor, successor)."""
        site, table, seq = _key(manifest.segment)
        found = {
            r[0]: ChainLink(r[1], r[2])
            for r in db.execute(
                "SELECT seq, sha256, prev_sha256 FROM segments WHERE site = ? AND tbl = ? AND seq IN (?, ?)",
                # past MAX_SEQ nothing is committed, and seq + 1 would not fit a 64-bit INTEGER (OverflowError)
                [site, table, seq - 1, min(seq + 1, MAX_SEQ)],
            ).fetchall()
        }
        neighbours = found.get(seq - 1), found.get(seq + 1)
        check_link(manifest, *neighbours)
        return neighbours

    def check_chain(self, manifest: Manifest) -> None:
        """Refuse (CHAIN_CONFLICT) a manifest that would splice the committed hash chain: the early answer at
        creation; ``commit`` runs the same check again inside its transaction (see ``UploadLedger.check_chain``)."""
        self._check_chain(self._database.db, manifest)

    def commit(self, manifest: Manifest, now: float) -> bool:
        """Commit exactly once. True if this call committed it, False if it already was (same digest);
        RemoteProtocolError if another digest holds the key or the chain would break."""
        with self._database.write() as db:
            row = db.execute(
                "SELECT sha256 FROM segments WHERE site = ? AND tbl = ? AND seq = ?", _key(manifest.segment)
            ).fetchone()
            if row is not None:
                if row[0] != manifest.sha256:
                    raise segment_conflict(manifest)
                db.execute("DELETE FROM uploads WHERE site = ? AND tbl = ? AND seq = ?", _key(manifest.segment))
                return False
            # the authoritative check: under the write lock, so no race passes it
            neighbours = self._check_chain(db, manifest)
            db.execute(
                f"INSERT INTO segments ({MANIFEST_SELECT}, committed_at, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [*manifest_values(manifest), now, MERGE_START.value],
            )
            record_commit(db, manifest, *neighbours)
            db.execute("DELETE FROM uploads WHERE site = ? AND tbl = ? AND seq = ?", _key(manifest.segment))
            db.execute("DELETE FROM refused_manifests WHERE site = ? AND tbl = ? AND seq = ?", _key(manifest.segment))
            return True

    # -- merger --------------------------------------------------------------------------------------

    def tables_pending(self) -> list[TableName]:
        rows = self._database.db.execute(
            "SELECT DISTINCT tbl FROM segments WHERE state = ? ORDER BY tbl", [MergeState.COMMITTED.value]
        ).fetchall()
        return [TableName(r[0]) for r in rows]

    def pending(self, table: TableName, limit: int) -> list[CommittedSegment]:
        rows = self._database.db.execute(
            f"{_COMMITTED} WHERE state = ? AND tbl = ? ORDER BY committed_at, site, seq LIMIT ?",
            [MergeState.COMMITTED.value, str(table), limit],
        ).fetchall()
        return [_committed(r) for r in rows]

    def plan_batch(self, table: TableName, segments: list[SegmentId]) -> MergeBatch:
        with self._database.write() as db:
            batch_id = db.execute(
                "INSERT INTO merge_batches (tbl, state) VALUES (?, ?) RETURNING batch_id",
                [str(table), BATCH_START.value]).fetchone()[0]
            for segment in segments:
                if segment.table != table:
                    raise ValueError(f"segment {segment} planned into a batch of table {table}")
                _move_segments(db, MergeEvent.PLANNED, "site = ? AND tbl = ? AND seq = ?", _key(segment),
                               batch_id=batch_id)
        return self._batch(batch_id)

    def _batch(self, batch_id: int) -> MergeBatch:
        db = self._database.db
        table = db.execute("SELECT tbl FROM merge_batches WHERE batch_id = ?", [batch_id]).fetchone()[0]
        rows = db.execute(f"{_COMMITTED} WHERE batch_id = ? ORDER BY site, seq", [batch_id]).fetchall()
        return MergeBatch(batch_id, TableName(table), tuple(_committed(r) for r in rows))

    def open_batches(self) -> list[MergeBatch]:
        rows = self._database.db.execute(
            "SELECT batch_id FROM merge_batches WHERE state = ? ORDER BY batch_id", [BatchState.OPEN.value]
        ).fetchall()
        return [self._batch(r[0]) for r in rows]

    def finish_batch(self, batch_id: int, delta_version: int | None, now: float) -> None:
        """The batch's Delta commit happened: the batch is done and its segments merged."""
        with self._database.write() as db:
            _move_batch(db, batch_id, MergeEvent.BATCH_COMMITTED)
            merged = _move_segments(db, MergeEvent.BATCH_COMMITTED, "batch_id = ?", [batch_id], merged_at=now,
                                    delta_version=delta_version)
            for site, _table, _state, _count, rows in merged:
                record_merged(db, site, rows, now)

    def abandon_batch(self, batch_id: int) -> None:
        """The batch never reached the table: its segments go back to waiting."""
        with self._database.write() as db:
            _move_batch(db, batch_id, MergeEvent.BATCH_ABANDONED)
            _move_segments(db, MergeEvent.BATCH_ABANDONED, "batch_id = ?", [batch_id], batch_id=None)

    def quarantine(self, segment: SegmentId, reason: str, now: float) -> None:
        self._move_one(segment, MergeEvent.REFUSED, reason, now)

    def release_quarantined(self, segment: SegmentId) -> None:
        """An operator fixed the cause: the segment waits to be merged again (``MergeEvent.RELEASED``)."""
        self._move_one(segment, MergeEvent.RELEASED, None, None)

    def _move_one(self, segment: SegmentId, event: MergeEvent, reason: str | None, at: float | None) -> None:
        """Move one segment by ``event`` (the transition table decides whether it may), out of any batch."""
        with self._database.write() as db:
            row = db.execute("SELECT state, row_count FROM segments WHERE site = ? AND tbl = ? AND seq = ?",
                             _key(segment)).fetchone()
            if row is None:
                raise KeyError(f"segment {segment} is not committed")
            source = MergeState(row[0])
            target = next_merge_state(source, event)
            db.execute("UPDATE segments SET state = ?, reason = ?, merged_at = ?, batch_id = NULL"
                       " WHERE site = ? AND tbl = ? AND seq = ?", [target.value, reason, at, *_key(segment)])
            record_move(db, str(segment.site), str(segment.table), MergeTally.moved(source, target, 1, row[1]))

    def segment_state(self, segment: SegmentId) -> MergeState | None:
        row = self._database.db.execute(
            "SELECT state FROM segments WHERE site = ? AND tbl = ? AND seq = ?", _key(segment)
        ).fetchone()
        return None if row is None else MergeState(row[0])

    # -- status --------------------------------------------------------------------------------------

    def progress(self) -> list[TableProgress]:
        """Every (site, table) from the progress summary: time in the number of pairs, gaps and chain breaks."""
        with self._database.snapshot() as db:
            return read_progress(db)

    def quarantined(self) -> list[QuarantineEntry]:
        rows = self._database.db.execute(
            "SELECT site, tbl, seq, reason, merged_at FROM segments WHERE state = ? ORDER BY site, tbl, seq",
            [MergeState.QUARANTINED.value],
        ).fetchall()
        return [QuarantineEntry(SegmentId.of(r[0], r[1], r[2]), r[3] or "", r[4] or 0.0) for r in rows]

    def rows_merged_since(self, since: float) -> dict[str, int]:
        """Rows per site that reached the merged tables at or after ``since``, the start of a UTC day (the fleet
        page's "today"), from the per-day tally: time in the sites, not in the segments merged."""
        return merged_rows_since(self._database.db, since)

    def oldest_pending_commit(self) -> float | None:
        row = self._database.db.execute(
            f"SELECT MIN(committed_at) FROM segments WHERE state IN ({_AWAITING})",
            _AWAITING_VALUES,
        ).fetchone()
        return row[0] if row else None



def _key(segment: SegmentId) -> list:
    return [str(segment.site), str(segment.table), segment.seq]


def _move_segments(db, event: MergeEvent, where: str, params: list, **columns) -> list[tuple]:
    """Move the segments ``where`` selects by ``event``, as ``MERGE_TRANSITIONS`` allows (segments in any other
    state are left alone), setting ``columns`` as well, and the progress summary with them. Returns what moved:
    (site, table, state it left, segments, rows) rows."""
    sources, target = merge_move(event)
    where = f"{where} AND state IN ({', '.join('?' * len(sources))})"
    params = [*params, *sorted(source.value for source in sources)]
    moving = db.execute(f"SELECT site, tbl, state, COUNT(*), SUM(row_count) FROM segments WHERE {where}"
                        " GROUP BY site, tbl, state", params).fetchall()
    assignments = "".join(f", {name} = ?" for name in columns)
    db.execute(f"UPDATE segments SET state = ?{assignments} WHERE {where}", [target.value, *columns.values(), *params])
    for site, table, state, count, rows in moving:
        record_move(db, site, table, MergeTally.moved(MergeState(state), target, count, rows))
    return moving


def _move_batch(db, batch_id: int, event: MergeEvent) -> None:
    """Move one batch by ``event``; ``LocalProtocolError`` if ``BATCH_TRANSITIONS`` does not allow it."""
    row = db.execute("SELECT state FROM merge_batches WHERE batch_id = ?", [batch_id]).fetchone()
    if row is None:
        raise KeyError(f"no merge batch {batch_id}")
    target = next_batch_state(BatchState(row[0]), event)
    db.execute("UPDATE merge_batches SET state = ? WHERE batch_id = ?", [target.value, batch_id])
