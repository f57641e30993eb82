"""Upload one segment: drive the protocol's ``UploadSender`` over a ``HubTransport`` until the hub
commits it, the segment is parked, or the agent asks it to make way for more urgent data.

The loop is the one the sender's docstring describes; what this module adds is the I/O around it:
reading chunks from the segment file (in a thread: a chunk may be 16 MiB), checksumming them, timing
requests for the link monitor, progress lines for long uploads, and back-off between transient
failures (``sync_protocol.backoff``: exponential with jitter from the node's seeded rng, capped, never
giving up: a ship may be offline for weeks; ``Retry-After`` honoured). A permanent rejection is never
retried: the sender parks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sync_protocol import Manifest
from sync_protocol.backoff import Backoff, Rng
from sync_protocol.sender import PROGRESS_EVENTS, CreateUpload, ProbeOffset, SendChunk, TxEvent, TxState, UploadSender
from sync_protocol.tus import TailClaim, checksum_of
from sync_protocol.units import format_rate, format_size

from .link import LinkMonitor
from .transport import HubAnswer, HubTransport, LinkDown

log = logging.getLogger("edge_node.sync")

BACKOFF_INITIAL_SECONDS = 0.5
"""First wait after a failure: long enough not to hammer a hub that is restarting."""

BACKOFF_CAP_SECONDS = 20.0
"""Longest wait between attempts: a ship coming into coverage, or out of a burst of corruption, resumes
within ~20 s. (60 s was seen to leave a segment idle through a whole port call in the demo scenario after
a burst of damaged requests.) A retry is one small request, so waiting less costs nothing on a down link."""

MAX_RETRY_AFTER_SECONDS = 600.0
"""A hub's Retry-After is honoured up to ten minutes; a larger value is treated as a mistake."""

PROGRESS_LOG_SECONDS = 15.0
"""How often a long upload logs its progress (rate and ETA): readable in a terminal, quiet in a journal."""

TAIL_READ_BYTES = 4 * 1024 * 1024
"""Read size when hashing the bytes the hub kept after a cut (after a hub restart: the whole upload so far)."""

CHECKSUM_ALGORITHM = "sha256"
"""Per-chunk checksum: sha256, the same algorithm as the segment digest (tus also allows sha1)."""


LINK_BACKOFF = Backoff(BACKOFF_INITIAL_SECONDS, BACKOFF_CAP_SECONDS, free_failures=1)
"""Counted in failures since the upload last moved forward (a HEAD that succeeds between two failing
PATCHes is no progress). The first failure is retried at once: a single cut on a flapping link is best
answered by reconnecting now."""

QUIET_AFTER_ATTEMPTS = 3
"""Retries of one step are logged at INFO this many times, then at DEBUG: a week offline is one story."""


class Transient(Exception):
    """The last step ended in a transient failure; the uploader backs off before the next one."""

    def __init__(self, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class UploadOutcome:
    acked: bool
    parked: bool
    paused: bool
    park_reason: str = ""
    bytes_sent: int = 0


ChunkReader = Callable[[int, int], Awaitable[bytes]]


def file_chunk_reader(path: Path) -> ChunkReader:
    def read(offset: int, length: int) -> bytes:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read(length)
        if len(data) != length:
            raise OSError(f"segment file {path} is shorter than its manifest says ({offset + len(data)} bytes)")
        return data

    async def read_async(offset: int, length: int) -> bytes:
        return await asyncio.to_thread(read, offset, length)

    return read_async


class SegmentUploader:
    def __init__(
        self, transport: HubTransport, sender: UploadSender, read_chunk: ChunkReader, monitor: LinkMonitor,
        clock: Callable[[], float], *, rng: Rng, should_pause: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.transport = transport
        self.sender = sender
        self.read_chunk = read_chunk
        self.monitor = monitor
        self.clock = clock
        self.should_pause = should_pause
        self.sleep = sleep
        self.rng = rng
        self._concurrency = 1.0  # chunks on the link, on average, while the last chunk was sent
        self.bytes_sent = 0
        self._failures = 0  # failed steps since the upload last moved forward (drives the back-off)
        self._last_progress_log = clock()
        self._started = clock()

    @property
    def manifest(self) -> Manifest:
        return self.sender.manifest

    async def run(self) -> UploadOutcome:
        while not self.sender.done:
            if self.sender.state is TxState.SENDING and self.should_pause():
                return UploadOutcome(False, False, True, bytes_sent=self.bytes_sent)
            await self._step_until_it_succeeds()
        parked = self.sender.state is TxState.PARKED
        return UploadOutcome(not parked, parked, False, self.sender.park_reason, self.bytes_sent)

    async def _step_until_it_succeeds(self) -> None:
        attempt = 1
        while True:
            try:
                await self._step()
                return
            except Transient as failure:
                wait = self._wait(failure)
                level = logging.INFO if attempt <= QUIET_AFTER_ATTEMPTS else logging.DEBUG
                log.log(level, "%s: %s; retrying in %.1f s (attempt %d)", self.manifest.segment, failure, wait,
                        attempt)
                await self.sleep(wait)
                attempt += 1

    async def _step(self) -> None:
        request = self.sender.next_request()
        if request is None:
            return
        try:
            answer = await self._perform(request)
        except LinkDown as error:
            self.monitor.record_failure(str(error))
            self.sender.on_connection_lost()
            self._failures += 1
            raise Transient(str(error)) from None
        self.sender.on_answer(answer.status, answer.headers, answer.body, answer.seconds)
        self._observe(request, answer)
        if self.sender.last_event in PROGRESS_EVENTS:
            self._failures = 0
        # 460 too: a link that damages every chunk is resent with back-off, not in a tight loop. And a
        # permanent-looking answer the sender does not trust yet (see PERMANENT_ANSWERS_BEFORE_PARKING).
        if answer.status in (429, 460, 507) or answer.status >= 500 or self.sender.last_event is TxEvent.TRANSIENT:
            self._failures += 1
            raise Transient(self.sender.last_error, _retry_after(answer))

    async def _perform(self, request: CreateUpload | ProbeOffset | SendChunk) -> HubAnswer:
        key = self.manifest.segment.upload_key
        if isinstance(request, CreateUpload):
            return await self.transport.create(request.metadata, request.length)
        if isinstance(request, ProbeOffset):
            return await self.transport.probe(key)
        chunk = await self.read_chunk(request.offset, request.length)
        tail = None
        if request.tail_from is not None:  # bytes the hub kept after a cut: vouch for them
            tail = TailClaim(request.tail_from, await self._sha256_of(request.tail_from, request.offset))
        self.bytes_sent += len(chunk)
        mark = self.monitor.transfer_started()
        try:
            return await self.transport.patch(key, request.offset, chunk, checksum_of(chunk, CHECKSUM_ALGORITHM), tail)
        finally:
            self._concurrency = self.monitor.transfer_ended(mark)

    async def _sha256_of(self, start: int, end: int) -> str:
        digest = hashlib.sha256()
        for piece_start in range(start, end, TAIL_READ_BYTES):
            digest.update(await self.read_chunk(piece_start, min(TAIL_READ_BYTES, end - piece_start)))
        return digest.hexdigest()

    def _observe(self, request: object, answer: HubAnswer) -> None:
        if isinstance(request, SendChunk) and answer.status == 204:
            self.monitor.record_transfer(request.length, answer.seconds - answer.paced_seconds,
                                         concurrency=self._concurrency, server_seconds=answer.server_seconds)
            self._maybe_log_progress()
        elif isinstance(request, ProbeOffset | CreateUpload) and answer.status < 500:
            self.monitor.record_round_trip(answer.seconds, server_seconds=answer.server_seconds)

    def _maybe_log_progress(self) -> None:
        now = self.clock()
        if now - self._last_progress_log < PROGRESS_LOG_SECONDS:
            return
        self._last_progress_log = now
        done, size = self.sender.offset, self.manifest.byte_size
        rate = self.monitor.rate_bytes or 0.0
        eta = f"{(size - done) / rate:.0f} s" if rate > 0 else "unknown"
        log.info("uploading %s: %s of %s (%.0f%%), %s, ETA %s", self.manifest.segment, format_size(done),
                 format_size(size), 100 * done / size, format_rate(rate * 8), eta)

    def _wait(self, failure: Transient) -> float:
        backoff = LINK_BACKOFF.seconds(self._failures, self.rng)
        return max(backoff, min(failure.retry_after, MAX_RETRY_AFTER_SECONDS))


def _retry_after(answer: HubAnswer) -> float:
    value = answer.headers.get("Retry-After", "")
    return float(value) if value.isascii() and value.isdigit() else 0.0
