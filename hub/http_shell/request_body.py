"""Reading a small request body with a hard bound in size and time, for the JSON and form routes (not tus chunks,
which ``hub/uploads.py`` streams to disk). aiohttp's ``client_max_size`` guards only ``request.read()``; this also
stops at an announced ``Content-Length`` before reading a byte, and at a body that stalls or trickles: nothing in
aiohttp times out a handler's read, so a report announced as 16 KiB and sent a byte a minute held its connection
as long as its sender liked."""

from __future__ import annotations

import asyncio

from aiohttp import web

from sync_protocol import ErrorCode, RemoteProtocolError

SMALL_BODY_IDLE_SECONDS = 25.0
"""A small body that sends nothing for this long is refused: the PATCH bodies' idle timeout
(``hub.uploads.BODY_IDLE_TIMEOUT_SECONDS``), for the same satellite links that go silent for seconds."""

SMALL_BODY_SECONDS = 60.0
"""The whole of a small body (a backlog report of ~400 bytes, a login form) must arrive within this: 16 KiB at
2.4 kbit/s, the thinnest link a ship reports over, takes 55 s."""


class BodyTooLarge(Exception):
    pass


async def read_bounded(request: web.Request, limit: int, idle: float = SMALL_BODY_IDLE_SECONDS,
                       total: float = SMALL_BODY_SECONDS) -> bytes:
    """The whole body, or ``BodyTooLarge`` as soon as it passes ``limit`` bytes (announced or streamed), or a
    ``408 body-timeout`` when it stalls for ``idle`` seconds or is not whole after ``total``."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total
    body = bytearray()
    while True:
        try:
            async with asyncio.timeout(min(idle, deadline - loop.time())):
                chunk = await request.content.read(limit + 1 - len(body))
        except TimeoutError:
            raise RemoteProtocolError(
                f"the body stopped arriving after {len(body)} bytes; nothing was kept", code=ErrorCode.BODY_TIMEOUT,
                op="reading body", subject=request.path[:100], hint="send the whole body at once; retry",
                headers={"Connection": "close"}) from None
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
