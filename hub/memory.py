"""In-memory ``UploadLedger`` and ``UploadStaging``: the protocol simulation's hub storage.

They keep the contract of ``hub.upload_storage`` to the letter, including what a crash keeps:

* ``MemoryLedger``: every call is a committed transaction, as with SQLite in WAL mode, so all of it survives.
* ``MemoryStaging``: each file has the bytes a reader sees (the page cache) and the bytes that were made
  durable (fsync). ``crash()`` throws the page cache away: writes never synced are lost, exactly what a
  SIGKILL or power cut does to a file whose writes were not fsync'd.

``tests/hub/test_upload_storage.py`` runs these and the real implementations through the same tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from sync_protocol.chain import ChainLink, check_link
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import FIRST_SEQ, MAX_SEQ
from sync_protocol.manifest import Manifest
from sync_protocol.receiver import SiteUploads
from sync_protocol.segment_contents import SegmentContents

from .staging import parquet_contents
from .upload_storage import StagedUpload, segment_conflict


class MemoryLedger:
    """``UploadLedger`` in dicts. Nothing here is lost by a crash: each call stands for one durable transaction."""

    def __init__(self) -> None:
        self._staged: dict[SegmentId, StagedUpload] = {}
        self._committed: dict[SegmentId, Manifest] = {}
        self._refused: dict[SegmentId, tuple[Manifest, str]] = {}

    def staged(self, segment: SegmentId) -> StagedUpload | None:
        return self._staged.get(segment)

    def all_staged(self) -> list[StagedUpload]:
        return list(self._staged.values())

    def save_staged(self, manifest: Manifest, offset: int, expires_at: float) -> None:
        self._staged[manifest.segment] = StagedUpload(manifest, offset, expires_at)

    def drop_staged(self, segment: SegmentId) -> None:
        self._staged.pop(segment, None)

    def site_uploads(self, segment: SegmentId, now: float) -> SiteUploads:
        others = [record for key, record in self._staged.items()
                  if key.site == segment.site and key != segment and record.expires_at > now]
        return SiteUploads(len(others), sum(record.manifest.byte_size for record in others))

    def refuse(self, manifest: Manifest, reason: str, now: float) -> None:
        self._staged.pop(manifest.segment, None)
        self._refused[manifest.segment] = (manifest, reason)  # one per seq: only the latest is refused again

    def refusal(self, manifest: Manifest) -> str | None:
        refused = self._refused.get(manifest.segment)
        return refused[1] if refused is not None and refused[0] == manifest else None

    def _link(self, segment: SegmentId, seq: int) -> ChainLink | None:
        if not FIRST_SEQ <= seq <= MAX_SEQ:
            return None
        committed = self._committed.get(SegmentId(segment.site, segment.table, seq))
        return None if committed is None else ChainLink(committed.sha256, committed.prev_sha256)

    def check_chain(self, manifest: Manifest) -> None:
        segment = manifest.segment
        check_link(manifest, self._link(segment, segment.seq - 1), self._link(segment, segment.seq + 1))

    def committed(self, segment: SegmentId) -> Manifest | None:
        return self._committed.get(segment)

    def all_committed(self) -> dict[SegmentId, Manifest]:
        """Every committed segment (what the merger would find), for the simulation's checks."""
        return dict(self._committed)

    def commit(self, manifest: Manifest, now: float) -> bool:
        segment = manifest.segment
        held = self._committed.get(segment)
        if held is not None:
            if held.sha256 != manifest.sha256:
                raise segment_conflict(manifest)
            self._staged.pop(segment, None)
            return False
        self.check_chain(manifest)  # again: the check at creation was early, this one is the guard
        self._committed[segment] = manifest
        self._staged.pop(segment, None)
        self._refused.pop(segment, None)
        return True


@dataclass
class _File:
    seen: bytearray = field(default_factory=bytearray)  # what a reader sees: the page cache
    durable: bytes = b""  # what survives a crash: the bytes as of the last fsync


@dataclass
class MemoryChunk:
    """An open chunk of a ``MemoryStaging`` file."""

    segment: SegmentId
    position: int

    @property
    def name(self) -> str:
        return f"memory:{self.segment.upload_key}"


ReadContents = Callable[[SegmentId, bytes], SegmentContents]


def parquet_bytes_contents(segment: SegmentId, data: bytes) -> SegmentContents:
    """What ``StagingArea.contents`` reads, from bytes in memory."""
    return parquet_contents(pa.BufferReader(data))


class MemoryStaging:
    """``UploadStaging`` in memory, with the page cache / fsync split that makes ``crash()`` honest.

    ``read_contents`` reads a complete file's footer; the simulation passes one for its opaque payloads."""

    def __init__(self, read_contents: ReadContents = parquet_bytes_contents) -> None:
        self._files: dict[SegmentId, _File] = {}
        self._read_contents = read_contents

    def crash(self) -> None:
        """The process died: every file falls back to its durable bytes."""
        for file in self._files.values():
            file.seen = bytearray(file.durable)

    def segments(self) -> set[SegmentId]:
        """Every segment that has a staging file."""
        return set(self._files)

    def data(self, segment: SegmentId) -> bytes | None:
        """The file's bytes as a reader sees them (the merger, after a commit), or None."""
        file = self._files.get(segment)
        return None if file is None else bytes(file.seen)

    def _file(self, segment: SegmentId) -> _File:
        file = self._files.get(segment)
        if file is None:
            raise FileNotFoundError(f"no staging file for {segment}")
        return file

    def reset(self, segment: SegmentId) -> None:
        self._files[segment] = _File()

    def open_chunk(self, segment: SegmentId, offset: int) -> MemoryChunk:
        file = self._file(segment)
        del file.seen[offset:]
        return MemoryChunk(segment, offset)

    def write(self, handle: MemoryChunk, data: bytes, hasher) -> None:
        file = self._file(handle.segment)
        file.seen[handle.position:handle.position + len(data)] = data
        handle.position += len(data)
        if hasher is not None:
            hasher.update(data)

    def sync(self, handle: MemoryChunk) -> None:
        file = self._file(handle.segment)
        file.durable = bytes(file.seen)

    def finish_chunk(self, handle: MemoryChunk, keep_to: int | None) -> None:
        if keep_to is not None:
            file = self._file(handle.segment)
            del file.seen[keep_to:]
            file.durable = bytes(file.seen)

    def truncate(self, segment: SegmentId, offset: int) -> None:
        file = self._files.get(segment)
        if file is not None:
            del file.seen[offset:]
            file.durable = bytes(file.seen)

    def sha256(self, segment: SegmentId) -> str:
        return hashlib.sha256(self._file(segment).seen).hexdigest()

    def sha256_range(self, segment: SegmentId, start: int, end: int) -> str:
        return hashlib.sha256(self._file(segment).seen[start:end]).hexdigest()

    def contents(self, segment: SegmentId) -> SegmentContents:
        file = self._files.get(segment)
        if file is None:
            return SegmentContents.not_parquet(f"no staging file for {segment}")
        return self._read_contents(segment, bytes(file.seen))

    def size(self, segment: SegmentId) -> int:
        file = self._files.get(segment)
        return -1 if file is None else len(file.seen)

    def delete(self, segment: SegmentId) -> None:
        self._files.pop(segment, None)
