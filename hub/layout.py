"""Where the hub keeps things inside its data directory (``--data DIR``).

One directory holds everything, so an operator backs up or moves a hub by copying one tree:

    DIR/hub.db                 SQLite (WAL): site registry, operators, upload records, segment ledger
    DIR/hub.lock               held by the running ``harbour hub run`` (one hub per DIR)
    DIR/uploads/<key>.seg      a segment's bytes, from creation until it is merged
    DIR/quarantine/<key>.seg   segments that could not be merged (schema conflict, unreadable)
    DIR/tables/<table>/        the merged Delta Lake tables, one per edge table name
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sync_protocol.identifiers import SegmentId, TableName

SEGMENT_SUFFIX = ".seg"


class HubNotFound(Exception):
    """``--data`` names a directory where no hub was ever set up."""


@dataclass(frozen=True)
class HubLayout:
    root: Path

    @classmethod
    def create(cls, root: Path | str) -> HubLayout:
        """The layout of ``root``, with its directories made if new (operators register sites before
        the first start, so every command may be the first one to touch DIR)."""
        layout = cls(Path(root).resolve())
        for directory in (layout.root, layout.uploads, layout.quarantine, layout.tables):
            directory.mkdir(parents=True, exist_ok=True)
        return layout

    @classmethod
    def existing(cls, root: Path | str) -> HubLayout:
        """The layout of a hub that has been set up in ``root``; never creates anything, so that a read-only
        command with a mistyped ``--data`` says so instead of showing an empty fleet (and leaving directories)."""
        layout = cls(Path(root).resolve())
        if not layout.database.is_file():
            raise HubNotFound(
                f"no hub in {layout.root}: it has no hub.db. Check --data (or HARBOUR_HUB_DATA); a new hub is set up by"
                " `harbour hub run --data DIR` or `harbour hub add-site SITE --data DIR`")
        return layout

    @property
    def database(self) -> Path:
        return self.root / "hub.db"

    @property
    def lock_file(self) -> Path:
        return self.root / "hub.lock"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def segment_file(self, segment: SegmentId) -> Path:
        # upload_key is built from validated identifiers only ([a-z0-9_-] and dots), so it cannot
        # climb out of the directory.
        return self.uploads / f"{segment.upload_key}{SEGMENT_SUFFIX}"

    def quarantined_file(self, segment: SegmentId) -> Path:
        return self.quarantine / f"{segment.upload_key}{SEGMENT_SUFFIX}"

    def table_dir(self, table: TableName) -> Path:
        return self.tables / str(table)
