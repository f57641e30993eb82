"""The hub's real upload service over in-memory storage, as the protocol simulation's hub.

``sync_protocol.simulation`` runs senders over a faulty link against a ``HubUnderTest``; this is that hub,
and it is the production ``UploadService`` (so the generated fault sequences test the code that runs, not a
copy of it) over ``hub.memory``'s ledger and staging. Everything stays deterministic and replayable from the
simulation's seed: blocking work runs inline (no threads), the clock is the simulation's, and each request
runs to its end on one event loop before the next starts.

A crash is a SIGKILL: the service and its receivers are dropped, the staging area loses what was never
fsync'd, and a new service is built over the same durable state and recovers as ``hub.server`` does at
start-up. ``crash_at`` names the window (``hub.faults`` crash points); the service's own crash hook fires it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from sync_protocol.errors import RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import TUS_VERSION
from sync_protocol.manifest import Manifest
from sync_protocol.receiver import Respond
from sync_protocol.segment_contents import SegmentContents
from sync_protocol.sender import CreateUpload, ProbeOffset
from sync_protocol.simulation import Answer, CrashWindow, WirePatch
from sync_protocol.tus import TUS_RESUMABLE

from .memory import MemoryLedger, MemoryStaging
from .uploads import UploadService

SIMULATED_SLICE_BYTES = 48
"""Long chunks are made durable in slices this small, so that the simulated link's chunks (8 bytes to
1 KiB) span several of them and every fault meets a chunk half made durable."""

SIMULATED_WRITE_BYTES = 16
"""Body bytes per staging write: a divisor of the slice size, so that slices end exactly on it."""


class HubCrashed(BaseException):
    """The simulated SIGKILL. A ``BaseException``, so that no ``except Exception`` in the hub can survive it."""


async def run_inline(function: Callable, *args):
    """The service's thread runner, without threads: in-memory storage never blocks, and order stays fixed."""
    return function(*args)


class MemoryBody:
    """A PATCH body that arrived as ``data``; if that is shorter than announced, the link was cut there."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    async def read(self, n: int) -> bytes:
        piece = self._data[self._at:self._at + n]
        self._at += len(piece)
        return piece


ReadContents = Callable[[Manifest, bytes], SegmentContents]


class CountingLedger(MemoryLedger):
    """Counts, per segment, the commits the ledger took as new: the exactly-once check reads it (the service's
    ``on_commit`` would miss a commit that a crash cut off before its callback)."""

    def __init__(self) -> None:
        super().__init__()
        self.commit_count: Counter[SegmentId] = Counter()

    def commit(self, manifest: Manifest, now: float) -> bool:
        newly = super().commit(manifest, now)
        self.commit_count[manifest.segment] += newly
        return newly


class InMemoryHub:
    """``sync_protocol.simulation.HubUnderTest`` with the real ``UploadService``.

    ``read_contents(manifest, data)`` stands for reading a complete file's Parquet footer (default: the
    manifest tells the truth); a test passes one that lies to exercise the refusal. ``service_type`` is
    ``UploadService`` unless a test wires a deliberately broken one, to show that the properties catch it."""

    def __init__(self, read_contents: ReadContents | None = None,
                 service_type: type[UploadService] = UploadService) -> None:
        self.ledger = CountingLedger()
        self._declared: dict[SegmentId, Manifest] = {}  # what each upload's manifest said (for read_contents)
        self._read_contents = read_contents
        self.staging = MemoryStaging(self._footer)
        self.now = 0.0
        self._crash_at: CrashWindow | None = None
        self._service_type = service_type
        self._loop: asyncio.AbstractEventLoop | None = None  # for callers outside an event loop; made on first use
        self.service = self._new_service()  # nothing durable yet: nothing to recover

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()

    def _run(self, coroutine):
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coroutine)

    def __enter__(self) -> InMemoryHub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what the checks look at -------------------------------------------------------------------------

    @property
    def commit_count(self) -> Counter[SegmentId]:
        return self.ledger.commit_count

    @property
    def committed(self) -> dict[SegmentId, Manifest]:
        return self.ledger.all_committed()

    def committed_bytes(self, segment: SegmentId) -> bytes | None:
        """The file the merger would read for a committed segment."""
        return self.staging.data(segment)

    # -- life cycle --------------------------------------------------------------------------------------

    def _footer(self, segment: SegmentId, data: bytes) -> SegmentContents:
        manifest = self._declared[segment]
        if self._read_contents is not None:
            return self._read_contents(manifest, data)
        return SegmentContents(manifest.row_count, manifest.schema_fingerprint)  # opaque bytes: as declared

    def _crash_hook(self, point: str) -> None:
        if self._crash_at is not None and point == self._crash_at.value:
            self._crash_at = None
            raise HubCrashed(point)

    def _new_service(self) -> UploadService:
        return self._service_type(
            self.ledger, self.staging, lambda: self.now, run_inline, body_idle_timeout=None, crash=self._crash_hook,
            slice_bytes=SIMULATED_SLICE_BYTES, write_buffer_bytes=SIMULATED_WRITE_BYTES,
        )

    async def _crash_and_start(self) -> None:
        """SIGKILL, then a fresh hub process over the durable state, recovering as ``hub.server`` does."""
        self._crash_at = None
        self.staging.crash()
        self.service = self._new_service()
        await self.service.recover()

    def restart(self, now: float) -> None:
        self._run(self.restart_async(now))

    async def restart_async(self, now: float) -> None:
        self.now = now
        await self._crash_and_start()

    # -- requests ------------------------------------------------------------------------------------------

    def handle(self, request: object, manifest: Manifest, now: float,
               crash_at: CrashWindow | None = None) -> Answer | None:
        return self._run(self.handle_async(request, manifest, now, crash_at))

    async def handle_async(self, request: object, manifest: Manifest, now: float,
                           crash_at: CrashWindow | None = None) -> Answer | None:
        """``handle`` for a caller already in an event loop (the edge's sync agent in its tests)."""
        self.now, self._crash_at = now, crash_at
        try:
            return _answer(await self._serve(request, manifest))
        except RemoteProtocolError as error:
            return Answer(error.status, {TUS_RESUMABLE: TUS_VERSION, **error.headers}, error.to_body())
        except HubCrashed:
            await self._crash_and_start()
            return None  # the process died with the connection
        finally:
            self._crash_at = None

    async def _serve(self, request: object, manifest: Manifest) -> Respond | None:
        """Parse as ``hub.http_api`` does, then call the service."""
        segment = manifest.segment
        if isinstance(request, CreateUpload):
            sent = Manifest.from_upload_metadata(request.metadata)  # strict decoding, as the real hub does
            self._declared[sent.segment] = sent
            return await self.service.create(sent, request.length)
        if isinstance(request, ProbeOffset):
            return await self.service.probe(segment)
        assert isinstance(request, WirePatch)
        return await self.service.patch(segment, request.offset, request.declared_length, request.checksum,
                                        MemoryBody(request.body), request.tail)


def _answer(respond: Respond | None) -> Answer | None:
    return None if respond is None else Answer(respond.status, respond.headers)
