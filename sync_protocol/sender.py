"""The sending side of one resumable segment upload (the edge's half of tus + Harbour commit).

Theory of operation
-------------------
An ``UploadSender`` is told what happened and says what to send next. The edge's uploader loop is:

    while (request := sender.next_request()) is not None:
        do the request over HTTP (read the chunk from the segment file, checksum it, PATCH it)
        report the outcome: on_created / on_offset / on_chunk_accepted / on_error / on_connection_lost

It never sleeps, reads a clock or opens a socket: back-off between retries (``backoff``, with an rng) and the
timing of chunks belong to the caller, which passes elapsed seconds in.

The rules that matter:

* Creation is idempotent (one URL per segment), so after any doubt the sender may create again;
  after a cut it asks the hub for its durable offset (HEAD) instead of guessing (G3).
* The only proof of delivery is ``Harbour-Commit: committed`` from the hub: on the final chunk's
  answer, on a HEAD, or on a repeated creation. ``ACKED`` is reached in no other way (G2, G8).
* Every error code says what to do (``errors.PeerAction``): resync, resend the chunk, restart the
  upload, retry later, or park the segment for an operator. A parked segment never blocks others.
  A segment is parked only after ``PERMANENT_ANSWERS_BEFORE_PARKING`` permanent answers in a row
  (``MALFORMED_ANSWERS_BEFORE_PARKING`` when they say the request was malformed or carry no code): on a
  plain-HTTP link that flips bits, a damaged token or header can draw one 401 or 400 by chance.
* Each cut halves the chunk size, so a link that drops every few kilobytes still makes progress.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from .chunking import ChunkSizer
from .errors import ErrorBody, ErrorCode, LocalProtocolError, PeerAction, RemoteProtocolError, decode_error_body
from .limits import MALFORMED_ANSWERS_BEFORE_PARKING, MAX_SEGMENT_DIGEST_FAILURES, PERMANENT_ANSWERS_BEFORE_PARKING
from .manifest import Manifest
from .tus import COMMITTED, HARBOUR_COMMIT, HARBOUR_VERIFIED_OFFSET, UPLOAD_OFFSET, parse_offset


def _strikes_before_parking(error: ErrorBody) -> int:
    """A refusal of the segment itself (a Harbour code whose action is to park: a wrong token, a conflict) is
    believed after a few repeats; an answer that says the request was malformed, or has no code, after more."""
    if error.code is not None and error.code.action is PeerAction.PARK:
        return PERMANENT_ANSWERS_BEFORE_PARKING
    return MALFORMED_ANSWERS_BEFORE_PARKING


class TxState(enum.Enum):
    CREATING = "creating"  # next: POST the upload (idempotent)
    PROBING = "probing"  # next: HEAD for the hub's durable offset
    SENDING = "sending"  # next: PATCH the chunk at the known offset
    ACKED = "acked"  # the hub said committed: the edge may mark the segment acked
    PARKED = "parked"  # a permanent rejection: quarantined until an operator acts


class TxEvent(enum.Enum):
    CREATED = "created"  # 201, with the hub's offset
    OFFSET_REPORTED = "offset reported"  # HEAD 200
    CHUNK_ACCEPTED = "chunk accepted"  # PATCH 204, not yet complete
    COMMITTED = "committed"  # any answer carrying Harbour-Commit: committed
    CONNECTION_LOST = "connection lost"  # refused, reset, timed out, stalled, cut mid-body
    RESYNC = "resync"  # 409 offset mismatch, or an answer that contradicts what we sent
    CHUNK_DAMAGED = "chunk damaged"  # 460 on a chunk
    UPLOAD_LOST = "upload lost"  # 404/410, or the whole-segment digest failed at the hub
    TRANSIENT = "transient"  # 429, 5xx, 507: same request again after back-off
    PERMANENT = "permanent"  # auth, conflict, quarantine, too large: park


SENDER_TRANSITIONS: dict[TxState, dict[TxEvent, TxState]] = {
    TxState.CREATING: {
        TxEvent.CREATED: TxState.SENDING,
        TxEvent.COMMITTED: TxState.ACKED,
        TxEvent.CONNECTION_LOST: TxState.CREATING,
        TxEvent.TRANSIENT: TxState.CREATING,
        TxEvent.RESYNC: TxState.PROBING,
        TxEvent.UPLOAD_LOST: TxState.CREATING,
        TxEvent.PERMANENT: TxState.PARKED,
    },
    TxState.PROBING: {
        TxEvent.OFFSET_REPORTED: TxState.SENDING,
        TxEvent.COMMITTED: TxState.ACKED,
        TxEvent.UPLOAD_LOST: TxState.CREATING,
        TxEvent.CONNECTION_LOST: TxState.PROBING,
        TxEvent.TRANSIENT: TxState.PROBING,
        TxEvent.RESYNC: TxState.PROBING,
        TxEvent.PERMANENT: TxState.PARKED,
    },
    TxState.SENDING: {
        TxEvent.CHUNK_ACCEPTED: TxState.SENDING,
        TxEvent.COMMITTED: TxState.ACKED,
        TxEvent.CONNECTION_LOST: TxState.PROBING,
        TxEvent.RESYNC: TxState.PROBING,
        TxEvent.CHUNK_DAMAGED: TxState.SENDING,
        TxEvent.UPLOAD_LOST: TxState.CREATING,
        TxEvent.TRANSIENT: TxState.PROBING,
        TxEvent.PERMANENT: TxState.PARKED,
    },
    TxState.ACKED: {},
    TxState.PARKED: {},
}


PROGRESS_EVENTS = frozenset({TxEvent.CHUNK_ACCEPTED, TxEvent.COMMITTED})
"""Only these prove that the upload moves forward: a HEAD that succeeds between two failing PATCHes does
not, so it must not reset the failure count (else a 403 or a full hub disk would be retried forever)."""


@dataclass(frozen=True)
class CreateUpload:
    metadata: str
    length: int


@dataclass(frozen=True)
class ProbeOffset:
    pass


@dataclass(frozen=True)
class SendChunk:
    offset: int
    length: int
    tail_from: int | None = None  # also send Harbour-Tail-Sha256 of the file's bytes [tail_from, offset)


Request = CreateUpload | ProbeOffset | SendChunk


class UploadSender:
    def __init__(self, manifest: Manifest, *, resumed: bool = False, sizer: ChunkSizer | None = None) -> None:
        """``resumed``: the edge was uploading this segment before it restarted, so ask where it stands."""
        self.manifest = manifest
        self.state = TxState.PROBING if resumed else TxState.CREATING
        self.offset = 0
        self.tail_from: int | None = None  # the hub kept unverified bytes [tail_from, offset) after a cut
        self.sizer = sizer or ChunkSizer()
        self.in_flight: Request | None = None
        self.digest_failures = 0
        self.permanent_strikes = 0  # permanent-looking answers in a row
        self.last_event: TxEvent | None = None
        self.park_reason = ""
        self.last_error = ""

    # -- what to send --------------------------------------------------------------------------------

    def next_request(self) -> Request | None:
        if self.in_flight is not None:
            raise LocalProtocolError("next_request before the outcome of the previous one was reported")
        if self.state is TxState.CREATING:
            self.in_flight = CreateUpload(self.manifest.to_upload_metadata(), self.manifest.byte_size)
        elif self.state is TxState.PROBING:
            self.in_flight = ProbeOffset()
        elif self.state is TxState.SENDING:
            length = min(self.sizer.size, self.manifest.byte_size - self.offset)
            self.in_flight = SendChunk(self.offset, length, self.tail_from)
        else:
            return None
        return self.in_flight

    @property
    def done(self) -> bool:
        return self.state in (TxState.ACKED, TxState.PARKED)

    # -- what happened -------------------------------------------------------------------------------

    def _move(self, event: TxEvent) -> None:
        target = SENDER_TRANSITIONS[self.state].get(event)
        if target is None:
            raise LocalProtocolError(
                f"event {event.value!r} is not allowed in state {self.state.value!r}", op="sending",
                subject=str(self.manifest.segment),
            )
        self.state = target
        self.in_flight = None
        self.last_event = event
        if event in PROGRESS_EVENTS:
            self.permanent_strikes = 0  # bytes moved: the hub and the link are sane again

    def _take(self, kind: type) -> Request:
        request = self.in_flight
        if not isinstance(request, kind):
            raise LocalProtocolError(f"reported a {kind.__name__} outcome while {request!r} was in flight")
        return request

    def _at_offset(self, offset: int, committed: bool, event: TxEvent) -> None:
        if committed:
            self.offset = self.manifest.byte_size
            self._move(TxEvent.COMMITTED)
            return
        if not 0 <= offset < self.manifest.byte_size:
            # The hub claims every byte (or more) yet no commit: ask again rather than guess.
            self.last_error = f"hub reported offset {offset} of {self.manifest.byte_size} without a commit"
            self._move(TxEvent.RESYNC)
            return
        self.offset = offset
        self._move(event)

    def on_answer(self, status: int, headers: Mapping[str, str], body: bytes, seconds: float) -> None:
        """Feed a complete HTTP answer to the request in flight (``headers`` as received; ``seconds``
        from the first byte sent to the end of the answer). Dispatches to the ``on_*`` methods below."""
        request = self.in_flight
        committed = headers.get(HARBOUR_COMMIT) == COMMITTED
        try:
            offset = parse_offset(headers[UPLOAD_OFFSET]) if UPLOAD_OFFSET in headers else None
            verified = parse_offset(headers[HARBOUR_VERIFIED_OFFSET]) if HARBOUR_VERIFIED_OFFSET in headers else None
        except RemoteProtocolError as problem:
            self.on_malformed_answer(problem)
            return
        # Bytes the hub kept after a cut without a checksum: vouch for them with the next chunk.
        self.tail_from = verified if offset is not None and verified is not None and verified < offset else None
        if 200 <= status < 300:
            if status == 201 and isinstance(request, CreateUpload):
                self.on_created(offset, committed)
            elif status == 200 and isinstance(request, ProbeOffset) and offset is not None:
                self.on_offset(offset, committed)
            elif status == 204 and isinstance(request, SendChunk) and offset is not None:
                self.on_chunk_accepted(offset, committed, seconds)
            else:
                self.on_malformed_answer(RemoteProtocolError(
                    f"HTTP {status} to {type(request).__name__} without a usable Upload-Offset"))
            return
        error = decode_error_body(status, body)
        if error.action is PeerAction.ACKED and not committed:
            # "already committed" without Harbour-Commit is not proof of delivery: ask (HEAD) instead.
            error = ErrorBody(409, error.message, ErrorCode.OFFSET_MISMATCH, error.hint)
        self.on_error(error)

    def on_created(self, offset: int | None, committed: bool) -> None:
        """201 from creation; ``offset`` from the answer's Upload-Offset (absent from non-Harbour hubs)."""
        self._take(CreateUpload)
        if offset is None and not committed:
            self._move(TxEvent.RESYNC)  # a plain tus server: ask where the upload stands
            return
        self._at_offset(offset or 0, committed, TxEvent.CREATED)

    def on_offset(self, offset: int, committed: bool) -> None:
        """200 from HEAD."""
        self._take(ProbeOffset)
        self._at_offset(offset, committed, TxEvent.OFFSET_REPORTED)

    def on_chunk_accepted(self, new_offset: int, committed: bool, seconds: float) -> None:
        """204 from PATCH, with the answer's Upload-Offset and the time the chunk took."""
        chunk = self._take(SendChunk)
        if committed:
            self.sizer.on_success(chunk.length, seconds)
            self._at_offset(new_offset, True, TxEvent.COMMITTED)
            return
        if new_offset != chunk.offset + chunk.length:
            self.last_error = f"hub answered offset {new_offset} for a chunk ending at {chunk.offset + chunk.length}"
            self._move(TxEvent.RESYNC)
            return
        self.sizer.on_success(chunk.length, seconds)
        self._at_offset(new_offset, False, TxEvent.CHUNK_ACCEPTED)

    def on_connection_lost(self) -> None:
        if self.in_flight is None:
            raise LocalProtocolError("on_connection_lost with nothing in flight")
        if isinstance(self.in_flight, SendChunk):
            self.sizer.on_cut()
        self.last_error = "connection lost"
        self._move(TxEvent.CONNECTION_LOST)

    def on_error(self, error: ErrorBody) -> None:
        """Any non-success answer, decoded with ``errors.decode_error_body``."""
        if self.in_flight is None:
            raise LocalProtocolError("on_error with nothing in flight")
        self.last_error = f"HTTP {error.status}: {error.message}"
        action = error.action
        if error.code is ErrorCode.SEGMENT_DIGEST_MISMATCH:
            self.digest_failures += 1
            if self.digest_failures >= MAX_SEGMENT_DIGEST_FAILURES:
                self._park(f"the hub found the segment's sha256 wrong {self.digest_failures} times: {error.message}")
                return
        if action is PeerAction.ACKED:
            self.offset = self.manifest.byte_size
            self._move(TxEvent.COMMITTED)
        elif action is PeerAction.RESYNC:
            self._move(TxEvent.RESYNC)
        elif action is PeerAction.RESEND_CHUNK and isinstance(self.in_flight, SendChunk):
            self._move(TxEvent.CHUNK_DAMAGED)
        elif action is PeerAction.RESTART_UPLOAD:
            self.offset = 0
            self._move(TxEvent.UPLOAD_LOST)
        elif action is PeerAction.RETRY:
            self._move(TxEvent.TRANSIENT)
        else:
            self.permanent_strikes += 1
            if self.permanent_strikes < _strikes_before_parking(error):
                self._move(TxEvent.TRANSIENT)  # maybe a damaged request: ask again after back-off
                return
            self._park(f"HTTP {error.status} {error.code.slug if error.code else ''}: {error.message}".strip())

    def on_malformed_answer(self, problem: RemoteProtocolError) -> None:
        """The hub's answer could not be parsed (e.g. a garbled Upload-Offset): treat it like a cut, since
        a proxy that damages answers is a transient fault, and ask again."""
        self.last_error = f"malformed answer: {problem}"
        if self.in_flight is None:
            raise LocalProtocolError("on_malformed_answer with nothing in flight")
        self._move(TxEvent.CONNECTION_LOST)

    def _park(self, reason: str) -> None:
        self.park_reason = reason
        self._move(TxEvent.PERMANENT)
