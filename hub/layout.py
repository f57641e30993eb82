"""Where the hub keeps things: its data directory (``--data DIR``) and, for a cluster, the three shared places.

A lone hub keeps everything in one directory, so an operator backs it up or moves it by copying one tree:

    DIR/hub.db                 SQLite (WAL): site registry, operators, upload records, segment ledger
    DIR/hub.lock               held by the running ``harbour hub run`` (one hub per DIR)
    DIR/uploads/<key>.seg      a segment's bytes, from creation until it is merged
    DIR/quarantine/<key>.seg   segments that could not be merged (schema conflict, unreadable)
    DIR/tables/<table>/        the merged Delta Lake tables, one per edge table name
    DIR/datasets/<name>/<version>.arrows   published reference datasets (Arrow IPC streams, ``hub.datasets``)

The processes of a hub cluster share three of them instead (docs/scale-out.md):

    --ledger postgresql://...  the ledger, registry and everything else hub.db holds (``hub.postgres``)
    --staging SHARED           uploads in progress (SHARED/<key>.seg), SHARED/quarantine/ and SHARED/datasets/
    --warehouse SHARED         the merged Delta Lake tables: a directory or s3://BUCKET/PREFIX (``hub.warehouse``)

and DIR keeps only what is local to one process (its lock file and the merger's scratch space).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sync_protocol.identifiers import SegmentId, TableName

from . import warehouse as warehouses
from .db import Database, LedgerDatabase, is_postgres_url
from .durable import make_dirs

SEGMENT_SUFFIX = ".seg"


def open_database(ledger: str | None, sqlite_path: Path) -> LedgerDatabase:
    """The ledger database ``--ledger`` names: PostgreSQL for a ``postgresql://`` URL, else the SQLite file."""
    if is_postgres_url(ledger):
        from .postgres import PostgresDatabase  # psycopg is loaded only by hubs that use it

        return PostgresDatabase(ledger)
    return Database(sqlite_path)


class HubNotFound(Exception):
    """``--data`` names a directory where no hub was ever set up."""


@dataclass(frozen=True)
class HubLayout:
    root: Path
    ledger: str | None = None  # a postgresql:// URL; None: the SQLite file in root
    staging: Path | None = None  # None: root/uploads
    warehouse: Path | str | None = None  # None: root/tables; text: an s3:// URL (hub.warehouse)

    @classmethod
    def of(cls, root: Path | str, *, ledger: str | None = None, staging: Path | str | None = None,
           warehouse: Path | str | None = None) -> HubLayout:
        """The places as given (``--data``, ``--ledger``, ``--staging``, ``--warehouse``), checked, nothing made."""
        if ledger is not None and not is_postgres_url(ledger):
            raise ValueError(f"--ledger takes a postgresql://USER@HOST:PORT/DB URL, not {ledger.split('://')[0]!r}:"
                             " leave it out to keep the ledger in --data")
        return cls(Path(root).resolve(), ledger, Path(staging).resolve() if staging is not None else None,
                   warehouses.parse_warehouse(warehouse) if warehouse is not None else None)

    @classmethod
    def create(cls, root: Path | str, **places) -> HubLayout:
        """The layout of ``root``, with its directories made if new (operators register sites before
        the first start, so every command may be the first one to touch DIR)."""
        return cls.of(root, **places).made()

    @classmethod
    def existing(cls, root: Path | str, **places) -> HubLayout:
        return cls.of(root, **places).checked()

    def made(self) -> HubLayout:
        # Durably (each new entry's parent fsync'd): a hub directory a power cut drops takes the ledger with it.
        for directory in (self.root, self.uploads, self.quarantine, self.datasets):
            make_dirs(directory)
        if not self.remote_warehouse:
            make_dirs(self.tables)
        return self

    def checked(self) -> HubLayout:
        """This layout, if a hub has been set up here; never creates anything, so that a read-only command with a
        mistyped ``--data`` says so instead of showing an empty fleet (and leaving directories). A PostgreSQL
        ledger is checked when it is opened (it names the server it cannot reach)."""
        if self.ledger is None and not self.database.is_file():
            raise HubNotFound(
                f"no hub in {self.root}: it has no hub.db. Check --data (or HARBOUR_HUB_DATA); a new hub is set up by"
                " `harbour hub run --data DIR` or `harbour hub add-site SITE --data DIR`")
        return self

    @property
    def is_new(self) -> bool:
        """No hub was set up here yet (only the embedded ledger can tell without connecting)."""
        return self.ledger is None and not self.database.is_file()

    def open_database(self) -> LedgerDatabase:
        return open_database(self.ledger, self.database)

    @property
    def database(self) -> Path:
        return self.root / "hub.db"

    @property
    def lock_file(self) -> Path:
        return self.root / "hub.lock"

    @property
    def uploads(self) -> Path:
        return self.staging if self.staging is not None else self.root / "uploads"

    @property
    def quarantine(self) -> Path:
        return self.staging / "quarantine" if self.staging is not None else self.root / "quarantine"

    @property
    def datasets(self) -> Path:
        """Published dataset versions, beside the uploads: every process of a cluster serves them (``hub.datasets``)."""
        return self.staging / "datasets" if self.staging is not None else self.root / "datasets"

    @property
    def remote_warehouse(self) -> bool:
        """The tables live in an object store (``s3://``), not in a directory."""
        return self.warehouse is not None and warehouses.is_remote(self.warehouse)

    @property
    def tables(self) -> Path:
        """The warehouse directory (a local one: code that may meet an s3:// warehouse uses ``table_uri``)."""
        if self.remote_warehouse:
            raise ValueError(f"the warehouse {self.warehouse} is not a directory")
        return self.warehouse if self.warehouse is not None else self.root / "tables"

    @property
    def warehouse_location(self) -> Path | str:
        return self.warehouse if self.warehouse is not None else self.tables

    def table_uri(self, table: TableName) -> str:
        """What delta-rs opens for ``table``: a path, or ``s3://bucket/prefix/table``."""
        return warehouses.table_uri(self.warehouse_location, str(table))

    def segment_file(self, segment: SegmentId) -> Path:
        # upload_key is built from validated identifiers only ([a-z0-9_-] and dots), so it cannot
        # climb out of the directory.
        return self.uploads / f"{segment.upload_key}{SEGMENT_SUFFIX}"

    def quarantined_file(self, segment: SegmentId) -> Path:
        return self.quarantine / f"{segment.upload_key}{SEGMENT_SUFFIX}"

    def table_dir(self, table: TableName) -> Path:
        return self.tables / str(table)
