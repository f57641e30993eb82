"""What the upload service needs from the ledger and the staging area: two small ``typing.Protocol``s.

Each has a real implementation (``hub.ledger.SqliteLedger``, ``hub.staging.StagingArea``) and an in-memory
one (``hub.memory``); ``tests/hub/test_upload_storage.py`` runs both through the same contract tests, and the
protocol simulation drives the real ``UploadService`` over the in-memory pair (as Litestream's
``ReplicaClient`` has ``file/`` and ``mock/`` backends).

Durability is part of the contract: a method of ``UploadLedger`` is one transaction, durable when it
returns; a ``UploadStaging`` write is durable only once ``sync``, ``finish_chunk(keep_to=...)``, ``reset``
or ``truncate`` made it so. What the upload service acknowledges must never be ahead of what is durable (G3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.manifest import Manifest
from sync_protocol.receiver import SiteUploads
from sync_protocol.segment_contents import SegmentContents


@dataclass(frozen=True)
class StagedUpload:
    """The durable record of an upload not yet committed: its manifest, how many bytes are durable, and when
    it expires."""

    manifest: Manifest
    offset: int
    expires_at: float


class UploadLedger(Protocol):
    """Upload records, refused manifests and the exactly-once commit. Every call is one durable transaction."""

    def staged(self, segment: SegmentId) -> StagedUpload | None: ...
    def all_staged(self) -> list[StagedUpload]: ...
    def save_staged(self, manifest: Manifest, offset: int, expires_at: float) -> None: ...
    def drop_staged(self, segment: SegmentId) -> None: ...
    def site_uploads(self, segment: SegmentId, now: float) -> SiteUploads:
        """The unexpired upload records of ``segment``'s site, other than ``segment``'s own."""
        ...

    def refuse(self, manifest: Manifest, reason: str, now: float) -> None:
        """Drop the upload record and remember ``manifest`` as refused, in one transaction."""

    def refusal(self, manifest: Manifest) -> str | None:
        """Why exactly this manifest was refused before, or None."""

    def check_chain(self, manifest: Manifest) -> None:
        """Raise ``RemoteProtocolError`` (chain-conflict) if ``manifest`` would splice the committed chain.

        Asked at creation only, as an early refusal: over a thin satellite link it saves sending a whole
        segment the commit would refuse. It cannot be the guard: a neighbour may commit while the upload runs,
        so ``commit`` checks the chain again, with the same code, inside its transaction (G2, G8)."""

    def committed(self, segment: SegmentId) -> Manifest | None: ...

    def commit(self, manifest: Manifest, now: float) -> bool:
        """Commit exactly once and drop the upload record. True if this call committed it, False if it already
        was (same digest); ``RemoteProtocolError`` if another digest holds the key or the chain would break."""


def segment_conflict(manifest: Manifest) -> RemoteProtocolError:
    """What ``UploadLedger.commit`` raises when another digest already holds the manifest's key."""
    return RemoteProtocolError(
        f"segment {manifest.segment} is already committed with another sha256",
        code=ErrorCode.SEGMENT_CONFLICT, op="committing", subject=str(manifest.segment),
        hint="the ship's segment history diverged from the hub's (restored or wiped data dir?)",
    )


class ChunkHandle(Protocol):
    """An open chunk of one staging file; ``name`` says which, in log lines."""

    @property
    def name(self) -> str: ...


class SharedLocks(Protocol):
    """Mutual exclusion of one upload across the processes of a hub cluster (``hub.postgres.SessionLocks``); a
    lone hub needs none (``UploadService``'s in-process lock is enough). Blocking calls: run in the I/O pool."""

    def try_lock(self, name: str) -> bool: ...
    def unlock(self, name: str) -> None: ...


class UploadStaging(Protocol):
    """A segment's bytes while it uploads (and, once committed, until the merge). Calls block: the upload
    service runs them through its thread runner."""

    def reset(self, segment: SegmentId) -> None:
        """An empty file, durable before the creation is answered."""

    def open_chunk(self, segment: SegmentId, offset: int) -> ChunkHandle:
        """A handle writing at ``offset``; bytes past ``offset`` (a dropped chunk's left-overs) are cut first."""

    def write(self, handle: ChunkHandle, data: bytes, hasher) -> None:
        """Append ``data`` at the handle's position (not yet durable), feeding ``hasher`` if there is one."""

    def sync(self, handle: ChunkHandle) -> None:
        """Make what the handle wrote so far durable (a slice of a long chunk)."""

    def finish_chunk(self, handle: ChunkHandle, keep_to: int | None) -> None:
        """Close the handle: durable up to ``keep_to`` when the chunk is kept; None leaves the dropped bytes
        non-durable, to be cut by the next ``open_chunk`` or ``truncate``."""

    def truncate(self, segment: SegmentId, offset: int) -> None:
        """Cut the file (if any) back to ``offset``, durably."""

    def sha256(self, segment: SegmentId) -> str: ...
    def sha256_range(self, segment: SegmentId, start: int, end: int) -> str: ...

    def contents(self, segment: SegmentId) -> SegmentContents:
        """Row count and schema from the file's Parquet footer; ``SegmentContents.not_parquet`` if unreadable."""

    def size(self, segment: SegmentId) -> int:
        """The file's length as a reader sees it now, or -1 when there is no file."""

    def delete(self, segment: SegmentId) -> None:
        """Remove the file durably; no error if it is gone already."""
