"""How the edge reaches the hub: a small interface, and its real implementation over aiohttp.

The sync agent talks to the hub only through ``HubTransport`` (STYLE 6), so a test can put a
fault-injecting transport in between. ``AiohttpHubTransport`` is the real one: tus 1.0.0 requests with
the site's bearer token, certificate checks on by default (``--hub-ca`` for a private CA), the upload
cap applied to every PATCH body, and a stall watchdog: a link that goes silent without closing
(a half-open connection: no FIN, no RST) is noticed within ``STALL_SECONDS`` and reported as
``LinkDown``, exactly like a refused or reset connection.

``download`` streams one dataset version (the downlink, issue 17) into a ``DownloadSink`` with
``Range: bytes=N-``: the same stall watchdog, and the same cap (``UploadPacer``) metering the bytes that
arrive, so the cap set for sync bounds what sync takes of the link in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from sync_protocol.limits import MAX_ERROR_BODY_BYTES, TUS_VERSION
from sync_protocol.tus import (
    HARBOUR_TAIL_SHA256,
    PATCH_CONTENT_TYPE,
    TUS_RESUMABLE,
    UPLOAD_CHECKSUM,
    UPLOAD_LENGTH,
    UPLOAD_METADATA,
    UPLOAD_OFFSET,
    UPLOADS_PATH,
    Checksum,
    TailClaim,
)

from .contact import HubContact, problem_of_error

STALL_SECONDS = 20.0
"""No byte moved and no answer for this long means the link is dead, even if no socket says so. The
requirement is to notice a half-open link within 30 s; a geostationary round trip is ~0.6 s, and the
hub hashes a full 64 MiB segment in well under a second, so 20 s never fires on a slow-but-alive link."""

CONNECT_SECONDS = 15.0
"""TCP + TLS handshake budget: several satellite round trips, with room for a congested uplink."""

BODY_SLICE_BYTES = 16 * 1024
"""PATCH bodies are fed to the socket in slices of this size, so the upload cap and the stall watchdog
act on every 16 KiB rather than once per chunk (a chunk may be 16 MiB), and a capped link shared by
several uploads still moves every upload's body often enough for the hub's idle timeout (25 s)."""

SITE_REPORT_PATH = "/v1/sync/sites/{site}/report"
"""Where the edge reports its backlog so that the hub's fleet view can show it."""


class LinkDown(Exception):
    """The request got no answer: refused, reset, timed out, stalled or cut. Always transient."""


@dataclass(frozen=True)
class HubAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    seconds: float  # from sending the first byte to the end of the answer
    paced_seconds: float = 0.0  # of which waiting for our own upload cap (not the link's time)

    @property
    def server_seconds(self) -> float:
        """What the hub says it spent on the request itself (``Server-Timing: hub;dur=MS``): its fsyncs
        and commit are not the link's time."""
        return server_timing_seconds(self.headers.get("Server-Timing", ""))


def server_timing_seconds(header: str) -> float:
    """The ``dur`` of the ``hub`` metric of a Server-Timing header, in seconds; 0 if absent or malformed."""
    for metric in header.split(","):
        name, _, params = metric.strip().partition(";")
        if name.strip() != "hub":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    seconds = float(value) / 1000
                except ValueError:
                    return 0.0
                return seconds if 0 <= seconds < 3600 else 0.0
    return 0.0


class UploadPacer(Protocol):
    """Meters upload bytes (the bandwidth cap); ``take`` returns once ``n`` bytes may go."""

    async def take(self, n: int) -> float: ...


class DownloadSink(Protocol):
    """Where a download's body goes: ``begin(at)`` once the hub said where the body starts (0 for a whole
    file, else the ``Content-Range`` start), then every piece in order. ``write`` may raise to stop the
    download (a newer version superseded it, a more urgent upload needs the link): the exception propagates."""

    def begin(self, at: int) -> None: ...
    async def write(self, data: bytes) -> None: ...


class HubTransport(Protocol):
    async def create(self, metadata: str, length: int) -> HubAnswer: ...
    async def probe(self, upload_key: str) -> HubAnswer: ...
    async def patch(self, upload_key: str, offset: int, chunk: bytes, checksum: Checksum,
                    tail: TailClaim | None = None) -> HubAnswer: ...
    async def report(self, site: str, document: dict[str, Any]) -> HubAnswer: ...
    async def download(self, path: str, offset: int, sink: DownloadSink, etag: str | None = None) -> HubAnswer: ...
    async def close(self) -> None: ...


def content_range_start(header: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes FIRST-LAST/TOTAL``; None if absent or malformed."""
    unit, _, spec = (header or "").strip().partition(" ")
    first = spec.partition("-")[0]
    return int(first) if unit == "bytes" and first.isdigit() else None


def client_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification is always on; ``ca_file`` adds a private CA (a fleet's own hub certificate)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


class AiohttpHubTransport:
    def __init__(
        self, hub_url: str, token: str | Callable[[], str], *, pacer: UploadPacer | None = None,
        ca_file: Path | None = None, clock: Callable[[], float] | None = None, stall_seconds: float = STALL_SECONDS,
        max_connections: int = 66, contact: HubContact | None = None,
    ) -> None:
        self.base = hub_url.rstrip("/")
        self._token = token if callable(token) else (lambda: token)  # a token file is read again when it changes
        self.contact = contact or HubContact(self.base)
        self._pacer = pacer
        self._stall = stall_seconds
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        ssl_option: ssl.SSLContext | bool = client_ssl_context(ca_file) if self.base.startswith("https") else False
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ssl=ssl_option),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_SECONDS, sock_read=stall_seconds),
            auto_decompress=False,
        )

    async def close(self) -> None:
        await self._session.close()

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}", TUS_RESUMABLE: TUS_VERSION}

    def _url(self, upload_key: str | None = None) -> str:
        return f"{self.base}{UPLOADS_PATH}" + (f"/{upload_key}" if upload_key else "")

    async def create(self, metadata: str, length: int) -> HubAnswer:
        headers = {**self._headers, UPLOAD_LENGTH: str(length), UPLOAD_METADATA: metadata}
        return await self._request("POST", self._url(), headers)

    async def probe(self, upload_key: str) -> HubAnswer:
        return await self._request("HEAD", self._url(upload_key), dict(self._headers))

    async def patch(self, upload_key: str, offset: int, chunk: bytes, checksum: Checksum,
                    tail: TailClaim | None = None) -> HubAnswer:
        headers = {
            **self._headers, "Content-Type": PATCH_CONTENT_TYPE, UPLOAD_OFFSET: str(offset),
            UPLOAD_CHECKSUM: checksum.header(), "Content-Length": str(len(chunk)),
        }
        if tail is not None:
            headers[HARBOUR_TAIL_SHA256] = tail.header()
        return await self._request("PATCH", self._url(upload_key), headers, chunk)

    async def report(self, site: str, document: dict[str, Any]) -> HubAnswer:
        url = self.base + SITE_REPORT_PATH.format(site=site)
        return await self._request("PUT", url, dict(self._headers), json=document)

    async def download(self, path: str, offset: int, sink: DownloadSink, etag: str | None = None) -> HubAnswer:
        """GET ``path`` from byte ``offset`` into ``sink``. A 200/206 answer's body goes to the sink (``body`` of
        the answer is then empty); any other answer is returned with its (bounded) body and the sink untouched.
        ``etag`` goes in ``If-Range``: should the bytes at ``path`` not be that version, the hub sends all of
        them (200) and the sink starts again at 0. A cut mid-body raises ``LinkDown`` after the sink got
        everything that arrived."""
        headers = dict(self._headers)
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag:
                headers["If-Range"] = etag
        url = self.base + path
        started = self._clock()
        paced = 0.0
        with self._link_errors("GET", url):
            async with asyncio.timeout(self._stall) as deadline:
                async with self._session.get(url, headers=headers) as response:
                    deadline.reschedule(self._clock() + self._stall)
                    self.contact.answered(response.status)
                    at = 0 if response.status == 200 else content_range_start(response.headers.get("Content-Range"))
                    if response.status not in (200, 206) or at is None:
                        content = await response.content.read(MAX_ERROR_BODY_BYTES)
                        return HubAnswer(response.status, response.headers, content, self._clock() - started)
                    sink.begin(at)
                    async for piece in response.content.iter_chunked(BODY_SLICE_BYTES):
                        if self._pacer is not None:
                            deadline.reschedule(None)  # waiting for our own cap is not a stalled link
                            paced += await self._pacer.take(len(piece))
                        await sink.write(piece)
                        deadline.reschedule(self._clock() + self._stall)
                    return HubAnswer(response.status, response.headers, b"", self._clock() - started, paced)

    async def _request(self, method: str, url: str, headers: dict[str, str], body: bytes | None = None,
                       json: Any = None) -> HubAnswer:
        started = self._clock()
        paced = [0.0]
        with self._link_errors(method, url):
            async with asyncio.timeout(self._stall) as deadline:
                data = self._paced(body, deadline, paced) if body is not None else None
                async with self._session.request(method, url, headers=headers, data=data, json=json) as response:
                    deadline.reschedule(self._clock() + self._stall)
                    content = await response.content.read(MAX_ERROR_BODY_BYTES)
                    self.contact.answered(response.status)
                    return HubAnswer(response.status, response.headers, content, self._clock() - started, paced[0])

    @contextlib.contextmanager
    def _link_errors(self, method: str, url: str) -> Iterator[None]:
        """Every way a request can fail on the link, as ``LinkDown`` (and the hub contact's problem)."""
        try:
            yield
        except TimeoutError as error:
            self.contact.failed(problem_of_error(error, self.base))
            raise LinkDown(f"{method} {url}: no progress for {self._stall:.0f} s (stalled link)") from None
        except (aiohttp.ClientError, OSError) as error:
            self.contact.failed(problem_of_error(error, self.base))
            raise LinkDown(f"{method} {url}: {type(error).__name__}: {error}") from None

    async def _paced(self, body: bytes, deadline: asyncio.Timeout, paced: list[float]) -> AsyncIterator[bytes]:
        """Feed the body in slices through the upload cap; each slice the socket takes moves the stall
        deadline, so only a link on which nothing moves for ``STALL_SECONDS`` is declared dead."""
        view = memoryview(body)
        for start in range(0, len(body), BODY_SLICE_BYTES):
            piece = view[start:start + BODY_SLICE_BYTES]
            if self._pacer is not None:
                deadline.reschedule(None)  # waiting for our own cap is not a stalled link
                paced[0] += await self._pacer.take(len(piece))
            deadline.reschedule(self._clock() + self._stall)
            yield bytes(piece)
