"""A deterministic, in-memory run of the sender over a faulty link, against a hub passed in.

This is the protocol's proving ground: the property tests drive it with generated fault sequences, and
the demo prints what it shows. The hub on the other end is whatever implements ``HubUnderTest``; the
tests and the demo pass ``hub.simulated_hub.InMemoryHub``, the hub's real upload service over in-memory
storage, so the generated faults test the code that runs in production, not a copy of it. This module
stays pure (no hub imports, no asyncio): the hub side is wired outside ``sync_protocol``.

What "durable" means is the hub's business: ``restart`` and a crash at a ``CrashWindow`` must keep exactly
what the hub made durable and lose everything else, as a SIGKILLed hub process does.
Randomness comes from an ``rng`` passed in (anything with ``randrange``), so a run replays from its seed.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Protocol

from .chunking import ChunkSizer
from .identifiers import SegmentId
from .limits import GENESIS_DIGEST
from .manifest import Manifest, sha256_hex
from .sender import SendChunk, TxState, UploadSender
from .tus import Checksum, TailClaim, checksum_of


class Rng(Protocol):
    def randrange(self, start: int, stop: int | None = ...) -> int: ...


class Fault(enum.Enum):
    NONE = "none"
    LOSE_REQUEST = "lose request"  # cut before the hub saw anything
    LOSE_ANSWER = "lose answer"  # the hub did the work; the answer never arrived
    TRUNCATE_BODY = "truncate body"  # a PATCH body cut at a random byte
    CORRUPT_BODY = "corrupt body"  # one byte of a PATCH body flipped on the way
    CORRUPT_AND_TRUNCATE = "corrupt and truncate"  # a damaged body that is also cut: a bad unverified tail
    DUPLICATE = "duplicate"  # the request is delivered twice (a retransmitting middlebox)
    REPLAY_OLD_CHUNK = "replay old chunk"  # an earlier PATCH arrives again, late
    RESTART_HUB = "restart hub"  # the hub is SIGKILLed and restarted before the request
    CRASH_HUB_AFTER_FSYNC = "crash hub after fsync"  # a chunk is fsync'd, its offset not yet persisted
    CRASH_HUB_BEFORE_COMMIT = "crash hub before commit"  # the last chunk is durable, the commit is not
    CRASH_HUB_AFTER_COMMIT = "crash hub after commit"  # committed, but staging not yet cleaned, no answer
    RESTART_SENDER = "restart sender"  # the edge restarts; it remembers only that it was uploading


class CrashWindow(enum.Enum):
    """Where a hub dies in the middle of a request; the values are the hub's crash point names."""

    AFTER_CHUNK_FSYNC = "after-chunk-fsync"
    BEFORE_COMMIT = "before-ledger-commit"
    AFTER_COMMIT = "after-ledger-commit"


CRASH_FAULTS = {
    Fault.CRASH_HUB_AFTER_FSYNC: CrashWindow.AFTER_CHUNK_FSYNC,
    Fault.CRASH_HUB_BEFORE_COMMIT: CrashWindow.BEFORE_COMMIT,
    Fault.CRASH_HUB_AFTER_COMMIT: CrashWindow.AFTER_COMMIT,
}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""


class HubUnderTest(Protocol):
    """The hub as the simulated link reaches it."""

    def handle(self, request: object, manifest: Manifest, now: float,
               crash_at: CrashWindow | None = None) -> Answer | None:
        """One request (``CreateUpload``, ``ProbeOffset`` or ``WirePatch``) at time ``now``. None: no answer
        (the body was cut, or the hub died at ``crash_at`` and restarted from what it had made durable)."""

    def restart(self, now: float) -> None:
        """SIGKILL and restart: only what was durable survives; start-up recovery runs."""


@dataclass(frozen=True)
class WirePatch:
    offset: int
    declared_length: int
    body: bytes
    checksum: Checksum | None
    tail: TailClaim | None = None


@dataclass
class SimulatedEdge:
    """The sender's side: segment files and the one bit of durable state the sync agent keeps."""

    manifests: list[Manifest]
    files: dict[SegmentId, bytes]
    acked: set[SegmentId] = field(default_factory=set)
    uploading: set[SegmentId] = field(default_factory=set)


def build_segments(site: str, table: str, payloads: list[bytes], clock_ms: int = 0) -> SimulatedEdge:
    """Segments with a correct hash chain over ``payloads``."""
    manifests, files, prev = [], {}, GENESIS_DIGEST
    for seq, payload in enumerate(payloads, start=1):
        segment = SegmentId.of(site, table, seq)
        digest = sha256_hex(payload)
        manifests.append(Manifest(
            segment, row_count=len(payload) // 10, byte_size=len(payload), sha256=digest,
            schema_fingerprint=sha256_hex(b"schema"), prev_sha256=prev, priority=seq % 3, created_at_ms=clock_ms,
        ))
        files[segment] = payload
        prev = digest
    return SimulatedEdge(manifests, files)


@dataclass
class RunStats:
    requests: int = 0
    bytes_sent: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    parked: list[str] = field(default_factory=list)


@dataclass
class Simulation:
    """Send every segment of ``edge`` to ``hub`` through a link that injects ``faults`` in order,
    then behaves. ``checksums=False`` models a tus client that sends no Upload-Checksum."""

    hub: HubUnderTest
    edge: SimulatedEdge
    faults: list[Fault]
    rng: Rng
    checksums: bool = True
    sizer_factory: type[ChunkSizer] | None = None
    chunk_size: int = 64
    min_chunk: int = 8
    max_steps: int = 100_000
    now: float = 0.0
    stats: RunStats = field(default_factory=RunStats)
    _sent_patches: list[tuple[Manifest, WirePatch]] = field(default_factory=list)

    def _next_fault(self) -> Fault:
        return self.faults.pop(0) if self.faults else Fault.NONE

    def _new_sender(self, manifest: Manifest) -> UploadSender:
        sizer = ChunkSizer(size=self.chunk_size, minimum=self.min_chunk, maximum=max(self.chunk_size * 16, 1024))
        return UploadSender(manifest, resumed=manifest.segment in self.edge.uploading, sizer=sizer)

    def run(self) -> RunStats:
        for manifest in self.edge.manifests:
            self._send(manifest)
        return self.stats

    def _wire(self, request: object, manifest: Manifest) -> object:
        if not isinstance(request, SendChunk):
            return request
        file = self.edge.files[manifest.segment]
        data = file[request.offset: request.offset + request.length]
        checksum = checksum_of(data) if self.checksums else None
        tail = None
        if request.tail_from is not None and self.checksums:
            tail = TailClaim(request.tail_from, sha256_hex(file[request.tail_from:request.offset]))
        return WirePatch(request.offset, request.length, data, checksum, tail)

    def _send(self, manifest: Manifest) -> None:
        segment = manifest.segment
        sender = self._new_sender(manifest)
        for _ in range(self.max_steps):
            request = sender.next_request()
            if request is None:
                break
            self.edge.uploading.add(segment)
            self.now += 1.0
            fault = self._next_fault()
            self.stats.faults[fault.value] += 1
            wire = self._wire(request, manifest)
            answer = self._deliver(fault, wire, manifest)
            if fault is Fault.RESTART_SENDER:
                sender = self._new_sender(manifest)  # the old in-flight request is forgotten with the process
                continue
            self._report(sender, answer)
        else:
            raise AssertionError(f"{segment} did not finish in {self.max_steps} steps (livelock?)")
        if sender.state is TxState.ACKED:
            self.edge.acked.add(segment)
            self.edge.uploading.discard(segment)
        else:
            self.stats.parked.append(f"{segment}: {sender.park_reason}")

    def _deliver(self, fault: Fault, wire: object, manifest: Manifest) -> Answer | None:
        self.stats.requests += 1
        if isinstance(wire, WirePatch):
            self.stats.bytes_sent += len(wire.body)
            self._sent_patches.append((manifest, wire))
        if fault is Fault.LOSE_REQUEST:
            return None
        if fault is Fault.RESTART_HUB:
            self.hub.restart(self.now)
        if fault is Fault.REPLAY_OLD_CHUNK and self._sent_patches:
            old_manifest, old = self._sent_patches[self.rng.randrange(len(self._sent_patches))]
            self.hub.handle(old, old_manifest, self.now)  # its answer goes nowhere
        if isinstance(wire, WirePatch):
            if fault in (Fault.CORRUPT_BODY, Fault.CORRUPT_AND_TRUNCATE) and wire.body:
                position = self.rng.randrange(len(wire.body))
                damaged = bytearray(wire.body)
                damaged[position] ^= 1 + self.rng.randrange(255)
                wire = replace(wire, body=bytes(damaged))
            if fault in (Fault.TRUNCATE_BODY, Fault.CORRUPT_AND_TRUNCATE):
                wire = replace(wire, body=wire.body[: self.rng.randrange(len(wire.body) + 1)])
        if fault is Fault.DUPLICATE:
            self.hub.handle(wire, manifest, self.now)
        answer = self.hub.handle(wire, manifest, self.now, CRASH_FAULTS.get(fault))
        if isinstance(wire, WirePatch) and len(wire.body) < wire.declared_length:
            return None  # a cut body never gets an answer
        return None if fault in (Fault.LOSE_ANSWER, Fault.RESTART_SENDER) else answer

    @staticmethod
    def _report(sender: UploadSender, answer: Answer | None) -> None:
        if answer is None:
            sender.on_connection_lost()
        else:
            sender.on_answer(answer.status, answer.headers, answer.body, seconds=1.0)
