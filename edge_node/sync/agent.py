"""The sync agent: which segment goes next, how many at once, and what happens when each one ends.

Rules, in order of importance:

1. A segment is marked acked only on the hub's durable commit (the uploader reaches ``ACKED`` only
   through ``Harbour-Commit: committed``); a parked segment stays on disk and in status (G8).
2. Most urgent first: priority class, then seq. When every slot is busy and a more urgent segment
   waits, the least urgent upload pauses after its current chunk and resumes later at the hub's offset
   (tus makes a pause free), so an alarm never queues behind a 64 MiB sales segment.
3. The link policy decides which classes may go (``LinkPolicy``); a class held back is probed with one
   chunk every ``PROBE_SECONDS`` so that the agent notices when the ship reaches port.
4. Several uploads in flight hide the round trip of a long satellite link: while one upload waits for
   its answer, another one's bytes are on the wire. How many is derived from the measured link: enough
   segments to cover the bandwidth-delay product, between ``MIN_IN_FLIGHT`` and ``max_in_flight``.
5. A permanent rejection parks that segment only; the queue moves on behind it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from sync_protocol import Manifest, SegmentId
from sync_protocol.backoff import Backoff, Rng
from sync_protocol.chunking import ChunkSizer
from sync_protocol.limits import CHUNK_TARGET_SECONDS, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES
from sync_protocol.segment_states import SegmentState
from sync_protocol.sender import UploadSender

from ..config import DEFAULT_MAX_IN_FLIGHT
from .link import LinkMonitor, LinkPolicy
from .transport import HubTransport
from .uploader import SegmentUploader, UploadOutcome, file_chunk_reader

log = logging.getLogger("edge_node.sync")

TARGET_UTILISATION = 0.9
"""Share of the link the agent aims to keep busy when sizing its concurrency."""

MIN_IN_FLIGHT = 3
"""Uploads at once on any link: 2 fill a 600 ms-RTT link between one chunk's answer and the next chunk; a
third covers a slow segment read or a hub hashing a completed segment."""

PENDING_WINDOW = 200
"""Segments read from the ledger per scheduling round: more than any number in flight plus the parked."""

IDLE_POLL_SECONDS = 1.0
"""With nothing to send, look at the ledger again this often (the sealer also wakes the agent)."""

PREPARE_AHEAD = 16
"""Uploads created at the hub ahead of a free slot (a POST each, a few hundred bytes): when a slot frees,
the next segment's bytes go at once instead of after a creation round trip (600 ms at sea)."""

ROUND_FAILURE_PAUSE_SECONDS = 5.0
"""Pause after a scheduling round failed unexpectedly (a ledger error), before the next one."""

LOCAL_FAILURES_BEFORE_PARKING = 3
"""A segment whose own file cannot be read (missing, shorter than its manifest) is tried this many times,
with a growing pause, then parked with the reason: retrying cannot bring the bytes back."""

LOCAL_BACKOFF = Backoff(first_seconds=2.0, cap_seconds=60.0)
"""The pause after a segment's file could not be read: 2 s, then 4 s (plus jitter), time for a disk
hiccup or a busy sealer to pass before the segment is tried again."""

UNREADABLE_ON_BOARD = (OSError, pa.ArrowException)
"""What an upload raises when the segment's own file cannot be read (missing, shorter than its manifest, a
disk error). Only these count towards parking: any other exception is a bug in our code (a
``LocalProtocolError``, say), logged with its traceback, and must not turn into a data state."""

PROBE_SECONDS = 60.0
"""How often a class held back by the link policy sends one chunk to measure the link again."""


class StoredSegmentLike(Protocol):
    manifest: Manifest
    path: str
    state: SegmentState


class SegmentQueue(Protocol):
    """What the agent needs of the edge's ledger (``edge_node.ledger.SegmentLedger`` has it)."""

    def pending_segments(self, limit: int = ...) -> list[Any]: ...
    def mark_uploading(self, segment: SegmentId) -> None: ...
    def mark_acked(self, segment: SegmentId) -> None: ...
    def mark_parked(self, segment: SegmentId, reason: str = "") -> None: ...


@dataclass
class _Upload:
    uploader: SegmentUploader
    task: asyncio.Task[UploadOutcome]
    probe: bool
    prepare: bool = False  # only creating the upload at the hub, ready for a free slot


@dataclass
class _Segment:
    """What the agent knows of one segment between scheduling rounds: one record per segment, dropped once
    the segment is acked or parked (the ledger keeps those states)."""

    upload: _Upload | None = None  # a task running: sending, or only creating the upload (``prepare``)
    resumable: UploadSender | None = None  # created at the hub, or paused mid-way: resumes at its offset
    local_failures: int = 0  # its file could not be read; parked at LOCAL_FAILURES_BEFORE_PARKING
    bugs: int = 0  # failed in our own code: retried with back-off, never parked
    not_before: float = 0.0  # resting after a failure until then

    @property
    def sending(self) -> bool:
        return self.upload is not None and not self.upload.prepare

    @property
    def preparing(self) -> bool:
        return self.upload is not None and self.upload.prepare


@dataclass
class AgentCounters:
    acked_segments: int = 0
    acked_bytes: int = 0
    parked_segments: int = 0
    bytes_sent: int = 0
    pauses: int = 0
    last_ack_at: float | None = None
    # Which segments are parked, and why, is the queue's (the ledger's) to know: ``queue.parked()``.


class SyncAgent:
    def __init__(
        self, queue: SegmentQueue, data_dir: Path, transport: HubTransport, monitor: LinkMonitor,
        policy: LinkPolicy, clock: Callable[[], float], *, rng: Rng, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        sizer_factory: Callable[[], ChunkSizer] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.queue = queue
        self.data_dir = data_dir
        self.transport = transport
        self.monitor = monitor
        self.policy = policy
        self.clock = clock
        self.rng = rng  # jitter for every back-off, seeded by the node: a run replays from its seed
        self.max_in_flight = max_in_flight
        self.sizer_factory = sizer_factory or self._sizer_for_link
        self.counters = AgentCounters()
        self._segments: dict[SegmentId, _Segment] = {}
        self._waiting_class: int | None = None  # most urgent class that found no free slot
        self._last_probe = clock()  # the first probe a full interval after start: the link was just measured
        self._wake = asyncio.Event()

    def _sending(self) -> dict[SegmentId, _Upload]:
        return {segment: entry.upload for segment, entry in self._segments.items()
                if entry.upload is not None and entry.sending}

    def _running(self) -> list[_Upload]:
        return [entry.upload for entry in self._segments.values() if entry.upload is not None]

    def _ready_ahead(self) -> int:
        """Uploads created at the hub (or being created) that wait for a free slot."""
        return sum(1 for entry in self._segments.values() if entry.preparing or entry.resumable is not None)

    def notify(self) -> None:
        """A segment was sealed: look at the ledger now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._schedule()
                    await self._wait_for_something()
                except asyncio.CancelledError:
                    raise
                except Exception:  # e.g. the ledger's disk said EIO: sync must not stop for good
                    log.exception("sync round failed; trying again in %.0f s", ROUND_FAILURE_PAUSE_SECONDS)
                    await asyncio.sleep(ROUND_FAILURE_PAUSE_SECONDS)
        finally:
            everything = self._running()
            for upload in everything:
                upload.task.cancel()
            await asyncio.gather(*(u.task for u in everything), return_exceptions=True)

    async def _wait_for_something(self) -> None:
        self._wake.clear()
        tasks = [upload.task for upload in self._running()]
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([wake, *tasks], timeout=IDLE_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        for segment, entry in list(self._segments.items()):
            if entry.upload is not None and entry.upload.task.done():
                upload, entry.upload = entry.upload, None
                await self._finish(segment, entry, upload)

    async def _schedule(self) -> None:
        pending = await asyncio.to_thread(self.queue.pending_segments, PENDING_WINDOW)
        allowed_up_to = self.policy.max_class(self.monitor.measured_state)
        self._waiting_class = None
        probe_budget = self.monitor.probe_bytes() if self._probe_due() else 0
        sending = len(self._sending())
        for stored in pending:
            segment = stored.manifest.segment
            entry = self._segments.get(segment) or _Segment()
            if entry.sending or entry.not_before > self.clock():
                continue
            priority = stored.manifest.priority
            probe = priority > allowed_up_to
            if probe and probe_budget <= 0:
                continue
            if entry.preparing:
                continue
            if probe:
                # A probe carries enough bytes to measure: small segments of held-back classes go together
                # (in flight at once, they load the link as one big chunk would).
                await self._start(stored, probe=True)
                sending += 1
                probe_budget -= stored.manifest.byte_size - self._offset_of(segment)
                continue
            if sending >= self._target_in_flight(pending):
                if self._waiting_class is None or priority < self._waiting_class:
                    self._waiting_class = priority
                if not probe:
                    await self._prepare(stored)
                continue
            await self._start(stored, probe)
            sending += 1

    async def _prepare(self, stored: StoredSegmentLike) -> None:
        """Create the upload now, so that its first chunk can go the moment a slot frees."""
        segment = stored.manifest.segment
        entry = self._segments.get(segment)
        if (entry is not None and entry.resumable is not None) or self._ready_ahead() >= PREPARE_AHEAD:
            return
        sender = await self._new_sender(stored)
        uploader = SegmentUploader(
            self.transport, sender, file_chunk_reader(self.data_dir / stored.path), self.monitor, self.clock,
            rng=self.rng, should_pause=lambda: True,  # stop as soon as the hub has the upload and told us its offset
        )
        self._segments.setdefault(segment, _Segment()).upload = _Upload(
            uploader, asyncio.create_task(uploader.run()), probe=False, prepare=True)

    async def _new_sender(self, stored: StoredSegmentLike) -> UploadSender:
        resumed = stored.state is SegmentState.UPLOADING
        sender = UploadSender(stored.manifest, resumed=resumed, sizer=self.sizer_factory())
        if not resumed:
            await asyncio.to_thread(self.queue.mark_uploading, stored.manifest.segment)
        return sender

    def _target_in_flight(self, pending: list[StoredSegmentLike]) -> int:
        """Enough uploads that round trips hide behind other uploads' bytes, as measured.

        Each upload spends about one round trip per request waiting (creation, then each chunk's answer);
        with N uploads each moving ``per_upload`` bytes per round, the link is busy a fraction
        N*per_upload / (N*per_upload + rate*rtt) of the time, so reaching ``TARGET_UTILISATION`` takes
        N = u/(1-u) * rate*rtt / per_upload. Small segments on a long link need many uploads at once."""
        floor = min(MIN_IN_FLIGHT, self.max_in_flight)
        rate, rtt = self.monitor.rate_bytes, self.monitor.rtt_seconds
        if not rate or not rtt or not pending:
            return floor
        typical = sum(s.manifest.byte_size for s in pending) / len(pending)
        per_upload = max(MIN_CHUNK_BYTES, min(typical, rate * CHUNK_TARGET_SECONDS))
        needed = TARGET_UTILISATION / (1 - TARGET_UTILISATION) * rate * rtt / per_upload
        return max(floor, min(self.max_in_flight, floor + math.ceil(needed)))

    def _sizer_for_link(self) -> ChunkSizer:
        """A new upload starts at its share of what the link has shown, not from scratch."""
        sizer = ChunkSizer()
        if self.monitor.rate_bytes:
            share = self.monitor.rate_bytes * CHUNK_TARGET_SECONDS / max(1, len(self._sending()) + 1)
            sizer.size = int(max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, share)))
        return sizer

    def _probe_due(self) -> bool:
        # A metered link is held back by decision, not by measurement: probing it would only spend money.
        # Urgent uploads in flight do not postpone a probe: on a ship with a steady trickle of telemetry
        # there always is one, and the port call would pass unnoticed.
        if self.policy.metered or any(u.probe for u in self._sending().values()):
            return False
        return self.clock() - self._last_probe >= PROBE_SECONDS

    def _offset_of(self, segment: SegmentId) -> int:
        upload = self._sending().get(segment)
        return upload.uploader.sender.offset if upload else 0

    async def _start(self, stored: StoredSegmentLike, probe: bool) -> None:
        manifest = stored.manifest
        segment = manifest.segment
        entry = self._segments.setdefault(segment, _Segment())
        sender, entry.resumable = entry.resumable, None
        if sender is None:
            sender = await self._new_sender(stored)
        else:
            sender.sizer = self.sizer_factory()  # a prepared or paused upload starts at today's link share
        if probe:
            self._last_probe = self.clock()
            log.info("probing the link with %s (class %d is held back on a %s link)", segment, manifest.priority,
                     self.monitor.state.value)
        if probe:  # enough bytes in the first chunk to tell a thin link from a good one
            sender.sizer.size = max(sender.sizer.size, min(MAX_CHUNK_BYTES, self.monitor.probe_bytes()))
        uploader = SegmentUploader(
            self.transport, sender, file_chunk_reader(self.data_dir / stored.path), self.monitor, self.clock,
            rng=self.rng,
        )
        uploader.should_pause = lambda: self._should_pause(uploader)
        entry.upload = _Upload(uploader, asyncio.create_task(uploader.run()), probe)

    def _should_pause(self, uploader: SegmentUploader) -> bool:
        priority = uploader.manifest.priority
        if uploader.bytes_sent > 0 and not self.policy.allows(priority, self.monitor.measured_state):
            return True  # a probe that has measured, or a link that turned thin mid-upload
        waiting = self._waiting_class
        if waiting is None or waiting >= priority:
            return False
        least_urgent = max(u.uploader.manifest.priority for u in self._sending().values())
        return priority == least_urgent

    async def _finish(self, segment: SegmentId, entry: _Segment, upload: _Upload) -> None:
        try:
            outcome = upload.task.result()
        except asyncio.CancelledError:
            return
        except UNREADABLE_ON_BOARD as error:  # retry a little, then park: retrying cannot bring bytes back
            await self._local_failure(segment, entry, error)
            return
        except Exception:  # a bug: surface it, keep the other uploads going, rest this one; never park it
            self._bug(segment, entry)
            return
        entry.local_failures = entry.bugs = 0
        entry.not_before = 0.0
        if not outcome.paused:
            del self._segments[segment]  # acked or parked: the ledger holds it from here
        self.counters.bytes_sent += outcome.bytes_sent
        manifest = upload.uploader.manifest
        if outcome.acked:
            await asyncio.to_thread(self.queue.mark_acked, segment)
            self.counters.acked_segments += 1
            self.counters.acked_bytes += manifest.byte_size
            self.counters.last_ack_at = self.clock()
            log.info("acked %s (%d rows, %d bytes)", segment, manifest.row_count, manifest.byte_size)
        elif outcome.parked:
            await asyncio.to_thread(self.queue.mark_parked, segment, outcome.park_reason)
            self.counters.parked_segments += 1
            log.error("parked %s: %s -- it stays on disk; see `harbour edge status`", segment, outcome.park_reason)
        elif outcome.paused and upload.prepare:
            entry.resumable = upload.uploader.sender
        elif outcome.paused:
            self.counters.pauses += 1
            entry.resumable = upload.uploader.sender
            log.info("paused %s at %d of %d bytes to make way for more urgent data", segment,
                     upload.uploader.sender.offset, manifest.byte_size)

    async def _local_failure(self, segment: SegmentId, entry: _Segment, error: Exception) -> None:
        entry.local_failures += 1
        if entry.local_failures < LOCAL_FAILURES_BEFORE_PARKING:
            pause = LOCAL_BACKOFF.seconds(entry.local_failures, self.rng)
            entry.not_before = self.clock() + pause
            log.warning("upload of %s failed on board (%s); trying again in %.1f s", segment, error, pause)
            return
        reason = f"the segment cannot be read on board: {error}"
        await asyncio.to_thread(self.queue.mark_parked, segment, reason)
        self._segments.pop(segment, None)
        self.counters.parked_segments += 1
        log.error("parked %s: %s -- check the data directory's disk; see `harbour edge status`", segment, reason)

    def _bug(self, segment: SegmentId, entry: _Segment) -> None:
        entry.bugs += 1
        pause = LOCAL_BACKOFF.seconds(entry.bugs, self.rng)
        entry.not_before = self.clock() + pause
        log.exception("BUG: the upload of %s failed in Harbour's own code; it is not parked and is tried again "
                      "in %.1f s -- please report this traceback", segment, pause)

    def describe(self) -> dict[str, Any]:
        return {
            "link": self.monitor.describe(),
            "policy": {"metered": self.policy.metered, "thin_link_max_class": self.policy.thin_max_class,
                       "classes_allowed_up_to": self.policy.max_class(self.monitor.measured_state)},
            "in_flight": [
                {"segment": str(segment), "offset": u.uploader.sender.offset,
                 "bytes": u.uploader.manifest.byte_size, "priority": u.uploader.manifest.priority, "probe": u.probe}
                for segment, u in self._sending().items()
            ],
            "prepared": self._ready_ahead(),
            "acked_segments": self.counters.acked_segments,
            "parked_since_start": self.counters.parked_segments,  # the list with reasons: status "parked"
            "bytes_sent": self.counters.bytes_sent,
            "last_ack_at": self.counters.last_ack_at,
        }
