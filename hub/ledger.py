"""The exactly-once segment ledger (G2, G3, G8).

Two kinds of record live here:

* **upload records** (``uploads``): the manifest and the *durable* offset of every upload not yet
  committed. The offset is written after the staging file's fsync and before the answer, so after a
  crash the record is the truth and anything past it in the staging file is garbage.
* **refused manifests** (``refused_manifests``): the last manifest per ``(site, table, seq)`` whose file
  turned out not to be what it said (``sync_protocol.segment_contents``), so that the same manifest is
  refused again at creation, before its bytes are sent again.
* **segments** (``segments``): one row per committed ``(site, table, seq)``, the primary key that
  makes a commit happen exactly once. A row moves ``committed -> merging -> merged`` as the merger
  puts it into the Delta table, or to ``quarantined`` when it cannot be merged.

Merge batches (``merge_batches``) record which segments a Delta commit holds: the batch id is written
into that commit as a Delta application transaction (``app_id=MERGER_APP_ID, version=batch_id``), so
a restarted hub can tell whether a batch it planned reached the table (see ``hub/merger.py``).

Handlers and the merger see only the ``SegmentLedger`` protocol; ``SqliteLedger`` is the embedded
implementation, and a PostgreSQL one can follow without touching them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sync_protocol.chain import ChainLink, ChainStatus, chain_from_runs, check_link
from sync_protocol.identifiers import SegmentId, SiteId, TableName
from sync_protocol.limits import FIRST_SEQ, GENESIS_DIGEST
from sync_protocol.manifest import Manifest

from .db import Database
from .upload_storage import StagedUpload, UploadLedger, segment_conflict

COMMITTED, MERGING, MERGED, QUARANTINED = "committed", "merging", "merged", "quarantined"


@dataclass(frozen=True)
class CommittedSegment:
    manifest: Manifest
    committed_at: float
    state: str

    @property
    def segment(self) -> SegmentId:
        return self.manifest.segment


@dataclass(frozen=True)
class MergeBatch:
    batch_id: int
    table: TableName
    segments: tuple[CommittedSegment, ...]


@dataclass(frozen=True)
class TableProgress:
    """One (site, table) as status and the fleet API show it."""

    site: str
    table: str
    segments_committed: int
    rows_committed: int
    rows_merged: int
    segments_pending: int
    quarantined: int
    chain: ChainStatus


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
    def segment_state(self, segment: SegmentId) -> str | None: ...
    # status
    def progress(self) -> list[TableProgress]: ...
    def quarantined(self) -> list[QuarantineEntry]: ...
    def oldest_pending_commit(self) -> float | None: ...
    def rows_merged_since(self, since: float) -> dict[str, int]: ...


def _manifest(text: str) -> Manifest:
    return Manifest.from_upload_metadata(text)


class SqliteLedger:
    """``SegmentLedger`` on the hub's SQLite database."""

    def __init__(self, database: Database, clock: Callable[[], float]) -> None:
        self._database = database
        self._clock = clock
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        db = self._database.db
        db.execute(
            "CREATE TABLE IF NOT EXISTS uploads (site TEXT NOT NULL, tbl TEXT NOT NULL, seq INTEGER NOT NULL,"
            " metadata TEXT NOT NULL, durable_offset INTEGER NOT NULL, expires_at REAL NOT NULL,"
            " PRIMARY KEY (site, tbl, seq))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS segments (site TEXT NOT NULL, tbl TEXT NOT NULL, seq INTEGER NOT NULL,"
            " sha256 TEXT NOT NULL, prev_sha256 TEXT NOT NULL, row_count INTEGER NOT NULL,"
            " byte_size INTEGER NOT NULL, metadata TEXT NOT NULL, committed_at REAL NOT NULL,"
            " state TEXT NOT NULL, batch_id INTEGER, merged_at REAL, delta_version INTEGER, reason TEXT,"
            " PRIMARY KEY (site, tbl, seq))"
        )
        db.execute("CREATE INDEX IF NOT EXISTS segments_state ON segments(state, tbl, committed_at)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS refused_manifests (site TEXT NOT NULL, tbl TEXT NOT NULL,"
            " seq INTEGER NOT NULL, metadata TEXT NOT NULL, reason TEXT NOT NULL, refused_at REAL NOT NULL,"
            " PRIMARY KEY (site, tbl, seq))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS merge_batches (batch_id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " tbl TEXT NOT NULL, state TEXT NOT NULL)"
        )

    # -- uploads -------------------------------------------------------------------------------------

    def staged(self, segment: SegmentId) -> StagedUpload | None:
        row = self._database.db.execute(
            "SELECT metadata, durable_offset, expires_at FROM uploads WHERE site = ? AND tbl = ? AND seq = ?",
            _key(segment),
        ).fetchone()
        return None if row is None else StagedUpload(_manifest(row[0]), row[1], row[2])

    def all_staged(self) -> list[StagedUpload]:
        rows = self._database.db.execute("SELECT metadata, durable_offset, expires_at FROM uploads").fetchall()
        return [StagedUpload(_manifest(r[0]), r[1], r[2]) for r in rows]

    def save_staged(self, manifest: Manifest, offset: int, expires_at: float) -> None:
        with self._database.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (site, tbl, seq, metadata, durable_offset, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [*_key(manifest.segment), manifest.to_upload_metadata(), offset, expires_at],
            )

    def drop_staged(self, segment: SegmentId) -> None:
        with self._database.write() as db:
            db.execute("DELETE FROM uploads WHERE site = ? AND tbl = ? AND seq = ?", _key(segment))

    def refuse(self, manifest: Manifest, reason: str, now: float) -> None:
        """Drop the upload and remember its manifest as refused, in one transaction. One row per seq: only the
        latest refused manifest of a seq is refused again (any other is a new upload)."""
        with self._database.write() as db:
            db.execute("DELETE FROM uploads WHERE site = ? AND tbl = ? AND seq = ?", _key(manifest.segment))
            db.execute(
                "INSERT OR REPLACE INTO refused_manifests (site, tbl, seq, metadata, reason, refused_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", [*_key(manifest.segment), manifest.to_upload_metadata(), reason, now],
            )

    def refusal(self, manifest: Manifest) -> str | None:
        """Why exactly this manifest was refused before, or None."""
        row = self._database.db.execute(
            "SELECT reason FROM refused_manifests WHERE site = ? AND tbl = ? AND seq = ? AND metadata = ?",
            [*_key(manifest.segment), manifest.to_upload_metadata()],
        ).fetchone()
        return None if row is None else row[0]

    # -- commit --------------------------------------------------------------------------------------

    def committed(self, segment: SegmentId) -> Manifest | None:
        row = self._database.db.execute(
            "SELECT metadata FROM segments WHERE site = ? AND tbl = ? AND seq = ?", _key(segment)
        ).fetchone()
        return None if row is None else _manifest(row[0])

    def _neighbours(self, db, manifest: Manifest) -> tuple[ChainLink | None, ChainLink | None]:
        site, table, seq = _key(manifest.segment)
        found = {
            r[0]: ChainLink(r[1], r[2])
            for r in db.execute(
                "SELECT seq, sha256, prev_sha256 FROM segments WHERE site = ? AND tbl = ? AND seq IN (?, ?)",
                [site, table, seq - 1, seq + 1],
            ).fetchall()
        }
        return found.get(seq - 1), found.get(seq + 1)

    def check_chain(self, manifest: Manifest) -> None:
        """Refuse (CHAIN_CONFLICT) a manifest that would splice the committed hash chain."""
        check_link(manifest, *self._neighbours(self._database.db, manifest))

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
            check_link(manifest, *self._neighbours(db, manifest))
            db.execute(
                "INSERT INTO segments (site, tbl, seq, sha256, prev_sha256, row_count, byte_size, metadata,"
                " committed_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [*_key(manifest.segment), manifest.sha256, manifest.prev_sha256, manifest.row_count,
                 manifest.byte_size, manifest.to_upload_metadata(), now, COMMITTED],
            )
            db.execute("DELETE FROM uploads WHERE site = ? AND tbl = ? AND seq = ?", _key(manifest.segment))
            db.execute("DELETE FROM refused_manifests WHERE site = ? AND tbl = ? AND seq = ?", _key(manifest.segment))
            return True

    # -- merger --------------------------------------------------------------------------------------

    def tables_pending(self) -> list[TableName]:
        rows = self._database.db.execute(
            "SELECT DISTINCT tbl FROM segments WHERE state = ? ORDER BY tbl", [COMMITTED]
        ).fetchall()
        return [TableName(r[0]) for r in rows]

    def pending(self, table: TableName, limit: int) -> list[CommittedSegment]:
        rows = self._database.db.execute(
            "SELECT metadata, committed_at, state FROM segments WHERE state = ? AND tbl = ?"
            " ORDER BY committed_at, site, seq LIMIT ?",
            [COMMITTED, str(table), limit],
        ).fetchall()
        return [CommittedSegment(_manifest(r[0]), r[1], r[2]) for r in rows]

    def plan_batch(self, table: TableName, segments: list[SegmentId]) -> MergeBatch:
        with self._database.write() as db:
            batch_id = db.execute(
                "INSERT INTO merge_batches (tbl, state) VALUES (?, 'open')", [str(table)]
            ).lastrowid
            for segment in segments:
                if segment.table != table:
                    raise ValueError(f"segment {segment} planned into a batch of table {table}")
                db.execute(
                    "UPDATE segments SET state = ?, batch_id = ? WHERE site = ? AND tbl = ? AND seq = ? AND state = ?",
                    [MERGING, batch_id, *_key(segment), COMMITTED],
                )
        return self._batch(batch_id)

    def _batch(self, batch_id: int) -> MergeBatch:
        db = self._database.db
        table = db.execute("SELECT tbl FROM merge_batches WHERE batch_id = ?", [batch_id]).fetchone()[0]
        rows = db.execute(
            "SELECT metadata, committed_at, state FROM segments WHERE batch_id = ? ORDER BY site, seq", [batch_id]
        ).fetchall()
        return MergeBatch(batch_id, TableName(table), tuple(CommittedSegment(_manifest(r[0]), r[1], r[2])
                                                             for r in rows))

    def open_batches(self) -> list[MergeBatch]:
        rows = self._database.db.execute(
            "SELECT batch_id FROM merge_batches WHERE state = 'open' ORDER BY batch_id"
        ).fetchall()
        return [self._batch(r[0]) for r in rows]

    def finish_batch(self, batch_id: int, delta_version: int | None, now: float) -> None:
        with self._database.write() as db:
            db.execute(
                "UPDATE segments SET state = ?, merged_at = ?, delta_version = ? WHERE batch_id = ? AND state = ?",
                [MERGED, now, delta_version, batch_id, MERGING],
            )
            db.execute("UPDATE merge_batches SET state = 'done' WHERE batch_id = ?", [batch_id])

    def abandon_batch(self, batch_id: int) -> None:
        """The batch never reached the table: its segments go back to waiting."""
        with self._database.write() as db:
            db.execute(
                "UPDATE segments SET state = ?, batch_id = NULL WHERE batch_id = ? AND state = ?",
                [COMMITTED, batch_id, MERGING],
            )
            db.execute("UPDATE merge_batches SET state = 'abandoned' WHERE batch_id = ?", [batch_id])

    def quarantine(self, segment: SegmentId, reason: str, now: float) -> None:
        with self._database.write() as db:
            db.execute(
                "UPDATE segments SET state = ?, reason = ?, merged_at = ?, batch_id = NULL"
                " WHERE site = ? AND tbl = ? AND seq = ?",
                [QUARANTINED, reason, now, *_key(segment)],
            )

    def segment_state(self, segment: SegmentId) -> str | None:
        row = self._database.db.execute(
            "SELECT state FROM segments WHERE site = ? AND tbl = ? AND seq = ?", _key(segment)
        ).fetchone()
        return None if row is None else row[0]

    # -- status --------------------------------------------------------------------------------------

    def progress(self) -> list[TableProgress]:
        db = self._database.db
        summary = db.execute(
            "SELECT site, tbl, COUNT(*), SUM(row_count),"
            " SUM(CASE WHEN state = ? THEN row_count ELSE 0 END),"
            " SUM(CASE WHEN state IN (?, ?) THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN state = ? THEN 1 ELSE 0 END)"
            " FROM segments GROUP BY site, tbl ORDER BY site, tbl",
            [MERGED, COMMITTED, MERGING, QUARANTINED],
        ).fetchall()
        runs, breaks = self._chain_runs(db), self._chain_breaks(db)
        return [
            TableProgress(site, table, count, rows or 0, merged or 0, pending or 0, quarantined or 0,
                          chain_from_runs(runs.get((site, table), []), breaks.get((site, table), [])))
            for site, table, count, rows, merged, pending, quarantined in summary
        ]

    @staticmethod
    def _chain_runs(db) -> dict[tuple[str, str], list[tuple[int, int]]]:
        """Runs of consecutive committed seqs per (site, table) ("gaps and islands": within a run, seq minus its
        rank is constant). One pass over the primary key; the answer has one row per run, whatever the seqs."""
        runs: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for site, table, first, last in db.execute(
            "SELECT site, tbl, MIN(seq), MAX(seq) FROM (SELECT site, tbl, seq,"
            " seq - ROW_NUMBER() OVER (PARTITION BY site, tbl ORDER BY seq) AS island FROM segments)"
            " GROUP BY site, tbl, island ORDER BY site, tbl, MIN(seq)"
        ).fetchall():
            runs.setdefault((site, table), []).append((first, last))
        return runs

    @staticmethod
    def _chain_breaks(db) -> dict[tuple[str, str], list[int]]:
        """Seqs whose prev-sha256 is not the digest of the committed seq before them (or genesis, for seq 1)."""
        breaks: dict[tuple[str, str], list[int]] = {}
        for site, table, seq in db.execute(
            "SELECT site, tbl, seq FROM (SELECT site, tbl, seq, prev_sha256,"
            " LAG(seq) OVER w AS before_seq, LAG(sha256) OVER w AS before_sha256 FROM segments"
            " WINDOW w AS (PARTITION BY site, tbl ORDER BY seq))"
            " WHERE (seq = ? AND prev_sha256 != ?) OR (before_seq = seq - 1 AND prev_sha256 != before_sha256)"
            " ORDER BY site, tbl, seq", [FIRST_SEQ, GENESIS_DIGEST],
        ).fetchall():
            breaks.setdefault((site, table), []).append(seq)
        return breaks

    def quarantined(self) -> list[QuarantineEntry]:
        rows = self._database.db.execute(
            "SELECT site, tbl, seq, reason, merged_at FROM segments WHERE state = ? ORDER BY site, tbl, seq",
            [QUARANTINED],
        ).fetchall()
        return [QuarantineEntry(SegmentId.of(r[0], r[1], r[2]), r[3] or "", r[4] or 0.0) for r in rows]

    def rows_merged_since(self, since: float) -> dict[str, int]:
        """Rows per site that reached the merged tables at or after ``since`` (the fleet page's "today")."""
        rows = self._database.db.execute(
            "SELECT site, SUM(row_count) FROM segments WHERE state = ? AND merged_at >= ? GROUP BY site",
            [MERGED, since],
        ).fetchall()
        return {r[0]: r[1] or 0 for r in rows}

    def oldest_pending_commit(self) -> float | None:
        row = self._database.db.execute(
            "SELECT MIN(committed_at) FROM segments WHERE state IN (?, ?)", [COMMITTED, MERGING]
        ).fetchone()
        return row[0] if row else None

    def sites_seen(self) -> list[SiteId]:
        rows = self._database.db.execute("SELECT DISTINCT site FROM segments ORDER BY site").fetchall()
        return [SiteId(r[0]) for r in rows]


def _key(segment: SegmentId) -> list:
    return [str(segment.site), str(segment.table), segment.seq]
