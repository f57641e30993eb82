"""Reference datasets at the hub: published versions, which ship is offered which, and pruning.

Theory of operation
-------------------
* **A version is a file and a row.** ``harbour hub publish`` converts the operator's file into an Arrow IPC stream
  (``hub.dataset_files``) in the datasets directory (``HubLayout.datasets``: beside the uploads, so every process
  of a cluster reads it), then, in one write transaction of the ledger database, takes the next version number of
  the dataset (``MAX(version) + 1``: the write lock -- ``BEGIN IMMEDIATE`` on SQLite, the cluster's advisory lock on
  PostgreSQL -- and the ``(name, version)`` key make two concurrent publishes take different numbers), links the
  file to ``<name>/<version>.arrows`` with the directory fsynced, and inserts the row. The file is in place before
  the commit, so a committed row always has its file; a crash between them leaves a file no row names, which the
  next publish of that dataset (taking the same number) replaces. A publish never replaces a committed version's
  file, even one woken from a freeze after the server ended its transaction (``_place_version_file``).
* **Who is offered what.** A version is for every ship (``ships`` NULL) or for the listed ones. A ship's desired
  state holds, per dataset, the newest unpruned version offered to it; nothing else. A download of any unpruned
  version offered to the ship is served (one that started before a newer version was published can finish).
* **Pruning** (at each publish, in the same transaction): per dataset, a version is kept while it is one of the
  ``KEEP_LATEST_VERSIONS`` newest, or the newest offered to every ship, or the newest offered to some registered
  ship. Every other version is marked pruned (its row stays, so a download of it answers ``410 Gone`` rather than
  ``404``) and its file is deleted after the commit. A download already streaming a deleted file finishes (the
  open file lives on until closed); its resumption answers 410 and the ship takes the newer version.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sync_protocol.downlink import (
    MANAGED_SETTINGS,
    MAX_DATASET_BYTES,
    MAX_DATASETS_OFFERED,
    MAX_DESIRED_BYTES,
    MAX_SETTING_VALUE_CHARS,
    DatasetOffer,
    DesiredState,
)
from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SiteId, TableName

from .dataset_files import ConvertedFile
from .db import LedgerDatabase, create_tables
from .staging import fsync_dir

KEEP_LATEST_VERSIONS = 2
"""The newest versions of a dataset kept whoever they were offered to: a ship part-way through version n when n+1 is
published can finish it (and switch again later) instead of meeting a 410 half-way; two versions of reference data
cost megabytes."""

DATASET_SUFFIX = ".arrows"
"""Arrow's extension for the IPC stream format."""

STAGING_PREFIX = ".publishing-"

STALE_STAGING_SECONDS = 24 * 3600.0
"""A converted file not renamed into place after a day belongs to a publish that was killed: a live conversion takes
minutes even for the largest dataset."""

MAX_VERSION = 2**53 - 1
"""A version number above this cannot be exact in JSON numbers; it is also far from any real count of publishes."""

LARGEST_SETTINGS_BYTES = 64 + sum(len(key) + 6 + MAX_SETTING_VALUE_CHARS for key in MANAGED_SETTINGS)
"""The managed settings' part of a desired state at its largest (every setting at its longest value, the revision
and the JSON around them): what the datasets' part must leave room for."""

TABLES = {
    "dataset_versions": "name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL,"
                        " byte_size INTEGER NOT NULL, row_count INTEGER NOT NULL, column_count INTEGER NOT NULL,"
                        " source_format TEXT NOT NULL, ships TEXT, published_at REAL NOT NULL, pruned_at REAL,"
                        " PRIMARY KEY (name, version)",
    "dataset_holdings": "site TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,"
                        " first_reported_at REAL NOT NULL, PRIMARY KEY (site, name, version)",
}
"""``dataset_versions.ships``: NULL for every ship, else the site ids, sorted, joined by ``,`` (a site id holds no
comma). ``dataset_holdings``: when each ship first reported holding each version (when it got it)."""


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    sha256: str
    size: int
    rows: int
    columns: int
    source_format: str
    ships: tuple[str, ...] | None  # None: every ship
    published_at: float
    pruned_at: float | None = None

    def offered_to(self, site: str) -> bool:
        return self.ships is None or site in self.ships

    @property
    def offer(self) -> DatasetOffer:
        return DatasetOffer(self.name, self.version, self.sha256, self.size)


_COLUMNS = "name, version, sha256, byte_size, row_count, column_count, source_format, ships, published_at, pruned_at"


def _version(row: Sequence) -> DatasetVersion:
    name, version, sha256, size, rows, columns, fmt, ships, published_at, pruned_at = row
    return DatasetVersion(name, version, sha256, size, rows, columns, fmt,
                          None if ships is None else tuple(ships.split(",")), published_at, pruned_at)


def versions_to_prune(versions: Iterable[DatasetVersion], sites: Iterable[str],
                      keep_latest: int = KEEP_LATEST_VERSIONS) -> list[int]:
    """The unpruned versions of one dataset that the pruning rule (module docstring) lets go, oldest first."""
    live = sorted((v for v in versions if v.pruned_at is None), key=lambda v: v.version, reverse=True)
    keep = {v.version for v in live[:keep_latest]}
    newest_for_all = next((v for v in live if v.ships is None), None)
    if newest_for_all is not None:
        keep.add(newest_for_all.version)
    for site in sites:
        newest = next((v for v in live if v.offered_to(site)), None)
        if newest is not None:
            keep.add(newest.version)
    return sorted(v.version for v in live if v.version not in keep)


def not_offered(name: str, version: object) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"dataset {name[:80]} version {str(version)[:20]} was not offered to this ship",
        code=ErrorCode.DATASET_NOT_FOUND, op="downloading a dataset", subject=f"{name[:80]}/{str(version)[:20]}",
        hint="download the versions the answer to the ship's report offers")


_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)
"""What ``os.link`` raises on a file system without hard links (some SMB shares, FUSE file systems)."""


def _place_version_file(db, source: Path, final: Path, name: str, version: int) -> None:
    """Put ``source`` at ``final`` without ever replacing the file of a committed version.

    A publish reads ``MAX(version)`` and places its file inside one transaction, but a process can freeze between
    the two; on PostgreSQL the server then ends its transaction (``hub.postgres.IDLE_IN_TRANSACTION_TIMEOUT``)
    and another publish takes the same number and commits. A plain rename by the frozen one, once it woke, would
    replace that committed file. A hard link never replaces: if the file exists already, a statement runs first
    (it fails in a transaction the server ended), and only a file no row names -- left by a publish that died
    before its commit -- is replaced."""
    try:
        os.link(source, final)
    except FileExistsError:
        pass
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
    else:
        os.unlink(source)
        return
    named = db.execute("SELECT 1 FROM dataset_versions WHERE name = ? AND version = ?", [name, version]).fetchone()
    if named is not None:  # cannot happen under the write lock; never replace a committed version's file
        raise RuntimeError(f"dataset {name} version {version} was committed by another publish; nothing was changed")
    os.replace(source, final)


class DatasetStore:
    """Dataset versions in the ledger database (table ``dataset_versions``) and their files in ``directory``."""

    def __init__(self, database: LedgerDatabase, directory: Path, clock: Callable[[], float]) -> None:
        self._database = database
        self.directory = directory
        self._clock = clock
        create_tables(database, TABLES)

    def file_of(self, name: str, version: int) -> Path:
        # name is a TableName ([a-z][a-z0-9_]*) and version an int: the path cannot leave the directory
        return self.directory / str(TableName(name)) / f"{int(version)}{DATASET_SUFFIX}"

    def staging_file(self, token: str) -> Path:
        """Where a publish writes its converted file before it becomes a version (same file system: rename).
        Files of publishes killed before they finished are deleted here once ``STALE_STAGING_SECONDS`` old."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"{STAGING_PREFIX}*{DATASET_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # another publish may sweep the same file
                if stale.stat().st_mtime < self._clock() - STALE_STAGING_SECONDS:
                    stale.unlink()
        return self.directory / f"{STAGING_PREFIX}{token}{DATASET_SUFFIX}"

    def publish(self, name: TableName, converted: ConvertedFile, ships: Sequence[SiteId] | None,
                sites: Iterable[str]) -> tuple[DatasetVersion, list[int]]:
        """Make ``converted`` the next version of ``name``; returns it and the versions pruned by this publish.
        ``sites``: every registered site, for the pruning rule."""
        targets = None if ships is None else ",".join(sorted({str(s) for s in ships}))
        sites = list(sites)
        now = self._clock()
        self.file_of(str(name), 1).parent.mkdir(parents=True, exist_ok=True)  # outside the lock: shared storage
        with self._database.write() as db:
            version = (db.execute("SELECT MAX(version) FROM dataset_versions WHERE name = ?",
                                  [str(name)]).fetchone()[0] or 0) + 1
            if version == 1:
                self._check_room(db, str(name))
            final = self.file_of(str(name), version)
            _place_version_file(db, converted.path, final, str(name), version)
            fsync_dir(final.parent)
            db.execute(f"INSERT INTO dataset_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                       [str(name), version, converted.sha256, converted.size, converted.rows, converted.columns,
                        converted.source_format, targets, now])
            rows = db.execute(f"SELECT {_COLUMNS} FROM dataset_versions WHERE name = ?", [str(name)]).fetchall()
            pruned = versions_to_prune([_version(r) for r in rows], sites)
            for old in pruned:
                db.execute("UPDATE dataset_versions SET pruned_at = ? WHERE name = ? AND version = ?",
                           [now, str(name), old])
        self.delete_pruned_files(str(name))
        return self.version(str(name), version), pruned

    def _check_room(self, db, name: str) -> None:
        """A new dataset must leave every ship's desired state within what the edge reads (``MAX_DATASETS_OFFERED``
        offers, ``MAX_DESIRED_BYTES`` of JSON with the managed settings at their largest)."""
        names = [row[0] for row in db.execute("SELECT DISTINCT name FROM dataset_versions").fetchall()] + [name]
        largest = DesiredState(tuple(DatasetOffer(n, MAX_VERSION, "0" * 64, MAX_DATASET_BYTES) for n in names))
        answer_bytes = len(largest.to_json()) + LARGEST_SETTINGS_BYTES
        if len(names) > MAX_DATASETS_OFFERED or answer_bytes > MAX_DESIRED_BYTES:
            raise RemoteProtocolError(
                f"the hub already holds {len(names) - 1} datasets; one more could make a ship's desired state larger "
                f"than the protocol allows ({MAX_DATASETS_OFFERED} datasets, {MAX_DESIRED_BYTES} bytes)",
                code=ErrorCode.TOO_LARGE, op="publishing a dataset", subject=name,
                hint="publish into an existing dataset instead (shorter names also leave more room)")

    def delete_pruned_files(self, name: str) -> int:
        """Delete the files of ``name``'s pruned versions (again after a crash left some); returns how many went."""
        rows = self._database.db.execute(
            "SELECT version FROM dataset_versions WHERE name = ? AND pruned_at IS NOT NULL", [name]).fetchall()
        deleted = 0
        for (version,) in rows:
            path = self.file_of(name, version)
            if path.exists():
                path.unlink(missing_ok=True)
                deleted += 1
        return deleted

    def version(self, name: str, version: int) -> DatasetVersion | None:
        row = self._database.db.execute(f"SELECT {_COLUMNS} FROM dataset_versions WHERE name = ? AND version = ?",
                                        [name, version]).fetchone()
        return None if row is None else _version(row)

    def note_held(self, site: str, held: dict[str, int]) -> None:
        """Record the versions ``site`` reports holding; the first report of each is when the ship got it. Only
        versions published and offered to ``site`` are recorded: a ship's claims cannot grow the table beyond
        versions x ships."""
        if held:
            with self._database.write(serial=False) as db:  # decides nothing from what it reads
                for name, version in held.items():
                    db.execute("INSERT INTO dataset_holdings (site, name, version, first_reported_at)"
                               " SELECT ?, name, version, ? FROM dataset_versions WHERE name = ? AND version = ?"
                               " AND (ships IS NULL OR ',' || ships || ',' LIKE ?)"
                               " ON CONFLICT (site, name, version) DO NOTHING",
                               [site, self._clock(), name, version, f"%,{site},%"])

    def held_since(self) -> dict[tuple[str, str, int], float]:
        """(site, dataset, version) -> when the site first reported holding it."""
        rows = self._database.db.execute("SELECT site, name, version, first_reported_at FROM dataset_holdings")
        return {(r[0], r[1], r[2]): r[3] for r in rows.fetchall()}

    def versions(self) -> list[DatasetVersion]:
        """Every version of every dataset, pruned ones too, by name then version."""
        rows = self._database.db.execute(f"SELECT {_COLUMNS} FROM dataset_versions ORDER BY name, version").fetchall()
        return [_version(r) for r in rows]

    def offers(self, site: str) -> tuple[DatasetOffer, ...]:
        """Per dataset, the newest unpruned version offered to ``site``."""
        return self.offers_by_site([site])[site]

    def offers_by_site(self, sites: Iterable[str]) -> dict[str, tuple[DatasetOffer, ...]]:
        """``offers`` of many sites from one read (the fleet report asks for every ship)."""
        rows = self._database.db.execute(
            f"SELECT {_COLUMNS} FROM dataset_versions WHERE pruned_at IS NULL ORDER BY name, version DESC").fetchall()
        live = [_version(row) for row in rows]
        offers = {}
        for site in sites:
            newest: dict[str, DatasetOffer] = {}
            for version in live:
                if version.name not in newest and version.offered_to(site):
                    newest[version.name] = version.offer
            offers[site] = tuple(newest.values())
        return offers

    def servable(self, site: str, name: str, version: int) -> DatasetVersion:
        """The version a ship may download: 404 when it was never offered to ``site``, 410 when pruned since."""
        found = self.version(name, version) if 1 <= version <= MAX_VERSION else None
        if found is None or not found.offered_to(site):
            raise not_offered(name, version)
        if found.pruned_at is not None:
            raise RemoteProtocolError(
                f"dataset {name} version {version} was pruned at the hub", code=ErrorCode.DATASET_GONE,
                op="downloading a dataset", subject=f"{name}/{version}",
                hint="the answer to the ship's next report offers the newest version; download that one")
        return found

