"""A deadline on a request's headers, which aiohttp does not have.

aiohttp bounds a request's *size* (``max_line_size``, ``max_field_size``) but not the *time* its headers take.
The only clock on a connection that has not yet sent a whole request is the keep-alive timer, armed when the
connection opens and not moved by the bytes that arrive (aiohttp 3.14: ``keepalive_timeout``, 3,630 s by
default in ``RequestHandler``). So a client sending one header byte a second held its connection for as long as
it liked: 300 of them held hub and edge alike, and with a low open-file limit healthy uploads and ``/healthz``
timed out (issue 16, finding 2). Bodies are bounded by the handlers that read them: ``hub.uploads`` treats a PATCH
body idle for 25 s as cut, ``request_body`` answers a small JSON or form body that stalls ``408 body-timeout``, and
``edge_node.server`` a write body that stalls or trickles.

``GuardedRunner`` is ``web.AppRunner`` whose connections are ``_HeaderDeadlineHandler``, aiohttp's own
``RequestHandler`` plus one timer per connection, which is the smallest mechanism that sees both the bytes as they
arrive and the moment a request's headers are parsed:

* armed when the connection opens (a client that connects must send its request at once), and when the first
  byte of a later request arrives on a kept-alive connection (waiting idle between requests is the keep-alive
  timer's business, ``KEEPALIVE_TIMEOUT_SECONDS``);
* not moved by later bytes (a trickle cannot extend it);
* disarmed when aiohttp has parsed a whole request head; from then on the handler reads the body under its own
  timeouts;
* when it fires with no request parsed, the client gets ``408 header-timeout`` (JSON, ``Connection: close``) and
  the connection is closed -- aiohttp's own ``force_close``, the path its keep-alive timer takes.

The handler reads three attributes of aiohttp's ``RequestHandler`` (``_messages``, ``_request_in_progress``,
``transport``); ``tests/hub/test_server.py`` and ``tests/edge_node/test_server.py`` run it in real hub and edge
processes under 300 slow clients, so an aiohttp upgrade that renames them fails there.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from sync_protocol import ErrorCode, encode_error_body

HEADER_TIMEOUT_SECONDS = 15.0
"""Longest a request's head (request line and headers) may take to arrive, from the connection's opening or from
the request's first byte. A head is one or two TCP segments (Harbour's are under 1 KiB, aiohttp takes at most
8 KiB per line): over a 600 ms satellite round trip even three retransmissions of it take about 9 s. Apache's
mod_reqtimeout uses 20-40 s, nginx 60 s; on a ship's LAN a head takes milliseconds."""

KEEPALIVE_TIMEOUT_SECONDS = 75.0
"""How long an idle kept-alive connection is held between requests (nginx's default; aiohttp's server held one an
hour). Longer than any client's own idle timeout (aiohttp's client: 15 s), so a client never sends into a
connection the server is just closing."""

HEADER_TIMEOUT_ANSWER = (
    "the request's headers did not arrive within {seconds:.0f} s; the connection is closed"
)


def header_timeout_response(seconds: float) -> bytes:
    """The whole 408 answer written to a connection whose request head never came, as raw bytes: there is no
    request for aiohttp to answer."""
    body = encode_error_body(ErrorCode.HEADER_TIMEOUT, HEADER_TIMEOUT_ANSWER.format(seconds=seconds),
                             "send the whole request head at once; retry on a new connection")
    head = (f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class _HeaderDeadlineHandler(RequestHandler):
    """aiohttp's connection handler with a deadline on each request's head (see the module's docstring)."""

    header_timeout = HEADER_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._head_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self._between_requests():
            self._arm()  # the first byte of a request on a kept-alive connection
        super().data_received(data)
        if not self._between_requests():
            self._disarm()  # a whole head arrived (or a request is being handled)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return not self._messages and not self._request_in_progress

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_deadline = loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self._between_requests() or self.transport is None:
            return
        self.transport.write(header_timeout_response(self.header_timeout))
        self.force_close()  # closes the transport once the answer is flushed


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` serving ``app`` with a deadline on every request head and a bounded keep-alive.
    ``header_timeout`` is for tests that cannot wait the real one."""

    def __init__(self, app: web.Application, *, header_timeout: float = HEADER_TIMEOUT_SECONDS, **kwargs) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT_SECONDS)
        super().__init__(app, **kwargs)
        self._handler = type("HeaderDeadlineHandler", (_HeaderDeadlineHandler,), {"header_timeout": header_timeout})

    @property
    def server(self) -> web.Server | None:
        """The protocol factory the sites hand to the event loop: each connection a ``_HeaderDeadlineHandler``."""
        server = super().server
        return None if server is None else _GuardedServer(server, self._handler)


class _GuardedServer:
    """``server`` (aiohttp's ``web.Server``), making ``handler`` connections instead of plain ones."""

    def __init__(self, server: web.Server, handler: type[_HeaderDeadlineHandler]) -> None:
        self._server = server
        self._handler = handler

    def __call__(self) -> RequestHandler:
        return self._handler(self._server, loop=self._server._loop, **self._server._kwargs)  # noqa: SLF001
