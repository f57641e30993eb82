"""Small bodies are bounded in size and time (``hub.http_shell.request_body``)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.http_shell.request_body import BodyTooLarge, read_bounded
from sync_protocol import RemoteProtocolError


async def _handler(request: web.Request) -> web.Response:
    try:
        body = await read_bounded(request, 100, idle=0.3, total=1.0)
    except BodyTooLarge:
        return web.Response(status=413)
    except RemoteProtocolError as error:
        return web.Response(status=error.status, body=error.to_body())
    return web.Response(text=str(len(body)))


@pytest.fixture
async def server():
    app = web.Application()
    app.router.add_post("/", _handler)
    async with TestServer(app) as test_server:
        yield test_server


async def _post(server, head: bytes, pieces: list[bytes], pause: float) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n")
    for piece in pieces:
        if reader.at_eof():
            break
        writer.write(piece)
        await asyncio.sleep(pause)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # not to the close: aiohttp lingers 10 s
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])  # reading what a refused body still sends
    answer = head + await asyncio.wait_for(reader.readexactly(length), 5)
    writer.close()
    return answer


async def test_a_whole_body_is_read(server):
    assert (await _post(server, b"Content-Length: 5\r\n", [b"hello"], 0)).endswith(b"5")


async def test_too_large_announced_or_sent(server):
    assert (await _post(server, b"Content-Length: 101\r\n", [], 0)).startswith(b"HTTP/1.1 413")
    chunked = b"Transfer-Encoding: chunked\r\n"
    assert (await _post(server, chunked, [b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n"], 0)).startswith(b"HTTP/1.1 413")


async def test_a_body_that_stalls_or_trickles_is_408(server):
    started = time.monotonic()
    assert (await _post(server, b"Content-Length: 50\r\n", [b"x"], 0)).startswith(b"HTTP/1.1 408")  # stalls
    assert time.monotonic() - started < 1.0
    trickle = await _post(server, b"Content-Length: 50\r\n", [b"x"] * 50, 0.1)  # never idle 0.3 s, 5 s in all
    assert trickle.startswith(b"HTTP/1.1 408") and b"body-timeout" in trickle  # at the 1 s total deadline
