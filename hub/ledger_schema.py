"""The hub ledger's tables, and the in-place upgrade of a ``hub.db`` made by an older hub.

Every record that holds a manifest (``uploads``, ``segments``, ``refused_manifests``) holds it as columns, one
per ``Manifest`` field (``MANIFEST_COLUMNS``), and a ``Manifest`` is built from them on read. The tus
``Upload-Metadata`` text is the manifest's wire form only: it is decoded once, at creation.

Hubs before this change kept the manifest as that text in a ``metadata`` column. ``ensure_schema`` upgrades
such a table at start-up: it decodes each row's text once, rebuilds the table with the columns (the table
rebuild SQLite's documentation gives for changes ``ALTER TABLE`` cannot make) and drops the text. It is one
transaction, so a crash half-way leaves the old table as it was; it runs only where a ``metadata`` column is
left, so running it again (or from a second process that lost the race for the write lock) changes nothing.

Hubs before the progress summary (``hub.ledger_summary.SUMMARY_TABLES``) had none: ``ensure_schema`` creates its
tables and fills them from the committed segments once, in the same transaction, when one of them is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sync_protocol.errors import RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.manifest import Manifest

from .db import Database, LedgerDatabase
from .ledger_summary import SUMMARY_TABLES, TALLY_COLUMNS, rebuild

MANIFEST_COLUMNS = (
    "site", "tbl", "seq", "row_count", "byte_size", "sha256", "schema_fingerprint", "prev_sha256", "priority",
    "created_at_ms",
)
"""A manifest as columns, in the order ``manifest_values`` gives and ``manifest_from_row`` takes them."""

MANIFEST_SELECT = ", ".join(MANIFEST_COLUMNS)

_MANIFEST_DDL = (
    "site TEXT NOT NULL, tbl TEXT NOT NULL, seq INTEGER NOT NULL, row_count INTEGER NOT NULL,"
    " byte_size INTEGER NOT NULL, sha256 TEXT NOT NULL, schema_fingerprint TEXT NOT NULL,"
    " prev_sha256 TEXT NOT NULL, priority INTEGER NOT NULL, created_at_ms INTEGER NOT NULL"
)

TABLES = {
    "uploads": f"{_MANIFEST_DDL}, durable_offset INTEGER NOT NULL, expires_at REAL NOT NULL,"
               " PRIMARY KEY (site, tbl, seq)",
    "segments": f"{_MANIFEST_DDL}, committed_at REAL NOT NULL, state TEXT NOT NULL, batch_id INTEGER, merged_at REAL,"
                " delta_version INTEGER, reason TEXT, PRIMARY KEY (site, tbl, seq)",
    "refused_manifests": f"{_MANIFEST_DDL}, reason TEXT NOT NULL, refused_at REAL NOT NULL,"
                         " PRIMARY KEY (site, tbl, seq)",
    "merge_batches": "batch_id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, state TEXT NOT NULL",
    # the progress summary (hub.ledger_summary); ensure_schema fills it from the segments of an older hub.db
    "table_progress": "site TEXT NOT NULL, tbl TEXT NOT NULL, "
                      + "".join(f"{column} INTEGER NOT NULL, " for column in TALLY_COLUMNS)
                      + "highest_seq INTEGER NOT NULL, PRIMARY KEY (site, tbl)",
    "chain_gaps": "site TEXT NOT NULL, tbl TEXT NOT NULL, first_missing INTEGER NOT NULL,"
                  " last_missing INTEGER NOT NULL, PRIMARY KEY (site, tbl, first_missing)",
    "chain_breaks": "site TEXT NOT NULL, tbl TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (site, tbl, seq)",
    "rows_merged_daily": "day INTEGER NOT NULL, site TEXT NOT NULL, rows_merged INTEGER NOT NULL,"
                         " PRIMARY KEY (day, site)",
}

INDEXES = {
    "segments_state": "CREATE INDEX IF NOT EXISTS segments_state ON segments(state, tbl, committed_at)",
    # finish_batch / abandon_batch move a batch's segments by batch_id: without it, each scans every segment
    "segments_batch": "CREATE INDEX IF NOT EXISTS segments_batch ON segments(batch_id)",
}

OLD_MANIFEST_COLUMN = "metadata"
"""Where hubs before the manifest columns kept the manifest, as tus ``Upload-Metadata`` text."""


def manifest_values(manifest: Manifest) -> list:
    """``manifest`` as the values of ``MANIFEST_COLUMNS``."""
    segment = manifest.segment
    return [str(segment.site), str(segment.table), segment.seq, manifest.row_count, manifest.byte_size,
            manifest.sha256, manifest.schema_fingerprint, manifest.prev_sha256, manifest.priority,
            manifest.created_at_ms]


def manifest_from_row(row: Sequence) -> Manifest:
    """The manifest in the first ``len(MANIFEST_COLUMNS)`` values of ``row`` (validated, as every Manifest is)."""
    site, table, seq, row_count, byte_size, sha256, fingerprint, prev_sha256, priority, created_at_ms = \
        row[:len(MANIFEST_COLUMNS)]
    return Manifest(SegmentId.of(site, table, seq), row_count, byte_size, sha256, fingerprint, prev_sha256,
                    priority, created_at_ms)


def ensure_schema(database: LedgerDatabase) -> None:
    """Create the ledger's tables, or upgrade those an older hub made; a no-op (and no write lock) when current.
    Only SQLite files can be that old: a PostgreSQL ledger always starts with the current tables."""
    if not _needs_work(database):
        return
    with database.write() as db:
        summarised = all(database.columns(name) for name in SUMMARY_TABLES)
        for name, columns in TABLES.items():
            db.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
            if OLD_MANIFEST_COLUMN in database.columns(name):
                assert isinstance(database, Database), "only a SQLite ledger can predate the manifest columns"
                _upgrade(db, database, name)
        for index in INDEXES.values():
            db.execute(index)
        if not summarised:
            rebuild(db)


def _needs_work(database: LedgerDatabase) -> bool:
    for name in TABLES:
        columns = database.columns(name)
        if not columns or OLD_MANIFEST_COLUMN in columns:
            return True
    return not set(INDEXES) <= database.indexes()


def _upgrade(db, database: Database, name: str) -> None:
    """Rebuild ``name`` with manifest columns, filled from its ``metadata`` text, inside the caller's transaction."""
    new = f"{name}_upgraded"
    db.execute(f"CREATE TABLE {new} ({TABLES[name]})")
    old_columns = database.columns(name)
    kept = [c for c in database.columns(new) if c not in MANIFEST_COLUMNS and c in old_columns]
    cursor = db.execute(f"SELECT site, tbl, seq, {OLD_MANIFEST_COLUMN}{''.join(', ' + c for c in kept)} FROM {name}")

    def rows() -> Iterator[list]:
        for site, table, seq, text, *rest in cursor:
            yield [*manifest_values(_decoded(database, name, (site, table, seq), text)), *rest]

    targets = [*MANIFEST_COLUMNS, *kept]
    db.conn.executemany(f"INSERT INTO {new} ({', '.join(targets)}) VALUES ({', '.join('?' * len(targets))})", rows())
    db.execute(f"DROP TABLE {name}")
    db.execute(f"ALTER TABLE {new} RENAME TO {name}")


def _decoded(database: Database, name: str, key: tuple, text: str) -> Manifest:
    """The manifest an older hub stored as text. It wrote that text itself, so a row that does not decode (or
    names another segment than its key) was changed by hand: the upgrade stops and the old table stays."""
    where = f"{name} row {key} of {database.path}"
    try:
        manifest = Manifest.from_upload_metadata(text)
    except RemoteProtocolError as error:
        raise RuntimeError(f"cannot upgrade the hub ledger: {where} holds no valid manifest ({error}); fix or "
                           "delete that row (the ship re-sends what is not committed) and start again") from None
    if manifest.segment != SegmentId.of(*key):
        raise RuntimeError(f"cannot upgrade the hub ledger: {where} holds the manifest of {manifest.segment}")
    return manifest
