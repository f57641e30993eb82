"""The receiving side of one resumable segment upload (the hub's half of tus + Harbour commit).

Theory of operation
-------------------
Each segment ``(site, table, seq)`` has exactly one upload URL, ``UPLOADS_PATH/<site>.<table>.<seq>``,
so a sender that lost every answer can always find its upload again. An ``UploadReceiver`` is the
state of that one URL. It never touches a file, socket or clock: the hub's handler parses a request,
asks the receiver what to do, does the I/O the receiver asks for (store a chunk, fsync, hash the
staging file, commit to the ledger), reports the outcome back, and sends the answer it gets.

States and the events that move between them are one table, ``RECEIVER_TRANSITIONS``; the
diagram in ``docs/protocol.md`` is generated from it. The rules that matter for correctness:

* The offset only moves forward, and only after the chunk's bytes are durable: the handler fsyncs
  and persists the offset *before* it sends the answer the receiver gave it (G3).
* What arrives is kept, even when a chunk is cut short, so a cut costs only the bytes that never
  reached the hub (G3) and a link that drops every few kilobytes still advances. Kept bytes that no
  checksum has covered yet form the *unverified tail* ``[verified, offset)``: ``HEAD`` reports it as
  ``Harbour-Verified-Offset``, and a Harbour sender's next PATCH carries ``Harbour-Tail-Sha256`` so
  the hub checks the tail before appending to it; a tail that does not match is dropped (409, resume
  at the verified offset). A whole chunk that fails its ``Upload-Checksum`` is dropped (460) (G4).
  Plain tus clients never send the tail digest; for them the whole-segment sha256 is the guard.
* When the last byte arrives the whole staging file is hashed and compared with the manifest's
  sha256; only a match is committed. A mismatch discards the upload (the sender starts over).
* Commit is exactly once: the ledger's ``(site, table, seq)`` key is unique, and every later request
  for a committed segment gets an idempotent answer carrying ``Harbour-Commit: committed`` (G2).
* A hub restart rebuilds receivers from what was persisted (``restore``); anything not durable was
  never acknowledged, so the sender's HEAD finds the true offset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .identifiers import SegmentId
from .limits import TUS_VERSION, UPLOAD_EXPIRY_SECONDS
from .manifest import Manifest
from .tus import (
    COMMITTED,
    HARBOUR_COMMIT,
    HARBOUR_VERIFIED_OFFSET,
    TUS_RESUMABLE,
    UPLOAD_EXPIRES,
    UPLOAD_LENGTH,
    UPLOAD_OFFSET,
    UPLOADS_PATH,
    Checksum,
    TailClaim,
    format_expires,
)


class RxState(enum.Enum):
    ABSENT = "absent"  # nothing at this URL: never created, terminated, expired or failed its digest
    RECEIVING = "receiving"  # created; chunks arrive; offset < length
    VERIFYING = "verifying"  # every byte is durable; the whole-segment sha256 is being checked
    COMMITTING = "committing"  # digest matched; the ledger commit is in progress
    COMMITTED = "committed"  # durably committed; every later answer is idempotent


class RxEvent(enum.Enum):
    CREATED = "created"  # POST: new upload, or a different manifest replacing an uncommitted one
    CREATED_AGAIN = "created again"  # POST with the same manifest: resume where it stands
    CHUNK_STORED = "chunk stored"  # PATCH: bytes durable, offset < length
    LAST_CHUNK_STORED = "last chunk stored"  # PATCH: bytes durable, offset == length
    CHUNK_DISCARDED = "chunk discarded"  # PATCH: checksum mismatch, or nothing arrived; offset unchanged
    TAIL_DROPPED = "tail dropped"  # the unverified tail failed the sender's digest
    DIGEST_MATCHED = "digest matched"
    DIGEST_MISMATCHED = "digest mismatched"
    COMMIT_DURABLE = "commit durable"
    COMMIT_REFUSED = "commit refused"  # the ledger said no (a chain or segment conflict raced the upload)
    TERMINATED = "terminated"  # DELETE
    EXPIRED = "expired"  # no chunk for UPLOAD_EXPIRY_SECONDS


RECEIVER_TRANSITIONS: dict[RxState, dict[RxEvent, RxState]] = {
    RxState.ABSENT: {RxEvent.CREATED: RxState.RECEIVING},
    RxState.RECEIVING: {
        RxEvent.CREATED: RxState.RECEIVING,
        RxEvent.CREATED_AGAIN: RxState.RECEIVING,
        RxEvent.CHUNK_STORED: RxState.RECEIVING,
        RxEvent.CHUNK_DISCARDED: RxState.RECEIVING,
        RxEvent.TAIL_DROPPED: RxState.RECEIVING,
        RxEvent.LAST_CHUNK_STORED: RxState.VERIFYING,
        RxEvent.TERMINATED: RxState.ABSENT,
        RxEvent.EXPIRED: RxState.ABSENT,
    },
    RxState.VERIFYING: {
        RxEvent.DIGEST_MATCHED: RxState.COMMITTING,
        RxEvent.DIGEST_MISMATCHED: RxState.ABSENT,
    },
    RxState.COMMITTING: {RxEvent.COMMIT_DURABLE: RxState.COMMITTED, RxEvent.COMMIT_REFUSED: RxState.ABSENT},
    RxState.COMMITTED: {},
}


@dataclass(frozen=True)
class Respond:
    """Send this answer now (everything the receiver asked for is already durable)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResetStaging:
    """Creation: make the staging file empty (new upload, or a new manifest replacing an old one),
    persist the upload record, then send ``answer``."""

    manifest: Manifest
    answer: Respond


@dataclass(frozen=True)
class StoreChunk:
    """PATCH accepted for reading: stream at most ``length`` bytes to the staging file at ``offset``,
    hashing them with ``checksum.algorithm`` when a checksum was given; then call ``end_chunk``."""

    offset: int
    length: int
    checksum: Checksum | None
    tail_check: TailCheck | None = None  # first: hash staging bytes [start, end) and call ``tail_checked``


@dataclass(frozen=True)
class TailCheck:
    """The sender vouched for the unverified tail: compare sha256 of staging ``[start, end)`` with ``sha256``."""

    start: int
    end: int
    sha256: str


@dataclass(frozen=True)
class KeepChunk:
    """The chunk is good: fsync the staging file, persist ``new_offset``; then, if ``verify`` is set,
    hash the whole staging file and call ``segment_digest``; else send ``answer``."""

    new_offset: int
    verify: bool
    answer: Respond | None


@dataclass(frozen=True)
class DropChunk:
    """The chunk is bad or incomplete: truncate the staging file back to ``offset``; answer ``error``
    if the connection is still there to answer on."""

    offset: int
    error: RemoteProtocolError | None


@dataclass(frozen=True)
class CommitSegment:
    """The digest matched: commit ``manifest`` to the ledger (exactly once), then call ``committed``."""

    manifest: Manifest


@dataclass(frozen=True)
class DiscardUpload:
    """The whole segment did not match its sha256: delete the staging file and answer ``error``."""

    error: RemoteProtocolError


class UploadReceiver:
    """The hub's view of one upload URL. See the module docstring for the rules."""

    def __init__(self, segment: SegmentId) -> None:
        self.segment = segment
        self.state = RxState.ABSENT
        self.manifest: Manifest | None = None
        self.offset = 0
        self.verified = 0  # [0, verified) is covered by chunk checksums or a checked tail digest
        self.expires_at = 0.0

    # -- rebuilding from persisted state -------------------------------------------------------------

    @classmethod
    def restore(
        cls, segment: SegmentId, *, committed: Manifest | None = None, staged: Manifest | None = None,
        durable_offset: int = 0, expires_at: float = 0.0,
    ) -> UploadReceiver:
        """Rebuild after a restart: from the ledger (``committed``) or the staging record."""
        receiver = cls(segment)
        if committed is not None:
            receiver._check_segment(committed)
            receiver.state, receiver.manifest = RxState.COMMITTED, committed
            receiver.offset = committed.byte_size
        elif staged is not None:
            receiver._check_segment(staged)
            if not 0 <= durable_offset <= staged.byte_size:
                raise LocalProtocolError(
                    f"persisted offset {durable_offset} is outside 0..{staged.byte_size}", op="restoring",
                    subject=str(segment), hint="the staging record is damaged; delete it and let the edge resend",
                )
            receiver.manifest, receiver.offset, receiver.expires_at = staged, durable_offset, expires_at
            # What was verified before the restart is not persisted: treat every kept byte as unverified.
            # A Harbour sender then vouches for [0, offset) once; the segment digest guards everyone else.
            receiver.verified = 0
            # A crash between the last fsync and the commit leaves a complete, unverified upload.
            receiver.state = RxState.VERIFYING if durable_offset == staged.byte_size else RxState.RECEIVING
        return receiver

    def _check_segment(self, manifest: Manifest) -> None:
        if manifest.segment != self.segment:
            raise LocalProtocolError(f"manifest of {manifest.segment} given to the receiver of {self.segment}")

    # -- transitions ---------------------------------------------------------------------------------

    def _move(self, event: RxEvent) -> None:
        target = RECEIVER_TRANSITIONS[self.state].get(event)
        if target is None:
            raise LocalProtocolError(
                f"event {event.value!r} is not allowed in state {self.state.value!r}", op="receiving",
                subject=str(self.segment), hint="the hub handler skipped a step of the receiver protocol",
            )
        self.state = target

    @property
    def location(self) -> str:
        return f"{UPLOADS_PATH}/{self.segment.upload_key}"

    def _headers(self) -> dict[str, str]:
        headers = {TUS_RESUMABLE: TUS_VERSION, UPLOAD_OFFSET: str(self.offset), "Cache-Control": "no-store"}
        if self.manifest is not None:
            headers[UPLOAD_LENGTH] = str(self.manifest.byte_size)
        if self.state is RxState.COMMITTED:
            headers[HARBOUR_COMMIT] = COMMITTED
        elif self.state is RxState.RECEIVING:
            headers[UPLOAD_EXPIRES] = format_expires(self.expires_at)
            headers[HARBOUR_VERIFIED_OFFSET] = str(self.verified)
        return headers

    def _touch(self, now: float) -> None:
        self.expires_at = now + UPLOAD_EXPIRY_SECONDS

    def expired(self, now: float) -> bool:
        return self.state is RxState.RECEIVING and now >= self.expires_at

    def expire(self) -> None:
        """The hub's sweeper found the upload idle past its expiry; it deletes the staging file."""
        self._move(RxEvent.EXPIRED)
        self.manifest, self.offset = None, 0

    def _refuse_if_expired(self, now: float, op: str) -> None:
        if self.expired(now):
            raise RemoteProtocolError(
                f"upload {self.segment} expired", code=ErrorCode.UPLOAD_GONE, op=op, subject=self.location,
                hint="create the upload again",
            )

    def _require_not_verifying(self) -> None:
        if self.state in (RxState.VERIFYING, RxState.COMMITTING):
            raise LocalProtocolError(
                f"upload {self.segment} is {self.state.value}; finish verify/commit before serving requests",
                op="serving", subject=self.location,
            )

    # -- creation (POST) -------------------------------------------------------------------------------

    def create(self, manifest: Manifest, upload_length: int, now: float) -> ResetStaging | Respond:
        self._require_not_verifying()
        self._check_segment(manifest)
        if upload_length != manifest.byte_size:
            raise RemoteProtocolError(
                f"Upload-Length {upload_length} differs from the manifest's byte-size {manifest.byte_size}",
                code=ErrorCode.BAD_MANIFEST, op="creating upload", subject=str(self.segment),
            )
        if self.state is RxState.COMMITTED:
            assert self.manifest is not None
            if self.manifest.sha256 != manifest.sha256:
                raise RemoteProtocolError(
                    f"segment {self.segment} is already committed with sha256 {self.manifest.sha256[:16]}..., "
                    f"not {manifest.sha256[:16]}...", code=ErrorCode.SEGMENT_CONFLICT, op="creating upload",
                    subject=str(self.segment),
                    hint="the ship's segment history diverged from the hub's (restored or wiped data dir?)",
                )
            return Respond(201, {"Location": self.location, **self._headers()})
        if self.expired(now):
            self.expire()
        if self.state is RxState.RECEIVING and self.manifest == manifest:
            self._move(RxEvent.CREATED_AGAIN)
            self._touch(now)
            return Respond(201, {"Location": self.location, **self._headers()})
        # New, or a different manifest for a seq that was never committed: the edge is the
        # authority on its own uncommitted segment, so the old partial upload is replaced.
        self._move(RxEvent.CREATED)
        self.manifest, self.offset = manifest, 0
        self._touch(now)
        return ResetStaging(manifest, Respond(201, {"Location": self.location, **self._headers()}))

    # -- offset (HEAD) ---------------------------------------------------------------------------------

    def probe(self, now: float) -> Respond:
        self._require_not_verifying()
        if self.state is RxState.ABSENT:
            raise RemoteProtocolError(
                f"no upload for {self.segment}", code=ErrorCode.UPLOAD_NOT_FOUND, op="probing",
                subject=self.location, hint="create the upload (POST) first",
            )
        self._refuse_if_expired(now, "probing")
        return Respond(200, self._headers())

    # -- chunks (PATCH) --------------------------------------------------------------------------------

    def begin_chunk(
        self, offset: int, content_length: int, checksum: Checksum | None, now: float, tail: TailClaim | None = None,
    ) -> StoreChunk | Respond:
        """A PATCH at ``offset``. ``tail`` is the sender's digest of the unverified tail (Harbour's
        ``Harbour-Tail-Sha256``); it must start where the hub's verified bytes end, else the sender was
        told another story (e.g. the hub restarted since) and must ask again (409, nothing dropped)."""
        self._require_not_verifying()
        if self.state is RxState.ABSENT:
            raise RemoteProtocolError(
                f"no upload for {self.segment}", code=ErrorCode.UPLOAD_NOT_FOUND, op="patching",
                subject=self.location, hint="create the upload (POST) first",
            )
        self._refuse_if_expired(now, "patching")
        if offset != self.offset:
            raise RemoteProtocolError(
                f"Upload-Offset {offset} is not the hub's offset {self.offset}", code=ErrorCode.OFFSET_MISMATCH,
                op="patching", subject=self.location, hint="HEAD the upload and continue from its offset",
                headers=self._headers(),
            )
        if self.state is RxState.COMMITTED:
            return Respond(204, self._headers())  # a replay of the final chunk: idempotent
        assert self.manifest is not None
        if offset + content_length > self.manifest.byte_size:
            raise RemoteProtocolError(
                f"chunk of {content_length} bytes at offset {offset} runs past Upload-Length "
                f"{self.manifest.byte_size}", code=ErrorCode.BAD_REQUEST, op="patching", subject=self.location,
            )
        if tail is not None and tail.start != self.verified:
            raise RemoteProtocolError(
                f"Harbour-Tail-Sha256 starts at {tail.start}, the hub's verified offset is {self.verified}",
                code=ErrorCode.OFFSET_MISMATCH, op="patching", subject=self.location,
                hint="HEAD the upload and vouch for the tail it reports", headers=self._headers(),
            )
        check = None
        if tail is not None and self.verified < self.offset:
            check = TailCheck(self.verified, self.offset, tail.sha256)
        return StoreChunk(offset, content_length, checksum, check)

    def tail_checked(self, plan: StoreChunk, matches: bool) -> DropChunk | None:
        """The handler hashed ``plan.tail_check``'s range. ``None``: go on storing the chunk. ``DropChunk``:
        the tail was damaged on the way; truncate to its start, persist that offset, answer the error."""
        check = plan.tail_check
        if check is None or self.state is not RxState.RECEIVING or check.end != self.offset:
            raise LocalProtocolError("tail_checked without a matching tail check", subject=self.location)
        if matches:
            self.verified = self.offset
            return None
        self._move(RxEvent.TAIL_DROPPED)
        self.offset = self.verified
        return DropChunk(self.offset, RemoteProtocolError(
            f"the {check.end - check.start} bytes kept after a cut at offset {check.start} do not match the sender's "
            "digest; they were dropped", code=ErrorCode.OFFSET_MISMATCH, op="patching", subject=self.location,
            hint="HEAD the upload and continue from its offset", headers=self._headers(),
        ))

    def end_chunk(self, plan: StoreChunk, received: int, checksum_ok: bool | None, now: float) -> KeepChunk | DropChunk:
        """Report what arrived: ``received`` bytes (fewer than planned if the body was cut short) and,
        when the plan carried a checksum and the body arrived whole, whether it matched."""
        if self.state is not RxState.RECEIVING or plan.offset != self.offset:
            raise LocalProtocolError("end_chunk without a matching begin_chunk", subject=self.location)
        if not 0 <= received <= plan.length:
            raise LocalProtocolError(f"received {received} bytes for a plan of {plan.length}")
        whole = received == plan.length
        damaged = whole and plan.checksum is not None and checksum_ok is not True
        if damaged or received == 0:
            self._move(RxEvent.CHUNK_DISCARDED)
            error = None
            if damaged:
                assert plan.checksum is not None
                error = RemoteProtocolError(
                    f"chunk at offset {plan.offset} does not match its {plan.checksum.algorithm} checksum",
                    code=ErrorCode.CHECKSUM_MISMATCH, op="patching", subject=self.location,
                    hint="the bytes were damaged on the way; send the chunk again", headers=self._headers(),
                )
            return DropChunk(plan.offset, error)
        assert self.manifest is not None
        self.offset += received
        if whole and plan.checksum is not None and self.verified == plan.offset:
            self.verified = self.offset  # checked, and nothing unverified before it
        self._touch(now)
        if self.offset == self.manifest.byte_size:
            self._move(RxEvent.LAST_CHUNK_STORED)
            return KeepChunk(self.offset, verify=True, answer=None)
        self._move(RxEvent.CHUNK_STORED)
        return KeepChunk(self.offset, verify=False, answer=Respond(204, self._headers()))

    # -- completion --------------------------------------------------------------------------------------

    def segment_digest(self, sha256_hex: str) -> CommitSegment | DiscardUpload:
        """The sha256 of the complete staging file, as the handler computed it."""
        if self.state is not RxState.VERIFYING:
            raise LocalProtocolError(f"segment_digest in state {self.state.value}", subject=self.location)
        assert self.manifest is not None
        if sha256_hex == self.manifest.sha256:
            self._move(RxEvent.DIGEST_MATCHED)
            return CommitSegment(self.manifest)
        self._move(RxEvent.DIGEST_MISMATCHED)
        expected = self.manifest.sha256
        self.manifest, self.offset = None, 0
        return DiscardUpload(RemoteProtocolError(
            f"segment sha256 {sha256_hex[:16]}... does not match the manifest's {expected[:16]}...",
            code=ErrorCode.SEGMENT_DIGEST_MISMATCH, op="completing upload", subject=self.location,
            hint="the upload was discarded; create it again and resend from offset 0",
        ))

    def committed(self) -> Respond:
        """The ledger commit is durable (or the ledger already had this exact segment)."""
        self._move(RxEvent.COMMIT_DURABLE)
        return Respond(204, self._headers())

    def commit_refused(self, error: RemoteProtocolError) -> DiscardUpload:
        """The ledger refused the commit (e.g. another upload committed a different digest for this seq,
        or the hash chain no longer fits): discard the upload and answer ``error``; the sender parks."""
        self._move(RxEvent.COMMIT_REFUSED)
        self.manifest, self.offset = None, 0
        return DiscardUpload(error)

    # -- termination (DELETE) ----------------------------------------------------------------------------

    def terminate(self) -> Respond:
        """The handler deletes the staging file, then sends the answer."""
        self._require_not_verifying()
        if self.state is RxState.COMMITTED:
            raise RemoteProtocolError(
                f"segment {self.segment} is committed and cannot be terminated",
                code=ErrorCode.ALREADY_COMMITTED, op="terminating", subject=self.location,
                headers=self._headers(),
            )
        if self.state is RxState.ABSENT:
            raise RemoteProtocolError(
                f"no upload for {self.segment}", code=ErrorCode.UPLOAD_NOT_FOUND, op="terminating",
                subject=self.location,
            )
        self._move(RxEvent.TERMINATED)
        self.manifest, self.offset = None, 0
        return Respond(204, {TUS_RESUMABLE: TUS_VERSION})
