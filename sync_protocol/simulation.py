"""A deterministic, in-memory run of sender and receiver over a faulty link.

This is the protocol's own proving ground: the property tests drive it with generated fault
sequences, and the demo prints what it shows. It is *not* the real hub or edge (those do real I/O);
``SimulatedHub`` is the smallest handler that follows the receiver's instructions to the letter, which
makes it the reference for what the real hub handler must do, step by step.

What "durable" means here: ``SimulatedHub.staged`` and ``SimulatedHub.ledger`` survive ``restart()``;
the receivers (the in-memory protocol state) do not, exactly like a hub process that is SIGKILLed.
Randomness comes from an ``rng`` passed in (anything with ``randrange``), so a run replays from its seed.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from .chunking import ChunkSizer
from .errors import RemoteProtocolError
from .identifiers import SegmentId
from .limits import GENESIS_DIGEST
from .manifest import Manifest, sha256_hex
from .receiver import (
    CheckContents,
    CommitSegment,
    DiscardUpload,
    DropChunk,
    KeepChunk,
    ResetStaging,
    Respond,
    RxState,
    UploadReceiver,
)
from .segment_contents import SegmentContents
from .sender import CreateUpload, ProbeOffset, SendChunk, TxState, UploadSender
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
    CRASH_HUB_BEFORE_COMMIT = "crash hub before commit"  # the last chunk is durable, the commit is not
    CRASH_HUB_AFTER_COMMIT = "crash hub after commit"  # committed, but staging not yet cleaned, no answer
    RESTART_SENDER = "restart sender"  # the edge restarts; it remembers only that it was uploading


@dataclass
class StagedUpload:
    manifest: Manifest
    data: bytearray
    expires_at: float


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""


SIMULATED_SLICE_BYTES = 48
"""The simulated hub makes long chunks durable in slices this small, so that the simulated link's chunks
(8 bytes to 1 KiB) span several of them and every fault meets a chunk half made durable."""

ReadContents = Callable[[Manifest, bytes], SegmentContents]


def contents_as_declared(manifest: Manifest, data: bytes) -> SegmentContents:
    """Simulated files are opaque bytes: what the hub would read from the footer is what the manifest says."""
    return SegmentContents(manifest.row_count, manifest.schema_fingerprint)


class SimulatedHub:
    """The reference handler: parse, ask the receiver, do what it says, answer. ``read_contents`` stands for
    reading a complete file's Parquet footer; a test passes one that lies to exercise the refusal."""

    def __init__(self, read_contents: ReadContents = contents_as_declared,
                 slice_bytes: int = SIMULATED_SLICE_BYTES) -> None:
        self.read_contents = read_contents
        self.slice_bytes = slice_bytes
        self.refused: dict[SegmentId, tuple[Manifest, str]] = {}  # durable: manifests refused for their contents
        self.staged: dict[SegmentId, StagedUpload] = {}  # durable
        self.ledger: dict[SegmentId, Manifest] = {}  # durable
        self.committed_bytes: dict[SegmentId, bytes] = {}  # durable: what the merger would read
        self.commit_count: Counter[SegmentId] = Counter()
        self._receivers: dict[SegmentId, UploadReceiver] = {}  # volatile
        self.crash_before_next_commit = False
        self.crash_after_next_commit = False

    def restart(self, now: float) -> None:
        self._receivers.clear()
        for segment in list(self.staged):
            self._receiver(segment, now)  # recovery: finishes complete-but-uncommitted uploads

    def _receiver(self, segment: SegmentId, now: float) -> UploadReceiver:
        receiver = self._receivers.get(segment)
        if receiver is None:
            staged = self.staged.get(segment)
            if staged is not None and segment in self.ledger:
                del self.staged[segment]  # recovery: a crash after the commit left the staging file behind
                staged = None
            receiver = UploadReceiver.restore(
                segment, committed=self.ledger.get(segment),
                staged=staged.manifest if staged else None,
                durable_offset=len(staged.data) if staged else 0,
                expires_at=staged.expires_at if staged else 0.0, slice_bytes=self.slice_bytes,
            )
            self._receivers[segment] = receiver
            if receiver.state is RxState.VERIFYING:
                self._verify_and_commit(receiver)
        return receiver

    def _verify_and_commit(self, receiver: UploadReceiver) -> Respond | None:
        segment = receiver.segment
        data = bytes(self.staged[segment].data)
        outcome = receiver.segment_digest(sha256_hex(data))
        if isinstance(outcome, CheckContents):
            outcome = receiver.contents_read(self.read_contents(outcome.manifest, data))
        if isinstance(outcome, DiscardUpload):
            del self.staged[segment]
            if outcome.refuse_again is not None:
                self.refused[segment] = (outcome.refuse_again, outcome.error.message)
            raise outcome.error
        assert isinstance(outcome, CommitSegment)
        if self.crash_before_next_commit:
            self.crash_before_next_commit = False
            self._receivers.clear()
            return None  # the process died here; the caller's connection is gone
        if segment not in self.ledger:  # the ledger's UNIQUE (site, table, seq)
            self.ledger[segment] = outcome.manifest
            self.committed_bytes[segment] = bytes(self.staged[segment].data)
            self.commit_count[segment] += 1
        if self.crash_after_next_commit:
            self.crash_after_next_commit = False
            self._receivers.clear()
            return None
        del self.staged[segment]
        return receiver.committed()

    def _answer(self, respond: Respond | None) -> Answer | None:
        return None if respond is None else Answer(respond.status, respond.headers)

    def handle(self, request: object, manifest: Manifest, now: float) -> Answer | None:
        """One request; ``None`` means the hub died while handling it (no answer)."""
        try:
            return self._handle(request, manifest, now)
        except RemoteProtocolError as error:
            return Answer(error.status, error.headers, error.to_body())

    def _handle(self, request: object, manifest: Manifest, now: float) -> Answer | None:
        segment = manifest.segment
        if isinstance(request, CreateUpload):
            sent = Manifest.from_upload_metadata(request.metadata)  # strict decoding, as the real hub does
            refused = self.refused.get(segment)
            reason = refused[1] if refused is not None and refused[0] == sent else None
            decision = self._receiver(segment, now).create(sent, request.length, now, reason)
            if isinstance(decision, ResetStaging):
                self.staged[segment] = StagedUpload(decision.manifest, bytearray(), now)
                decision = decision.answer
            return self._answer(decision)
        if isinstance(request, ProbeOffset):
            return self._answer(self._receiver(segment, now).probe(now))
        assert isinstance(request, WirePatch)
        receiver = self._receiver(segment, now)
        plan = receiver.begin_chunk(request.offset, request.declared_length, request.checksum, now, request.tail)
        if isinstance(plan, Respond):
            return self._answer(plan)
        staged = self.staged[segment]
        if plan.tail_check is not None:
            check = plan.tail_check
            dropped = receiver.tail_checked(plan, sha256_hex(bytes(staged.data[check.start:check.end])) == check.sha256)
            if dropped is not None:
                del staged.data[dropped.offset:]
                assert dropped.error is not None
                raise dropped.error
        body = request.body[: plan.length]
        whole = len(body) == plan.length
        kept = 0
        for end in range(plan.slice_bytes, len(body), plan.slice_bytes):  # slices before the body's end
            staged.data.extend(body[kept:end])  # "fsync + persist the slice's offset" happen together here
            receiver.slice_stored(plan, end)
            kept = end
        checksum_ok = plan.checksum.matches(body) if plan.checksum and whole else None
        outcome = receiver.end_chunk(plan, len(body), checksum_ok, now)
        if isinstance(outcome, DropChunk):
            del staged.data[outcome.offset:]  # the durable offset goes back first, then the bytes
            if outcome.error is not None:
                raise outcome.error
            return None
        assert isinstance(outcome, KeepChunk)
        staged.data.extend(body[kept:])  # "fsync + persist offset" happen together here
        staged.expires_at = receiver.expires_at
        if not whole:
            return None  # the body was cut: the connection is gone, nobody to answer
        if outcome.verify:
            return self._answer(self._verify_and_commit(receiver))
        return self._answer(outcome.answer)


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

    hub: SimulatedHub
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
            elif fault is Fault.CRASH_HUB_BEFORE_COMMIT:
                self.hub.crash_before_next_commit = True
            elif fault is Fault.CRASH_HUB_AFTER_COMMIT:
                self.hub.crash_after_next_commit = True
        if fault is Fault.DUPLICATE:
            self.hub.handle(wire, manifest, self.now)
        answer = self.hub.handle(wire, manifest, self.now)
        self.hub.crash_before_next_commit = self.hub.crash_after_next_commit = False
        if isinstance(wire, WirePatch) and len(wire.body) < wire.declared_length:
            return None  # a cut body never gets an answer
        return None if fault in (Fault.LOSE_ANSWER, Fault.RESTART_SENDER) else answer

    @staticmethod
    def _report(sender: UploadSender, answer: Answer | None) -> None:
        if answer is None:
            sender.on_connection_lost()
        else:
            sender.on_answer(answer.status, answer.headers, answer.body, seconds=1.0)
