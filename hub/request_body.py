"""Reading a small request body with a hard bound, for the JSON and form routes (not tus chunks, which
``hub/uploads.py`` streams to disk). aiohttp's ``client_max_size`` guards only ``request.read()``;
this also stops at an announced ``Content-Length`` before reading a byte."""

from __future__ import annotations

from aiohttp import web


class BodyTooLarge(Exception):
    pass


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The whole body, or ``BodyTooLarge`` as soon as it passes ``limit`` bytes (announced or streamed)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)
