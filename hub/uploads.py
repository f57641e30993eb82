"""The upload service: drives one ``UploadReceiver`` per segment and does the I/O it asks for.

The receiver (``sync_protocol.receiver``) decides; this module only carries out its decisions, in the
order the receiver's docstring requires: a kept chunk is fsync'd and its offset persisted in the ledger
*before* the answer is returned, so a SIGKILL at any point leaves the upload at an offset that was never
over-reported (G3). A PATCH may be as long as the upload's remaining bytes: its body is streamed to the
staging file (never held whole), hashed on the way, and made durable slice by slice, so a cut or a crash
mid-body keeps what arrived. A complete upload commits only after its sha256 and then its Parquet footer
(row count, schema fingerprint) match the manifest. All blocking work (file writes, fsync, hashing,
SQLite) runs in a thread pool, so uploads from many ships proceed side by side; requests for the *same*
upload are serialised by a per-upload ``asyncio.Lock`` and, in a hub cluster, by a lock every process of the
cluster sees (``SharedLocks``: a PostgreSQL advisory lock, freed when its holder dies), so that two processes
never write one staging file at once.

The durable records (ledger + staging file) are the truth; the in-memory receivers are a cache. When
anything unexpected fails half-way, the receiver is evicted and rebuilt from the records on the next
request, so memory and disk cannot drift apart. In a cluster another process may have moved the upload since,
so there the receiver is rebuilt from the records at every request.

This service makes no protocol decision of its own: it never looks at a receiver's state, and every
upload the receiver forgets (terminated, expired, discarded, refused at commit) goes through ``_forget``.
It reaches the ledger and the staging area only through ``hub.upload_storage``'s protocols, so the
protocol simulation runs this very class over in-memory storage (``hub.simulated_hub``). It knows no
HTTP library: a request body is a ``BodyReader`` that ends early (b"") or raises ``ConnectionError`` on a
cut; ``hub.http_api`` translates aiohttp's own errors into that.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import DURABLE_SLICE_BYTES
from sync_protocol.manifest import Manifest
from sync_protocol.receiver import (
    CheckContents,
    CheckManifest,
    CommitSegment,
    DiscardUpload,
    DropChunk,
    ForgetUpload,
    KeepUpload,
    Respond,
    StoreChunk,
    UploadReceiver,
    expiry_passed,
)
from sync_protocol.segment_contents import SegmentContents
from sync_protocol.tus import Checksum, TailClaim

from .durable import is_disk_full
from .faults import CrashHook, no_crash
from .upload_storage import ChunkHandle, SharedLocks, UploadLedger, UploadStaging

log = logging.getLogger("harbour.hub.uploads")

WRITE_BUFFER_BYTES = 1024 * 1024
"""Body bytes gathered before one write to disk: few enough thread hops per chunk, and a bounded
amount of memory per upload however large the chunk (the body is never held whole)."""

BODY_IDLE_TIMEOUT_SECONDS = 25.0
"""A chunk whose body stalls this long is treated as cut, and the upload's lock is freed for the resumed
request. Satellite links go silent without closing; the edge gives up on a silent request after 20 s
(``edge_node.sync.transport.STALL_SECONDS``) and comes back with a HEAD, which waits for this lock: so
this must be a little longer than the edge's watchdog (the old request's bytes still count) and short
enough that the resume lands within 30 s of the stall. The edge feeds bodies in 16 KiB slices, so even a
capped, shared 256 kbit/s uplink moves each upload's body well within it."""

READ_PIECE_BYTES = 256 * 1024

SHARED_LOCK_WAIT_SECONDS = BODY_IDLE_TIMEOUT_SECONDS + 5.0
"""How long a request waits for an upload another process of the cluster holds, before answering 423 (retry):
longer than a stalled body may hold it, so that the request resuming after a stall gets through."""

SHARED_LOCK_POLL_SECONDS = (0.01, 0.25)
"""First and longest pause between tries for a held upload lock (PostgreSQL advisory locks are tried, not
waited for: a waiting request must not hold a database connection)."""


def disk_full(segment: SegmentId, error: BaseException) -> RemoteProtocolError:
    """507 for a chunk the hub's disk could not hold: the edge keeps the segment and retries later; what was
    answered before stays durable (the receiver is reloaded from the ledger)."""
    return RemoteProtocolError(
        f"the hub's disk is full: {getattr(error, 'strerror', None) or error}", code=ErrorCode.DISK_FULL,
        op="storing the upload", subject=str(segment),
        hint="nothing of this request was kept; retry later (the hub's operator frees space)")

class BodyReader(Protocol):
    """A PATCH body: ``read`` returns up to ``n`` bytes, b"" at its end or when the link dropped (what
    arrived before the cut counts), or raises ``ConnectionError`` for a cut it could not turn into b""."""

    async def read(self, n: int) -> bytes: ...


RunInThread = Callable[..., Awaitable]


@dataclass
class UploadStats:
    bytes_received: int = 0
    chunks_kept: int = 0
    chunks_dropped: int = 0
    segments_committed: int = 0
    digest_failures: int = 0
    manifests_refused: int = 0  # complete uploads whose file was not what the manifest said


class UploadService:
    """``slice_bytes`` and ``write_buffer_bytes`` are the real limits by default; the protocol simulation makes
    them tiny so that its small chunks meet every slice boundary. ``body_idle_timeout=None`` trusts the body
    reader never to stall (in-memory bodies)."""

    def __init__(
        self, ledger: UploadLedger, staging: UploadStaging, clock: Callable[[], float], run_in_thread: RunInThread,
        *, on_commit: Callable[[SegmentId], None] = lambda segment: None,
        body_idle_timeout: float | None = BODY_IDLE_TIMEOUT_SECONDS, crash: CrashHook = no_crash,
        slice_bytes: int = DURABLE_SLICE_BYTES, write_buffer_bytes: int = WRITE_BUFFER_BYTES,
        shared_locks: SharedLocks | None = None, shared_lock_wait: float = SHARED_LOCK_WAIT_SECONDS,
    ) -> None:
        self._ledger = ledger
        self._staging = staging
        self._clock = clock
        self._io = run_in_thread
        self._on_commit = on_commit
        self._idle_timeout = body_idle_timeout
        self._crash = crash
        self._slice_bytes = slice_bytes
        self._write_buffer = write_buffer_bytes
        self._read_piece_bytes = min(READ_PIECE_BYTES, write_buffer_bytes)
        self._receivers: dict[SegmentId, UploadReceiver] = {}
        self._locks: dict[SegmentId, asyncio.Lock] = {}
        self._lock_users: dict[SegmentId, int] = {}
        self._shared_locks = shared_locks
        self._shared_lock_wait = shared_lock_wait
        self.stats = UploadStats()

    # -- receivers -----------------------------------------------------------------------------------

    async def _receiver(self, segment: SegmentId) -> UploadReceiver:
        """The receiver of ``segment``; rebuilt from the ledger when not cached. Call under its lock."""
        receiver = self._receivers.get(segment)
        if receiver is not None:
            return receiver
        committed = await self._io(self._ledger.committed, segment)
        staged = None if committed is not None else await self._io(self._ledger.staged, segment)
        receiver = UploadReceiver.restore(
            segment, committed=committed, staged=staged.manifest if staged else None,
            durable_offset=staged.offset if staged else 0, expires_at=staged.expires_at if staged else 0.0,
            slice_bytes=self._slice_bytes,
        )
        if receiver.after_restore() is not None:
            # Every byte was durable but the hub stopped before the commit: finish that first. A failure
            # leaves the receiver (and the records) without the upload; the sender starts it again.
            try:
                await self._verify_and_commit(receiver)
            except RemoteProtocolError as error:
                log.warning("recovered upload %s failed verification: %s", segment, error)
        return receiver

    async def _guarded(self, segment: SegmentId, step):
        """Run ``step(receiver)`` holding the upload (``_exclusive``); evict the receiver if it fails
        unexpectedly, and once it is settled (the ledger answers for it from then on)."""
        async with self._exclusive(segment, self._shared_lock_wait):
            receiver = await self._receiver(segment)
            self._receivers[segment] = receiver
            try:
                return await step(receiver)
            except RemoteProtocolError:
                raise
            except BaseException as error:
                self._receivers.pop(segment, None)  # its state may be ahead of the ledger: reload it next time
                if is_disk_full(error):
                    raise disk_full(segment, error) from error
                raise
            finally:
                if receiver.settled or self._shared_locks is not None:
                    self._receivers.pop(segment, None)

    @asynccontextmanager
    async def _exclusive(self, segment: SegmentId, wait: float) -> AsyncIterator[None]:
        """Hold ``segment``'s upload: its in-process lock, then (in a cluster) its shared lock, waiting for that
        at most ``wait`` seconds before answering UPLOAD_BUSY (423, retried by the sender).

        In-process locks are counted and dropped when nobody holds or waits for them, so memory does not grow
        with the number of segments ever received."""
        lock = self._locks.setdefault(segment, asyncio.Lock())
        self._lock_users[segment] = self._lock_users.get(segment, 0) + 1
        try:
            async with lock:
                if self._shared_locks is None:
                    yield
                    return
                name = f"upload:{segment.upload_key}"
                await self._take_shared(name, segment, wait)
                try:
                    yield
                finally:
                    await self._io(self._shared_locks.unlock, name)
        finally:
            self._lock_users[segment] -= 1
            if self._lock_users[segment] == 0:
                del self._lock_users[segment]
                del self._locks[segment]

    async def _take_shared(self, name: str, segment: SegmentId, wait: float) -> None:
        assert self._shared_locks is not None
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + wait, SHARED_LOCK_POLL_SECONDS[0]
        while not await self._io(self._shared_locks.try_lock, name):
            if loop.time() >= deadline:
                raise RemoteProtocolError(
                    f"another hub process is working on upload {segment}", code=ErrorCode.UPLOAD_BUSY,
                    op="waiting for the upload", subject=str(segment), headers={"Retry-After": "1"},
                    hint="retry in a moment (a stalled request frees it within "
                         f"{BODY_IDLE_TIMEOUT_SECONDS:.0f} s; a stopped process at once)")
            await asyncio.sleep(pause)
            pause = min(pause * 2, SHARED_LOCK_POLL_SECONDS[1])

    async def _forget(self, segment: SegmentId, refuse: Manifest | None = None, reason: str = "") -> None:
        """The one place an upload is forgotten: its staging file first, then its record (a crash in between
        leaves a record without a file, which recovery restarts, never a file nobody deletes). With
        ``refuse``, the record goes in the same transaction that remembers the manifest as refused."""
        await self._io(self._staging.delete, segment)
        if refuse is not None:
            await self._io(self._ledger.refuse, refuse, reason, self._clock())
        else:
            await self._io(self._ledger.drop_staged, segment)

    async def _discard(self, segment: SegmentId, discard: DiscardUpload) -> RemoteProtocolError:
        """Carry out the receiver's ``DiscardUpload``; returns the error to answer."""
        await self._forget(segment, discard.refuse_again, discard.error.message)
        return discard.error

    # -- creation ------------------------------------------------------------------------------------

    async def create(self, manifest: Manifest, upload_length: int) -> Respond:
        segment = manifest.segment

        async def step(receiver: UploadReceiver) -> Respond:
            decision = receiver.create(manifest, upload_length, self._clock())
            if isinstance(decision, Respond):
                return decision
            assert isinstance(decision, CheckManifest)
            # A manifest that would splice the committed chain, or that lied about its file before, is
            # refused before any byte is sent: on a thin link that saves a whole upload. The commit checks the
            # chain again inside its transaction (a neighbour may commit meanwhile); this is the early answer.
            await self._io(self._ledger.check_chain, manifest)
            refused = await self._io(self._ledger.refusal, manifest)
            others = await self._io(self._ledger.site_uploads, segment, self._clock())
            decision = receiver.manifest_checked(decision, refused, self._clock(), others)
            if isinstance(decision, KeepUpload):
                await self._io(self._ledger.save_staged, manifest, receiver.offset, receiver.expires_at)
                return decision.answer
            await self._io(self._staging.reset, segment)
            await self._io(self._ledger.save_staged, decision.manifest, 0, receiver.expires_at)
            return decision.answer

        return await self._guarded(segment, step)

    # -- offset --------------------------------------------------------------------------------------

    async def probe(self, segment: SegmentId) -> Respond:
        async def step(receiver: UploadReceiver) -> Respond:
            return receiver.probe(self._clock())

        return await self._guarded(segment, step)

    # -- chunks --------------------------------------------------------------------------------------

    async def patch(
        self, segment: SegmentId, offset: int, content_length: int, checksum: Checksum | None, body: BodyReader,
        tail: TailClaim | None = None, still_authorized: Callable[[], bool] = lambda: True,
    ) -> Respond | None:
        """Store one chunk. Returns the answer, or None when the body was cut short (nobody to answer).
        ``tail``: the sender's digest of the bytes kept after its last cut (Harbour-Tail-Sha256).
        ``still_authorized``: asked (in the I/O pool) just before a commit, so that a token revoked while a long
        PATCH was arriving commits nothing (G5)."""

        async def step(receiver: UploadReceiver) -> Respond | None:
            decision = receiver.begin_chunk(offset, content_length, checksum, self._clock(), tail)
            if isinstance(decision, Respond):
                return decision
            return await self._store_chunk(receiver, decision, body, still_authorized)

        return await self._guarded(segment, step)

    async def _store_chunk(self, receiver: UploadReceiver, plan: StoreChunk, body: BodyReader,
                           still_authorized: Callable[[], bool] = lambda: True) -> Respond | None:
        segment = receiver.segment
        assert receiver.manifest is not None
        if plan.tail_check is not None:  # the sender vouches for what we kept after a cut: check it first
            check = plan.tail_check
            actual = await self._io(self._staging.sha256_range, segment, check.start, check.end)
            dropped = receiver.tail_checked(plan, actual == check.sha256)
            if dropped is not None:
                await self._lower(receiver, dropped)
                assert dropped.error is not None
                raise dropped.error
        hasher = hashlib.new(plan.checksum.algorithm) if plan.checksum is not None else None
        handle = await self._io(self._staging.open_chunk, segment, plan.offset)
        received, kept_to = 0, None
        try:
            received = await self._copy_body(receiver, plan, body, handle, hasher)
            checksum_ok = None
            if plan.checksum is not None and received == plan.length:
                checksum_ok = hasher.digest() == plan.checksum.digest
            outcome = receiver.end_chunk(plan, received, checksum_ok, self._clock())
            if not isinstance(outcome, DropChunk):
                kept_to = outcome.new_offset
        finally:
            await self._io(self._staging.finish_chunk, handle, kept_to)
        self.stats.bytes_received += received
        if isinstance(outcome, DropChunk):
            self.stats.chunks_dropped += 1
            if outcome.lowered:
                await self._lower(receiver, outcome)  # slices of a damaged chunk were counted: take them back
            if outcome.error is not None:
                raise outcome.error
            return None
        self.stats.chunks_kept += 1
        self._crash("after-chunk-fsync")
        await self._io(self._ledger.save_staged, receiver.manifest, outcome.new_offset, receiver.expires_at)
        if not outcome.verify:
            return outcome.answer  # after a cut nobody may be listening; answering is harmless
        return await self._verify_and_commit(receiver, still_authorized)

    async def _lower(self, receiver: UploadReceiver, dropped: DropChunk) -> None:
        """Lower the durable offset first, then cut the file: a crash between the two leaves a file longer
        than its offset (cut back at start-up), never shorter (which would restart the upload)."""
        assert receiver.manifest is not None
        await self._io(self._ledger.save_staged, receiver.manifest, dropped.offset, receiver.expires_at)
        await self._io(self._staging.truncate, receiver.segment, dropped.offset)

    async def _copy_body(
        self, receiver: UploadReceiver, plan: StoreChunk, body: BodyReader, handle: ChunkHandle, hasher,
    ) -> int:
        """Stream up to ``plan.length`` body bytes into ``handle``, hashing them on the way; returns how many
        arrived before the end or a cut. Never holds more than the write buffer (plus one read) of the
        body in memory, whatever its length; every ``plan.slice_bytes`` it makes what was written durable."""
        received, buffer, next_slice = 0, bytearray(), plan.slice_bytes
        while received + len(buffer) < plan.length:
            want = min(self._read_piece_bytes, plan.length - received - len(buffer))
            piece = await self._read_piece(body, want, handle.name, received + len(buffer))
            if not piece:
                break
            buffer += piece
            if len(buffer) >= self._write_buffer:
                # A disk error here is not a cut: it propagates, and the chunk is not kept.
                await self._io(self._staging.write, handle, bytes(buffer), hasher)
                received += len(buffer)
                buffer.clear()
                if next_slice <= received < plan.length:
                    await self._keep_slice(receiver, plan, handle, received)
                    next_slice = received + plan.slice_bytes
        if buffer:
            await self._io(self._staging.write, handle, bytes(buffer), hasher)
            received += len(buffer)
        return received

    async def _keep_slice(self, receiver: UploadReceiver, plan: StoreChunk, handle: ChunkHandle, received: int) -> None:
        """fsync the chunk's first ``received`` bytes, then persist the offset they reach (G3: never ahead)."""
        assert receiver.manifest is not None
        await self._io(self._staging.sync, handle)
        kept = receiver.slice_stored(plan, received)
        await self._io(self._ledger.save_staged, receiver.manifest, kept.offset, receiver.expires_at)

    async def _read_piece(self, body: BodyReader, want: int, name: str, so_far: int) -> bytes:
        """The next piece of the body, or b"" when the link dropped or stalled: what arrived still counts
        (the receiver keeps it as an unverified tail), and there is nobody left to answer."""
        try:
            if self._idle_timeout is None:
                return await body.read(want)
            return await asyncio.wait_for(body.read(want), self._idle_timeout)
        except (ConnectionError, TimeoutError) as error:
            log.info("chunk body for %s cut after %d bytes: %r", name, so_far, error)
        return b""

    async def _verify_and_commit(self, receiver: UploadReceiver,
                                 still_authorized: Callable[[], bool] = lambda: True) -> Respond:
        segment = receiver.segment
        digest = await self._io(self._staging.sha256, segment)
        decision = receiver.segment_digest(digest)
        if isinstance(decision, CheckContents):
            contents: SegmentContents = await self._io(self._staging.contents, segment)
            decision = receiver.contents_read(contents)
        if isinstance(decision, DiscardUpload):
            if decision.refuse_again is not None:
                self.stats.manifests_refused += 1
                log.warning("upload %s refused: %s", segment, decision.error.message)
            else:
                self.stats.digest_failures += 1
            raise await self._discard(segment, decision)
        assert isinstance(decision, CommitSegment)
        if not await self._io(still_authorized):
            revoked = RemoteProtocolError(
                f"the token of site {segment.site} was revoked while this upload arrived; nothing was committed",
                code=ErrorCode.UNAUTHORIZED, op="committing", subject=str(segment),
                hint="ask the hub operator for a new token (`harbour hub add-site SITE --rotate`)")
            raise await self._discard(segment, receiver.commit_refused(revoked)) from None
        self._crash("before-ledger-commit")
        try:
            newly = await self._io(self._ledger.commit, decision.manifest, self._clock())
        except RemoteProtocolError as error:
            # The chain or key conflicts with a commit that raced this upload: the sender restarts or parks.
            raise await self._discard(segment, receiver.commit_refused(error)) from None
        self._crash("after-ledger-commit")
        if newly:
            self.stats.segments_committed += 1
            self._on_commit(segment)
        return receiver.committed()

    # -- termination ---------------------------------------------------------------------------------

    async def terminate(self, segment: SegmentId) -> Respond:
        async def step(receiver: UploadReceiver) -> Respond:
            forget = receiver.terminate()
            await self._forget(segment)
            assert forget.answer is not None
            return forget.answer

        return await self._guarded(segment, step)

    # -- housekeeping ----------------------------------------------------------------------------------

    async def recover(self) -> int:
        """At start-up: cut every staging file back to its durable offset, and verify + commit the
        uploads that were complete when the hub stopped. Returns how many uploads were restored."""
        staged = await self._io(self._ledger.all_staged)
        restored = 0
        for record in staged:
            segment = record.manifest.segment
            try:
                async with self._exclusive(segment, wait=0.0):
                    restored += await self._recover_one(segment)
            except RemoteProtocolError as error:
                if error.code is not ErrorCode.UPLOAD_BUSY:
                    raise
                # Another process of the cluster is serving it right now: it is not ours to recover.
        return restored

    async def _recover_one(self, segment: SegmentId) -> int:
        record = await self._io(self._ledger.staged, segment)  # read again under the lock: it may have moved
        if record is None:
            return 0
        if await self._io(self._staging.size, segment) < record.offset:
            # The file lost bytes that were acknowledged: never silently. Start the upload over.
            log.error("staging file of %s is shorter than its durable offset %d; the upload restarts",
                      segment, record.offset)
            await self._forget(segment)
            return 1
        await self._io(self._staging.truncate, segment, record.offset)
        receiver = await self._receiver(segment)  # commits an upload that was complete when the hub stopped
        if not receiver.settled and self._shared_locks is None:
            self._receivers[segment] = receiver
        return 1

    async def expire(self) -> int:
        """Drop uploads idle past their expiry (tus expiration). Returns how many were really dropped."""
        dropped = 0
        for record in await self._io(self._ledger.all_staged):
            if not expiry_passed(record.expires_at, self._clock()):
                continue  # cannot have expired: no need to wait for its lock (a long PATCH may hold it)
            segment = record.manifest.segment

            async def step(receiver: UploadReceiver) -> bool:
                forget: ForgetUpload | None = receiver.sweep(self._clock())
                if forget is None:
                    return False
                await self._forget(receiver.segment)
                return True

            dropped += await self._guarded(segment, step)
        return dropped

