"""Sending one dataset version to a ship: ``GET``/``HEAD`` of ``DATASET_VERSION_PATH``, resumable with ``Range``.

A ship on a satellite link is cut mid-download; it asks again with ``Range: bytes=N-`` and gets the rest (``206``
with ``Content-Range: bytes N-LAST/SIZE``). Every answer carries ``ETag: "sha256:<hex>"`` (the version's digest:
a ship checks that the bytes it resumes belong to the version it started), ``Content-Length``, ``Accept-Ranges``
and ``Harbour-Dataset-Version``. The file is streamed from disk a chunk at a time, never read whole.

Why not ``aiohttp.web.FileResponse`` (which does answer single ranges, ``206``/``416``): it replaces the ETag with
its own ``<mtime_ns>-<size>`` (different on every hub process of a cluster, and not the digest the protocol
promises), evaluates ``If-Match``/``If-None-Match``/``If-Range`` against that, guesses the content type from the file
name, and its ``416`` carries no body. Ranges are parsed here instead (``parse_range``, pure): one byte range as
RFC 9110 defines it (``N-``, ``N-M`` with M clipped to the end, ``-K``). An unsatisfiable one is a ``416`` with
``Content-Range: bytes */SIZE``; so is a malformed one or several ranges, which RFC 9110 would let a server ignore
(answering the whole file): on a link paid by the byte a sender's bug should be seen, not turned into a full
download. Every ``416`` has a JSON body that says what is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from sync_protocol.errors import ErrorCode, RemoteProtocolError

from .datasets import DatasetVersion

log = logging.getLogger("harbour.hub.datasets")

ARROW_STREAM = "application/vnd.apache.arrow.stream"
VERSION_HEADER = "Harbour-Dataset-Version"

DOWNLOAD_CHUNK_BYTES = 64 * 1024
"""Read from disk and written to the connection this much at a time: with the transport's own buffer, what a
download holds in memory (a thousand ships downloading at once: well under 200 MiB); one thread hop per chunk
still moves hundreds of MB/s on loopback, far above any ship's link."""

DOWNLOAD_STALL_SECONDS = 300.0
"""A chunk the ship's link has not taken in this long ends the download (the connection is closed; the ship
resumes with a Range). 64 KiB take about a minute at the 9.6 kbit/s of the thinnest satellite service: five
minutes without progress is a dead link or a client that stopped reading, holding a file and a connection."""

MAX_RANGE_DIGITS = 19
"""A byte position beyond 19 digits is past any file (2 GiB is 10 digits); longer text is refused before it is
turned into a number."""

_RANGE = re.compile(rf"bytes=(\d{{0,{MAX_RANGE_DIGITS}}})-(\d{{0,{MAX_RANGE_DIGITS}}})", re.IGNORECASE | re.ASCII)


def _unsatisfiable(message: str, size: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        message, code=ErrorCode.RANGE_NOT_SATISFIABLE, op="reading Range", subject=f"a version of {size} bytes",
        hint="resume with Range: bytes=N- where N is the number of bytes already held (less than the size)",
        headers={"Content-Range": f"bytes */{size}"})


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte ``header`` asks for, or None for the whole file; ``RemoteProtocolError`` (416) for
    a malformed header, several ranges, or one that starts at or past ``size``."""
    if header is None:
        return None
    text = header.strip()
    match = _RANGE.fullmatch(text)
    if match is None:
        shown = text[:60]
        if "," in text:
            raise _unsatisfiable(f"Range {shown!r} asks for several ranges; the hub sends one", size)
        raise _unsatisfiable(f"Range {shown!r} is not bytes=FIRST-[LAST] or bytes=-SUFFIX", size)
    first, last = match.groups()
    if not first:
        if not last or int(last) == 0:
            raise _unsatisfiable(f"Range {text!r} asks for no bytes", size)
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        raise _unsatisfiable(f"Range {text!r} ends before it starts", size)
    if start >= size:
        raise _unsatisfiable(f"Range {text!r} starts at or past the end of the version ({size} bytes)", size)
    return start, end


async def send_version(request: web.Request, version: DatasetVersion, path: os.PathLike,
                       run_in_thread: Callable[..., Awaitable]) -> web.StreamResponse:
    """Answer ``request`` (GET or HEAD) with ``version``'s bytes from ``path``; ``FileNotFoundError`` when the file
    went away (pruned meanwhile: the caller answers 410)."""
    etag = version.offer.etag
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None  # RFC 9110 13.1.5: another representation than the one the client holds -> all of it
    span = parse_range(wanted, version.size)
    handle = await run_in_thread(_open_checked, path, version)
    try:
        start, end = span if span is not None else (0, version.size - 1)
        response = web.StreamResponse(status=206 if span is not None else 200, headers={
            "ETag": etag, "Accept-Ranges": "bytes", VERSION_HEADER: str(version.version),
            "Cache-Control": "private, max-age=31536000, immutable",  # a version's bytes never change
        })
        response.content_type = ARROW_STREAM
        response.content_length = end - start + 1
        if span is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{version.size}"
        await response.prepare(request)
        if request.method != "HEAD":
            try:
                await _stream(response, handle, start, end - start + 1, run_in_thread)
            except ConnectionError:  # the ship's link was cut: it resumes with a Range; nothing to answer
                log.info("download of %s version %d cut", version.name, version.version)
                return response
            except TimeoutError:
                log.info("download of %s version %d stalled for %.0f s: connection closed", version.name,
                         version.version, DOWNLOAD_STALL_SECONDS)
                if request.transport is not None:
                    request.transport.abort()  # close() would wait for the buffered bytes nobody reads
                return response
        await response.write_eof()
        return response
    finally:
        await run_in_thread(handle.close)


def _open_checked(path: os.PathLike, version: DatasetVersion):
    handle = open(path, "rb")  # noqa: SIM115 -- closed by send_version
    actual = os.fstat(handle.fileno()).st_size
    if actual != version.size:
        handle.close()
        raise RuntimeError(f"the file of dataset {version.name} version {version.version} ({path}) holds {actual} "
                           f"bytes, not the {version.size} published: it was changed outside the hub")
    return handle


async def _stream(response: web.StreamResponse, handle, start: int, count: int,
                  run_in_thread: Callable[..., Awaitable]) -> None:
    await run_in_thread(handle.seek, start)
    left = count
    while left > 0:
        chunk = await run_in_thread(handle.read, min(DOWNLOAD_CHUNK_BYTES, left))
        if not chunk:
            raise RuntimeError(f"the dataset file ended {left} bytes early")
        async with asyncio.timeout(DOWNLOAD_STALL_SECONDS):
            await response.write(chunk)  # waits while the ship's link drains: memory stays at one chunk
        left -= len(chunk)
