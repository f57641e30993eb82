"""A tiny real hub for the downlink's edge tests: it answers reports with a desired state and serves dataset
versions with Range, as ``sync_protocol.downlink`` fixes the wire (the real hub's side is tested in tests/hub).

It runs its own event loop in a thread, so a test can drive it while the code under test -- in-process or a
real ``harbour edge run`` -- talks to it over TCP. It can cut every answer after some bytes, pace its bodies,
and mark versions pruned (410)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pytest
from aiohttp import web

from sync_protocol.downlink import DATASET_VERSION_PATH, DatasetOffer, DesiredState, ManagedSettings

PIECE_BYTES = 16 * 1024


def arrow_dataset(version: int, rows: int) -> bytes:
    """An Arrow IPC stream whose every row carries its version (so a mix of two versions would show)."""
    table = pa.table({"sku": pa.array(range(rows), pa.int64()), "version": pa.array([version] * rows, pa.int64()),
                      "label": pa.array([f"item {i} of v{version}" for i in range(rows)])})
    sink = io.BytesIO()
    with pa_ipc.new_stream(sink, table.schema) as writer:
        for start in range(0, rows, 10_000):
            writer.write_table(table.slice(start, 10_000))
    return sink.getvalue()


class DownlinkHub:
    def __init__(self, token: str = "secret-token") -> None:
        self.token = token
        self.versions: dict[tuple[str, int], bytes] = {}
        self.offered: dict[str, int] = {}  # dataset -> newest version offered
        self.pruned: set[tuple[str, int]] = set()
        self.settings: ManagedSettings | None = None
        self.reports: list[dict] = []
        self.requests: list[tuple[str, int, int]] = []  # (dataset, version, first byte asked)
        self.served_bytes = 0
        self.cut_after: int | None = None  # close the connection after this many body bytes of an answer
        self.bytes_per_second: float | None = None
        self.refuse_ranges = 0  # answer this many ranged requests 416
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, name: str, data: bytes) -> DatasetOffer:
        version = max((v for n, v in self.versions if n == name), default=0) + 1
        self.versions[(name, version)] = data
        self.offered[name] = version
        return self.offer(name, version)

    def offer(self, name: str, version: int) -> DatasetOffer:
        data = self.versions[(name, version)]
        return DatasetOffer(name, version, hashlib.sha256(data).hexdigest(), len(data))

    def reported(self) -> dict | None:
        return self.reports[-1].get("downlink") if self.reports else None

    # -- the server ---------------------------------------------------------------------------------------

    def start(self) -> DownlinkHub:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_put("/v1/sync/sites/{site}/report", self._report)
        app.router.add_get(DATASET_VERSION_PATH, self._download)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _report(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "bad token", "code": "unauthorized"}, status=401)
        self.reports.append(await request.json())
        desired = DesiredState(tuple(self.offer(n, v) for n, v in sorted(self.offered.items())), self.settings)
        return web.Response(body=desired.to_json(), content_type="application/json")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"error": "bad token", "code": "unauthorized"}, status=401)
        key = (request.match_info["name"], int(request.match_info["version"]))
        if key in self.pruned:
            return web.json_response({"error": "pruned", "code": "upload-gone"}, status=410)
        if key not in self.versions:
            return web.json_response({"error": "not offered", "code": "no-such-path"}, status=404)
        data = self.versions[key]
        etag = self.offer(*key).etag
        first = 0
        spec = request.headers.get("Range", "")
        if spec.startswith("bytes=") and request.headers.get("If-Range", etag) == etag:
            first = int(spec[len("bytes="):].partition("-")[0])
        self.requests.append((*key, first))
        if first and self.refuse_ranges:
            self.refuse_ranges -= 1
            return web.json_response({"error": "cannot resume", "code": "range-not-satisfiable"}, status=416)
        status = 206 if first else 200
        headers = {"ETag": etag, "Content-Type": "application/vnd.apache.arrow.stream"}
        if first:
            headers["Content-Range"] = f"bytes {first}-{len(data) - 1}/{len(data)}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(data) - first
        await response.prepare(request)
        sent = 0
        for start in range(first, len(data), PIECE_BYTES):
            piece = data[start:start + PIECE_BYTES]
            if self.cut_after is not None and sent + len(piece) > self.cut_after:
                piece = piece[:self.cut_after - sent]
                await response.write(piece)
                self.served_bytes += len(piece)
                request.transport.close()  # a cut link: the edge sees the body end early
                return response
            await response.write(piece)
            sent += len(piece)
            self.served_bytes += len(piece)
            if self.bytes_per_second:
                await asyncio.sleep(len(piece) / self.bytes_per_second)
        await response.write_eof()
        return response


@pytest.fixture
def downlink_hub() -> Iterator[DownlinkHub]:
    hub = DownlinkHub().start()
    yield hub
    hub.stop()


@pytest.fixture
def dataset_bytes():
    return arrow_dataset
