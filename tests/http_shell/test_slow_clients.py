"""The deadline on request heads (``http_shell.slow_clients``), in process with a short deadline; the real hub and
edge under 300 slow clients: ``tests/hub/test_server.py`` and ``tests/edge_node/test_server.py``."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from hub.http_shell.slow_clients import GuardedRunner

DEADLINE = 0.4


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


@pytest.fixture
async def server():
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", _echo)
    runner = GuardedRunner(app, header_timeout=DEADLINE)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def _read_to_close(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    started, answer = time.monotonic(), b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(4096):
            answer += chunk
    return answer, time.monotonic() - started


async def test_a_head_that_trickles_is_408_at_the_deadline_however_many_bytes_come(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    started = time.monotonic()
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\n":  # 26 bytes at 50 a second: past the deadline
        if reader.at_eof() or time.monotonic() - started > DEADLINE:
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.02)
    answer, _ = await _read_to_close(reader, 2)
    assert time.monotonic() - started < DEADLINE + 0.5
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408") and b"Connection: close" in head
    assert json.loads(body)["code"] == "header-timeout"
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    answer, waited = await _read_to_close(reader, 2)
    assert answer.startswith(b"HTTP/1.1 408") and DEADLINE - 0.1 < waited < DEADLINE + 0.5
    writer.close()


async def test_a_slow_body_and_an_idle_kept_alive_connection_are_not_cut(server):
    """The deadline is on heads only: bodies are the handlers' business, idle time the keep-alive timer's."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
    for byte in b"abcd":
        await asyncio.sleep(DEADLINE / 2)
        writer.write(bytes([byte]))
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    assert await reader.readexactly(1) == b"4"
    await asyncio.sleep(DEADLINE * 2)  # idle between requests
    writer.write(b"GET /y HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()
