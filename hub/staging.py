"""Staging files: a segment's bytes on the hub's disk, from creation until the merge.

Every function here blocks (disk writes, fsync, hashing a file of up to ``MAX_SEGMENT_BYTES``), so the
upload service calls them in worker threads, never on the event loop. A segment keeps one file at
``layout.segment_file(segment)`` from creation to merge: committing does not move it, so there is no
rename to lose in a crash.

``StagingArea`` is the real ``hub.upload_storage.UploadStaging``; ``hub.memory.MemoryStaging`` is the
in-memory one the protocol simulation uses.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import MAX_SEGMENT_DECODED_BYTES, MAX_SEGMENT_ROWS
from sync_protocol.segment_contents import SegmentContents

from .durable import fsync_dir
from .layout import HubLayout
from .segment_size import decoded_bytes

HASH_BLOCK_BYTES = 1024 * 1024
"""Read size when hashing a whole segment: large enough that hashlib (which releases the GIL for big
buffers) dominates, small enough to keep memory flat however big the segment is."""


def parquet_contents(source: Path | pa.NativeFile) -> SegmentContents:
    """Row count and schema from a Parquet footer (a few KiB read from the end of the file, however large it is),
    and the decoded size from the footer and the string columns' dictionaries (``hub.segment_size``)."""
    try:
        with pq.ParquetFile(source) as parquet:
            rows, schema = parquet.metadata.num_rows, parquet.schema_arrow
        if rows > MAX_SEGMENT_ROWS:  # refused whatever its size: no need to read its dictionaries
            return SegmentContents.of(rows, schema)
        return SegmentContents.of(rows, schema, decoded_bytes(source, stop_above=MAX_SEGMENT_DECODED_BYTES))
    except (pa.ArrowException, ValueError, OSError) as error:
        return SegmentContents.not_parquet(str(error))


class StagingArea:
    def __init__(self, layout: HubLayout) -> None:
        self.layout = layout

    def path(self, segment: SegmentId) -> Path:
        return self.layout.segment_file(segment)

    def reset(self, segment: SegmentId) -> None:
        """An empty staging file, durable (file and directory entry) before the creation is answered."""
        path = self.path(segment)
        with open(path, "wb") as handle:
            os.fsync(handle.fileno())
        fsync_dir(path.parent)

    def open_chunk(self, segment: SegmentId, offset: int):
        """A handle positioned at ``offset`` for writing a chunk; the file is cut back to ``offset``
        first, because bytes past the durable offset are left-overs of a chunk that never counted."""
        handle = open(self.path(segment), "r+b")  # noqa: SIM115 -- closed by finish_chunk
        try:
            handle.truncate(offset)
            handle.seek(offset)
        except BaseException:
            handle.close()
            raise
        return handle

    @staticmethod
    def write(handle, data: bytes, hasher) -> None:
        handle.write(data)
        if hasher is not None:
            hasher.update(data)

    @staticmethod
    def sync(handle) -> None:
        """Make what was written to the chunk's handle so far durable (a slice of a long chunk)."""
        handle.flush()
        os.fsync(handle.fileno())

    @staticmethod
    def finish_chunk(handle, keep_to: int | None) -> None:
        """Close the chunk's handle: fsync it when the chunk is kept (``keep_to`` is the new durable
        offset), or cut the file back to the old offset when it is dropped."""
        try:
            handle.flush()
            if keep_to is not None:
                handle.truncate(keep_to)
                os.fsync(handle.fileno())
        finally:
            handle.close()

    def truncate(self, segment: SegmentId, offset: int) -> None:
        path = self.path(segment)
        if path.exists():
            with open(path, "r+b") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())

    def sha256(self, segment: SegmentId) -> str:
        digest = hashlib.sha256()
        with open(self.path(segment), "rb") as handle:
            while block := handle.read(HASH_BLOCK_BYTES):
                digest.update(block)
        return digest.hexdigest()

    def sha256_range(self, segment: SegmentId, start: int, end: int) -> str:
        """sha256 of bytes ``[start, end)`` of the staging file (the unverified tail after a cut)."""
        digest = hashlib.sha256()
        with open(self.path(segment), "rb") as handle:
            handle.seek(start)
            left = end - start
            while left > 0 and (block := handle.read(min(HASH_BLOCK_BYTES, left))):
                digest.update(block)
                left -= len(block)
        return digest.hexdigest()

    def contents(self, segment: SegmentId) -> SegmentContents:
        return parquet_contents(self.path(segment))

    def exists(self, segment: SegmentId) -> bool:
        return self.path(segment).exists()

    def size(self, segment: SegmentId) -> int:
        try:
            return self.path(segment).stat().st_size
        except FileNotFoundError:
            return -1

    def delete(self, segment: SegmentId) -> None:
        """Durably: the upload record is dropped next, and a file that came back after a crash would be an
        orphan nobody deletes."""
        path = self.path(segment)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def unquarantine(self, segment: SegmentId) -> Path:
        """Put a quarantined segment's file back where the merger reads it (idempotent: a release interrupted
        after the move finds it there already)."""
        source, target = self.layout.quarantined_file(segment), self.path(segment)
        if source.exists():
            os.replace(source, target)
            fsync_dir(target.parent)
        if not target.exists():
            raise FileNotFoundError(f"the file of quarantined segment {segment} is in neither {source.parent} nor "
                                    f"{target.parent}")
        return target

    def quarantine(self, segment: SegmentId) -> Path:
        """Move a segment that cannot be merged aside, where an operator can look at it."""
        source, target = self.path(segment), self.layout.quarantined_file(segment)
        if source.exists():
            os.replace(source, target)
            fsync_dir(target.parent)
        return target
