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
* A PATCH may carry any number of bytes up to the upload's remaining ones (tus 1.0.0). The handler streams
  it to the staging file and, every ``DURABLE_SLICE_BYTES``, fsyncs and persists the offset this receiver
  gives it (``slice_stored``), so neither memory nor the work a crash loses grows with the body.
* What arrives is kept, even when a chunk is cut short, so a cut costs only the bytes that never
  reached the hub (G3) and a link that drops every few kilobytes still advances. Kept bytes that no
  checksum has covered yet form the *unverified tail* ``[verified, offset)``: ``HEAD`` reports it as
  ``Harbour-Verified-Offset``, and a Harbour sender's next PATCH carries ``Harbour-Tail-Sha256`` so
  the hub checks the tail before appending to it; a tail that does not match is dropped (409, resume
  at the verified offset). A whole chunk that fails its ``Upload-Checksum`` is dropped (460) (G4).
  Plain tus clients never send the tail digest; for them the whole-segment sha256 is the guard.
* When the last byte arrives the whole staging file is hashed and compared with the manifest's
  sha256. A mismatch discards the upload (the sender starts over). On a match the handler reads the
  file's Parquet footer and the manifest's row count and schema fingerprint must match it
  (``segment_contents``); only then is it committed. A lying manifest is discarded with
  ``422 manifest-mismatch`` and refused again at creation, so a sender is never told ``committed`` for
  a segment the merger would quarantine.
* Commit is exactly once: the ledger's ``(site, table, seq)`` key is unique, and every later request
  for a committed segment gets an idempotent answer carrying ``Harbour-Commit: committed`` (G2).
* A hub restart rebuilds receivers from what was persisted (``restore``); anything not durable was
  never acknowledged, so the sender's HEAD finds the true offset.

Every decision about an upload's state is made here and handed out as an action (``ResetStaging``,
``StoreChunk``, ``ForgetUpload``, ...): the hub's upload service performs actions and reports outcomes, and
never looks at ``state`` itself. Forgetting an upload (terminated, expired, discarded) is always one of
``ForgetUpload`` or ``DiscardUpload``, so the service has one place that deletes the staging file and the
upload record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .identifiers import SegmentId
from .limits import (
    DURABLE_SLICE_BYTES,
    MAX_ANNOUNCED_BYTES_PER_SITE,
    MAX_OPEN_UPLOADS_PER_SITE,
    TUS_VERSION,
    UPLOAD_EXPIRY_SECONDS,
)
from .manifest import Manifest
from .segment_contents import SegmentContents, contents_problem, refused_again
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
    CHECKING = "checking"  # the digest matched; the file's footer is compared with the manifest
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
    CONTENTS_MATCHED = "contents matched"  # the file's row count and schema are the manifest's
    CONTENTS_MISMATCHED = "contents mismatched"  # the manifest lies about its file (or it is not Parquet)
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
        RxEvent.DIGEST_MATCHED: RxState.CHECKING,
        RxEvent.DIGEST_MISMATCHED: RxState.ABSENT,
    },
    RxState.CHECKING: {
        RxEvent.CONTENTS_MATCHED: RxState.COMMITTING,
        RxEvent.CONTENTS_MISMATCHED: RxState.ABSENT,
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
class CheckManifest:
    """Creation of an upload that is not committed: ask the ledger whether ``manifest`` would splice the
    committed hash chain (that refusal is an error to answer) and whether exactly this manifest was refused
    before and why; then call ``manifest_checked``."""

    manifest: Manifest
    upload_length: int


@dataclass(frozen=True)
class SiteUploads:
    """A site's unfinished, unexpired uploads at the hub (other than the one being created)."""

    count: int = 0
    announced_bytes: int = 0


def _within_site_limits(manifest: Manifest, others: SiteUploads) -> None:
    """Refuse a new upload that would take its site past ``MAX_OPEN_UPLOADS_PER_SITE`` (429) or
    ``MAX_ANNOUNCED_BYTES_PER_SITE`` (507): both retryable, since finished and expired uploads free room."""
    site = manifest.segment.site
    if others.count >= MAX_OPEN_UPLOADS_PER_SITE:
        raise RemoteProtocolError(
            f"site {site} has {others.count} unfinished uploads at the hub (at most {MAX_OPEN_UPLOADS_PER_SITE})",
            code=ErrorCode.RATE_LIMITED, op="creating upload", subject=str(manifest.segment),
            headers={"Retry-After": "60"}, hint="finish or terminate (DELETE) the uploads already started")
    if others.announced_bytes + manifest.byte_size > MAX_ANNOUNCED_BYTES_PER_SITE:
        raise RemoteProtocolError(
            f"site {site}'s unfinished uploads would announce {others.announced_bytes + manifest.byte_size} bytes"
            f" (at most {MAX_ANNOUNCED_BYTES_PER_SITE})", code=ErrorCode.DISK_FULL, op="creating upload",
            subject=str(manifest.segment), headers={"Retry-After": "60"},
            hint="finish or terminate (DELETE) the uploads already started")


@dataclass(frozen=True)
class KeepUpload:
    """Creation again with the same manifest: the upload resumes where it stands, and its expiry moved.
    Persist the upload record (manifest, offset, ``expires_at``), then send ``answer``."""

    answer: Respond


@dataclass(frozen=True)
class ForgetUpload:
    """The upload is gone (terminated or expired): delete the staging file, then the upload record (a crash
    between the two leaves a record whose file is missing, which recovery restarts; never an orphan file).
    Then send ``answer`` if there is one."""

    answer: Respond | None = None


@dataclass(frozen=True)
class VerifySegment:
    """Every byte of the upload is durable but it was never committed (the hub stopped in between): hash the
    whole staging file and call ``segment_digest`` before serving any request for it."""


@dataclass(frozen=True)
class ResetStaging:
    """Creation: make the staging file empty (new upload, or a new manifest replacing an old one),
    persist the upload record, then send ``answer``."""

    manifest: Manifest
    answer: Respond


@dataclass(frozen=True)
class StoreChunk:
    """PATCH accepted for reading: stream at most ``length`` bytes to the staging file at ``offset``,
    hashing them with ``checksum.algorithm`` when a checksum was given; each time at least ``slice_bytes``
    more have been written, fsync and call ``slice_stored``; at the end call ``end_chunk``."""

    offset: int
    length: int
    checksum: Checksum | None
    tail_check: TailCheck | None = None  # first: hash staging bytes [start, end) and call ``tail_checked``
    slice_bytes: int = DURABLE_SLICE_BYTES


@dataclass(frozen=True)
class KeepSlice:
    """The first part of a long chunk is fsync'd: persist ``offset`` as the durable offset, then read on.
    Those bytes are kept after a cut or a crash, as an unverified tail until the chunk's checksum covers them."""

    offset: int


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
    if the connection is still there to answer on. With ``lowered``, bytes past ``offset`` were counted as
    durable (an unverified tail, or slices of this chunk): persist ``offset`` first, then truncate."""

    offset: int
    error: RemoteProtocolError | None
    lowered: bool = False


@dataclass(frozen=True)
class CheckContents:
    """The digest matched: read the staging file's Parquet footer, then call ``contents_read``."""

    manifest: Manifest


@dataclass(frozen=True)
class CommitSegment:
    """The digest matched: commit ``manifest`` to the ledger (exactly once), then call ``committed``."""

    manifest: Manifest


@dataclass(frozen=True)
class DiscardUpload:
    """The upload cannot commit: forget it as ``ForgetUpload`` says (staging file, then record) and answer
    ``error``. With ``refuse_again``, the record goes in the same transaction that records that manifest as
    refused (with ``error.message``), so that creating it again is refused at once."""

    error: RemoteProtocolError
    refuse_again: Manifest | None = None


def expiry_passed(expires_at: float, now: float) -> bool:
    """The tus expiration rule: an upload idle until ``expires_at`` is gone from then on. A sweeper may use
    it to skip uploads that cannot have expired, without building their receivers; the receiver decides."""
    return now >= expires_at


SETTLED_STATES = frozenset({RxState.ABSENT, RxState.COMMITTED})
"""States the durable records describe completely (nothing, or the ledger's committed row): a receiver in
one of them holds nothing worth caching."""


class UploadReceiver:
    """The hub's view of one upload URL. See the module docstring for the rules."""

    def __init__(self, segment: SegmentId, slice_bytes: int = DURABLE_SLICE_BYTES) -> None:
        if slice_bytes < 1:
            raise LocalProtocolError(f"slice_bytes must be at least 1, got {slice_bytes}", subject=str(segment))
        self.segment = segment
        self.slice_bytes = slice_bytes  # how much of a long chunk is made durable at a time
        self.state = RxState.ABSENT
        self.manifest: Manifest | None = None
        self.offset = 0
        self.verified = 0  # [0, verified) is covered by chunk checksums or a checked tail digest
        self.expires_at = 0.0
        self._chunk: StoreChunk | None = None  # the PATCH being stored, from begin_chunk to end_chunk

    # -- rebuilding from persisted state -------------------------------------------------------------

    @classmethod
    def restore(
        cls, segment: SegmentId, *, committed: Manifest | None = None, staged: Manifest | None = None,
        durable_offset: int = 0, expires_at: float = 0.0, slice_bytes: int = DURABLE_SLICE_BYTES,
    ) -> UploadReceiver:
        """Rebuild after a restart: from the ledger (``committed``) or the staging record."""
        receiver = cls(segment, slice_bytes)
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

    def after_restore(self) -> VerifySegment | None:
        """What a restored upload needs before it serves requests: a complete upload that never committed is
        verified (and committed) first."""
        return VerifySegment() if self.state is RxState.VERIFYING else None

    @property
    def settled(self) -> bool:
        """True when the durable records say all there is to know: the receiver need not be kept in memory."""
        return self.state in SETTLED_STATES

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
        return self.state is RxState.RECEIVING and expiry_passed(self.expires_at, now)

    def _expire(self) -> None:
        self._move(RxEvent.EXPIRED)
        self.manifest, self.offset = None, 0

    def sweep(self, now: float) -> ForgetUpload | None:
        """The hub's sweeper asks about this upload: ``ForgetUpload`` if it is idle past its expiry (only then
        does the sweeper count it as dropped), else None."""
        if not self.expired(now):
            return None
        self._expire()
        return ForgetUpload()

    def _refuse_if_expired(self, now: float, op: str) -> None:
        if self.expired(now):
            raise RemoteProtocolError(
                f"upload {self.segment} expired", code=ErrorCode.UPLOAD_GONE, op=op, subject=self.location,
                hint="create the upload again",
            )

    def _require_not_verifying(self) -> None:
        if self.state in (RxState.VERIFYING, RxState.CHECKING, RxState.COMMITTING):
            raise LocalProtocolError(
                f"upload {self.segment} is {self.state.value}; finish verify/commit before serving requests",
                op="serving", subject=self.location,
            )

    # -- creation (POST) -------------------------------------------------------------------------------

    def create(self, manifest: Manifest, upload_length: int, now: float) -> Respond | CheckManifest:
        """POST. A committed segment answers at once (idempotent, or a conflict); any other creation first
        needs the ledger's word on the manifest (``CheckManifest``, then ``manifest_checked``)."""
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
        return CheckManifest(manifest, upload_length)

    def manifest_checked(self, check: CheckManifest, refused: str | None, now: float,
                         site_uploads: SiteUploads = SiteUploads()) -> ResetStaging | KeepUpload:
        """The ledger found nothing against the manifest's chain link. ``refused``: the hub refused exactly
        this manifest before (``DiscardUpload.refuse_again``), why. ``site_uploads``: the site's other unfinished,
        unexpired uploads, which bound how many more it may start."""
        self._require_not_verifying()
        manifest = check.manifest
        self._check_segment(manifest)
        if self.state is RxState.COMMITTED:  # committed by another request since ``create``: answer as one
            raise LocalProtocolError("manifest_checked after the segment committed", subject=self.location,
                                     hint="call create again under the upload's lock")
        if refused is not None:
            raise refused_again(manifest, refused)
        if self.expired(now):
            self._expire()
        if self.state is RxState.RECEIVING and self.manifest == manifest:
            self._move(RxEvent.CREATED_AGAIN)
            self._touch(now)
            return KeepUpload(Respond(201, {"Location": self.location, **self._headers()}))
        # New, or a different manifest for a seq that was never committed: the edge is the
        # authority on its own uncommitted segment, so the old partial upload is replaced.
        _within_site_limits(manifest, site_uploads)
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
        if content_length == 0 and tail is None:
            return Respond(204, self._headers())  # an empty PATCH moves nothing: the offset, as tus servers answer
        check = None
        if tail is not None and self.verified < self.offset:
            check = TailCheck(self.verified, self.offset, tail.sha256)
        self._chunk = StoreChunk(offset, content_length, checksum, check, self.slice_bytes)
        return self._chunk

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
        self.offset, self._chunk = self.verified, None
        return DropChunk(self.offset, RemoteProtocolError(
            f"the {check.end - check.start} bytes kept after a cut at offset {check.start} do not match the sender's "
            "digest; they were dropped", code=ErrorCode.OFFSET_MISMATCH, op="patching", subject=self.location,
            hint="HEAD the upload and continue from its offset", headers=self._headers(),
        ), lowered=True)

    def _chunk_kept(self, plan: StoreChunk, op: str) -> int:
        """Bytes of the chunk in ``plan`` already counted as durable (by ``slice_stored``)."""
        kept = self.offset - plan.offset
        if self.state is not RxState.RECEIVING or plan is not self._chunk or not 0 <= kept <= plan.length:
            raise LocalProtocolError(f"{op} without a matching begin_chunk", subject=self.location)
        return kept

    def slice_stored(self, plan: StoreChunk, received: int) -> KeepSlice:
        """The handler fsync'd the chunk's first ``received`` bytes (fewer than planned): they count from now
        on, so a cut or a crash keeps them. They stay unverified until the whole chunk matches its checksum."""
        kept = self._chunk_kept(plan, "slice_stored")
        if not kept < received < plan.length:
            raise LocalProtocolError(f"slice of {received} bytes after {kept} kept of a {plan.length}-byte chunk",
                                     subject=self.location)
        self.offset = plan.offset + received
        return KeepSlice(self.offset)

    def end_chunk(self, plan: StoreChunk, received: int, checksum_ok: bool | None, now: float) -> KeepChunk | DropChunk:
        """Report what arrived: ``received`` bytes (fewer than planned if the body was cut short) and,
        when the plan carried a checksum and the body arrived whole, whether it matched."""
        kept = self._chunk_kept(plan, "end_chunk")
        if not kept <= received <= plan.length:
            raise LocalProtocolError(f"received {received} bytes for a plan of {plan.length} ({kept} kept)")
        self._chunk = None
        whole = received == plan.length
        damaged = whole and plan.checksum is not None and checksum_ok is not True
        if damaged or received == 0:
            self._move(RxEvent.CHUNK_DISCARDED)
            self.offset = plan.offset  # slices of a damaged chunk go with it: the damage may be in them
            error = None
            if damaged:
                assert plan.checksum is not None
                error = RemoteProtocolError(
                    f"chunk at offset {plan.offset} does not match its {plan.checksum.algorithm} checksum",
                    code=ErrorCode.CHECKSUM_MISMATCH, op="patching", subject=self.location,
                    hint="the bytes were damaged on the way; send the chunk again", headers=self._headers(),
                )
            return DropChunk(plan.offset, error, lowered=kept > 0)
        assert self.manifest is not None
        self.offset = plan.offset + received
        if whole and plan.checksum is not None and self.verified == plan.offset:
            self.verified = self.offset  # checked, and nothing unverified before it
        self._touch(now)
        if self.offset == self.manifest.byte_size:
            self._move(RxEvent.LAST_CHUNK_STORED)
            return KeepChunk(self.offset, verify=True, answer=None)
        self._move(RxEvent.CHUNK_STORED)
        return KeepChunk(self.offset, verify=False, answer=Respond(204, self._headers()))

    # -- completion --------------------------------------------------------------------------------------

    def segment_digest(self, sha256_hex: str) -> CheckContents | DiscardUpload:
        """The sha256 of the complete staging file, as the handler computed it."""
        if self.state is not RxState.VERIFYING:
            raise LocalProtocolError(f"segment_digest in state {self.state.value}", subject=self.location)
        assert self.manifest is not None
        if sha256_hex == self.manifest.sha256:
            self._move(RxEvent.DIGEST_MATCHED)
            return CheckContents(self.manifest)
        self._move(RxEvent.DIGEST_MISMATCHED)
        expected = self.manifest.sha256
        self.manifest, self.offset = None, 0
        return DiscardUpload(RemoteProtocolError(
            f"segment sha256 {sha256_hex[:16]}... does not match the manifest's {expected[:16]}...",
            code=ErrorCode.SEGMENT_DIGEST_MISMATCH, op="completing upload", subject=self.location,
            hint="the upload was discarded; create it again and resend from offset 0",
        ))

    def contents_read(self, contents: SegmentContents) -> CommitSegment | DiscardUpload:
        """What the handler read from the staging file's Parquet footer. The segment commits only if its
        manifest describes the file; otherwise the upload is discarded and the manifest refused (422)."""
        if self.state is not RxState.CHECKING:
            raise LocalProtocolError(f"contents_read in state {self.state.value}", subject=self.location)
        assert self.manifest is not None
        problem = contents_problem(self.manifest, contents)
        if problem is None:
            self._move(RxEvent.CONTENTS_MATCHED)
            return CommitSegment(self.manifest)
        self._move(RxEvent.CONTENTS_MISMATCHED)
        manifest = self.manifest
        self.manifest, self.offset = None, 0
        return DiscardUpload(problem, refuse_again=manifest)

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

    def terminate(self) -> ForgetUpload:
        """DELETE: the handler forgets the upload, then sends the answer."""
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
        return ForgetUpload(Respond(204, {TUS_RESUMABLE: TUS_VERSION}))
