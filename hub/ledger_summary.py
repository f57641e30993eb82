"""What status reads of the ledger, kept up to date as segments commit and move, so that reading it costs time in
the number of (site, table) pairs, gaps and chain breaks, never in the number of segments ever committed (G8).

Four tables (``hub.ledger_schema``) hold it, written in the same transaction as the change they follow:

* ``table_progress``: per (site, table) the counts of ``sync_protocol.merge_states.MergeTally`` and the highest
  committed seq. A commit adds one committed segment; a state move adds the difference it makes (``record_move``).
* ``chain_gaps``: the missing seq ranges below the highest, keyed by their first seq. A commit finds the gap its
  seq falls in with one ordered lookup on that key and replaces it (``sync_protocol.chain.gaps_after_commit``).
* ``chain_breaks``: seqs whose ``prev-sha256`` does not match their predecessor, found at commit from the two
  neighbours the chain check reads anyway (``breaks_at_commit``). Segments are never deleted, so breaks only grow.
* ``rows_merged_daily``: rows merged per UTC day and site, added to as each merge batch finishes (merged is
  final), for the fleet report's "rows merged today".

``recompute_progress`` is the full recomputation from every segment (what status did before this summary): the
upgrade of a ``hub.db`` made before it fills the summary from it once (``rebuild``), and the tests and
``bench/fleet_status.py`` hold the summary to it. The SQL here runs unchanged on SQLite 3.40 and PostgreSQL 15.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sync_protocol.chain import (
    ChainLink,
    ChainStatus,
    breaks_at_commit,
    chain_from_gaps,
    chain_from_runs,
    gaps_after_commit,
)
from sync_protocol.errors import LocalProtocolError
from sync_protocol.limits import FIRST_SEQ, GENESIS_DIGEST
from sync_protocol.manifest import Manifest
from sync_protocol.merge_states import AWAITING_MERGE, MERGE_START, MergeState, MergeTally


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


SUMMARY_TABLES = ("table_progress", "chain_gaps", "chain_breaks", "rows_merged_daily")
"""The summary's tables (``hub.ledger_schema.TABLES`` defines them)."""

DAY_SECONDS = 86_400
"""Rows merged are tallied per UTC day (the hub serves ships in every time zone, so "today" is the hub's UTC day)."""

TALLY_COLUMNS = tuple(field.name for field in fields(MergeTally))
"""``table_progress``'s count columns: named as the ``MergeTally`` fields, in their order."""

_ADD_COMMIT = (
    f"INSERT INTO table_progress (site, tbl, {', '.join(TALLY_COLUMNS)}, highest_seq)"
    f" VALUES ({', '.join('?' * (len(TALLY_COLUMNS) + 3))}) ON CONFLICT (site, tbl) DO UPDATE SET "
    + ", ".join(f"{column} = table_progress.{column} + excluded.{column}" for column in TALLY_COLUMNS)
    + ", highest_seq = excluded.highest_seq"
)
_ADD_MOVE = (f"UPDATE table_progress SET {', '.join(f'{column} = {column} + ?' for column in TALLY_COLUMNS)}"
             " WHERE site = ? AND tbl = ?")
_INSERT_GAP = "INSERT INTO chain_gaps (site, tbl, first_missing, last_missing) VALUES (?, ?, ?, ?)"
_INSERT_BREAK = "INSERT INTO chain_breaks (site, tbl, seq) VALUES (?, ?, ?) ON CONFLICT (site, tbl, seq) DO NOTHING"
_ADD_MERGED = ("INSERT INTO rows_merged_daily (day, site, rows_merged) VALUES (?, ?, ?) ON CONFLICT (day, site)"
               " DO UPDATE SET rows_merged = rows_merged_daily.rows_merged + excluded.rows_merged")


def record_commit(db, manifest: Manifest, predecessor: ChainLink | None, successor: ChainLink | None) -> None:
    """The summary after committing ``manifest``, given the committed neighbours the chain check read. Point and
    ordered lookups on primary keys only. It reads, then writes, the (site, table)'s row and gaps: the caller's
    transaction must keep other commits of that (site, table) out (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: lock
    the ``table_progress`` row, ``SELECT ... FOR UPDATE``, or run serializable)."""
    site, table, seq = str(manifest.segment.site), str(manifest.segment.table), manifest.segment.seq
    row = db.execute("SELECT highest_seq FROM table_progress WHERE site = ? AND tbl = ?", [site, table]).fetchone()
    highest = 0 if row is None else row[0]
    below = None
    if seq <= highest:
        below = db.execute("SELECT first_missing, last_missing FROM chain_gaps WHERE site = ? AND tbl = ?"
                           " AND first_missing <= ? ORDER BY first_missing DESC LIMIT 1", [site, table, seq]).fetchone()
    change = gaps_after_commit(seq, highest, None if below is None else tuple(below))
    if change.removed is not None:
        db.execute("DELETE FROM chain_gaps WHERE site = ? AND tbl = ? AND first_missing = ?",
                   [site, table, change.removed[0]])
    for first, last in change.added:
        db.execute(_INSERT_GAP, [site, table, first, last])
    for broken in breaks_at_commit(manifest, predecessor, successor):
        db.execute(_INSERT_BREAK, [site, table, broken])
    db.execute(_ADD_COMMIT, [site, table, *MergeTally.of(MERGE_START, 1, manifest.row_count).values(), change.highest])


def record_move(db, site: str, table: str, change: MergeTally) -> None:
    """Add ``change`` (``MergeTally.moved``) to the counts of a (site, table), inside the move's transaction."""
    if not any(change.values()):
        return
    if db.execute(_ADD_MOVE, [*change.values(), site, table]).rowcount != 1:
        raise LocalProtocolError(f"no progress summary for {site}/{table}, whose segments moved",
                                 op="updating the progress summary",
                                 hint="a segment was written without ledger.commit; rebuild the summary")


def record_merged(db, site: str, rows: int, at: float) -> None:
    """``rows`` of ``site`` reached the merged tables at ``at``, inside the transaction that marks them merged."""
    db.execute(_ADD_MERGED, [utc_day(at), site, rows])


def merged_rows_since(db, since: float) -> dict[str, int]:
    """Rows per site merged at or after ``since``, which must start a UTC day: time in the sites and days."""
    if since % DAY_SECONDS:
        raise LocalProtocolError(f"rows merged are tallied per UTC day; {since} does not start one",
                                 op="reading rows merged", hint="pass the start of a UTC day (now - now % DAY_SECONDS)")
    found = db.execute("SELECT site, SUM(rows_merged) FROM rows_merged_daily WHERE day >= ? GROUP BY site",
                       [utc_day(since)]).fetchall()
    return {site: rows for site, rows in found}


def utc_day(at: float) -> int:
    return int(at // DAY_SECONDS)


def read_progress(db) -> list[TableProgress]:
    """Every (site, table) from the summary, ordered by site and table. The three statements must see the same
    commits, or a gap could lie above the highest seq read: ``db`` is a snapshot (``Database.snapshot``; on
    PostgreSQL, a ``REPEATABLE READ`` transaction)."""
    gaps: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for site, table, first, last in db.execute(
            "SELECT site, tbl, first_missing, last_missing FROM chain_gaps ORDER BY site, tbl, first_missing"):
        gaps.setdefault((site, table), []).append((first, last))
    breaks: dict[tuple[str, str], list[int]] = {}
    for site, table, seq in db.execute("SELECT site, tbl, seq FROM chain_breaks ORDER BY site, tbl, seq"):
        breaks.setdefault((site, table), []).append(seq)
    rows = db.execute(f"SELECT site, tbl, {', '.join(TALLY_COLUMNS)}, highest_seq FROM table_progress"
                      " ORDER BY site, tbl").fetchall()
    return [TableProgress(site, table, *counts,
                          chain_from_gaps(highest, gaps.get((site, table), []), breaks.get((site, table), [])))
            for site, table, *counts, highest in rows]


def rebuild(db) -> None:
    """Fill the summary from every committed segment, inside the caller's transaction (the start-up upgrade of
    a ``hub.db`` made before the summary existed): linear in the segments, once."""
    for name in SUMMARY_TABLES:
        db.execute(f"DELETE FROM {name}")
    for progress in recompute_progress(db):
        key = [progress.site, progress.table]
        counts = [progress.segments_committed, progress.rows_committed, progress.rows_merged,
                  progress.segments_pending, progress.quarantined]
        db.execute(_ADD_COMMIT, [*key, *counts, progress.chain.highest])
        for first, last in progress.chain.gaps:
            db.execute(_INSERT_GAP, [*key, first, last])
        for seq in progress.chain.breaks:
            db.execute(_INSERT_BREAK, [*key, seq])
    merged: dict[tuple[int, str], int] = {}
    for site, merged_at, rows in db.execute("SELECT site, merged_at, row_count FROM segments WHERE state = ?",
                                            [MergeState.MERGED.value]):
        key = (utc_day(merged_at), site)
        merged[key] = merged.get(key, 0) + rows
    for key, rows in merged.items():  # one statement each: it runs once, and both databases take it
        db.execute(_ADD_MERGED, [*key, rows])


# -- the full recomputation ------------------------------------------------------------------------------

_AWAITING_VALUES = sorted(state.value for state in AWAITING_MERGE)


def recompute_progress(db) -> list[TableProgress]:
    """Every (site, table) counted again from all its segments: time in the number of segments ever committed."""
    summary = db.execute(
        "SELECT site, tbl, COUNT(*), SUM(row_count),"
        " SUM(CASE WHEN state = ? THEN row_count ELSE 0 END),"
        f" SUM(CASE WHEN state IN ({', '.join('?' * len(_AWAITING_VALUES))}) THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN state = ? THEN 1 ELSE 0 END)"
        " FROM segments GROUP BY site, tbl ORDER BY site, tbl",
        [MergeState.MERGED.value, *_AWAITING_VALUES, MergeState.QUARANTINED.value],
    ).fetchall()
    runs, breaks = _chain_runs(db), _chain_breaks(db)
    return [
        TableProgress(site, table, count, rows or 0, merged or 0, pending or 0, quarantined or 0,
                      chain_from_runs(runs.get((site, table), []), breaks.get((site, table), [])))
        for site, table, count, rows, merged, pending, quarantined in summary
    ]


def recompute_rows_merged_since(db, since: float) -> dict[str, int]:
    """Rows per site merged at or after ``since``, summed again over every merged segment."""
    rows = db.execute("SELECT site, SUM(row_count) FROM segments WHERE state = ? AND merged_at >= ? GROUP BY site",
                      [MergeState.MERGED.value, since]).fetchall()
    return {r[0]: r[1] or 0 for r in rows}


def _chain_runs(db) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Runs of consecutive committed seqs per (site, table) ("gaps and islands": within a run, seq minus its
    rank is constant). One pass over the primary key; the answer has one row per run, whatever the seqs."""
    runs: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for site, table, first, last in db.execute(
        "SELECT site, tbl, MIN(seq), MAX(seq) FROM (SELECT site, tbl, seq,"
        " seq - ROW_NUMBER() OVER (PARTITION BY site, tbl ORDER BY seq) AS island FROM segments) AS numbered"
        " GROUP BY site, tbl, island ORDER BY site, tbl, MIN(seq)"
    ).fetchall():
        runs.setdefault((site, table), []).append((first, last))
    return runs


def _chain_breaks(db) -> dict[tuple[str, str], list[int]]:
    """Seqs whose prev-sha256 is not the digest of the committed seq before them (or genesis, for seq 1)."""
    breaks: dict[tuple[str, str], list[int]] = {}
    for site, table, seq in db.execute(
        "SELECT site, tbl, seq FROM (SELECT site, tbl, seq, prev_sha256,"
        " LAG(seq) OVER w AS before_seq, LAG(sha256) OVER w AS before_sha256 FROM segments"
        " WINDOW w AS (PARTITION BY site, tbl ORDER BY seq)) AS linked"
        " WHERE (seq = ? AND prev_sha256 != ?) OR (before_seq = seq - 1 AND prev_sha256 != before_sha256)"
        " ORDER BY site, tbl, seq", [FIRST_SEQ, GENESIS_DIGEST],
    ).fetchall():
        breaks.setdefault((site, table), []).append(seq)
    return breaks
