"""What both servers' apps do with a request before and after their own routes: ``Expect`` and unmatched paths.

One copy for the hub and the edge (there were two, and both answered every ``Expect: 100-continue`` -- which curl
sends with any body over 1 MiB -- with a 500: they compared the version with ``web.HttpVersion11``, which
``aiohttp.web`` does not have; the fuzz tests found it)."""

from __future__ import annotations

from aiohttp import HttpVersion11, web

from sync_protocol.tus import expect_refusal


async def answer_expect_header(request: web.Request) -> web.StreamResponse | None:
    """Every route's ``Expect`` handling: 100 Continue, or the 417 ``sync_protocol.tus.expect_refusal`` gives."""
    refusal = expect_refusal(request.headers.get("Expect", ""))
    if refusal is not None:
        return web.Response(status=417, body=refusal, content_type="application/json")
    if request.version == HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the 100 is not part of the answer's size
    return None


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The last route, for every path and method no other route takes: a 405 naming the allowed methods or a 404.
    aiohttp answers those itself with routes it makes per request and its own Expect handling (a non-ASCII Expect
    header made that a 500); through this route they get ``answer_expect_header`` and the app's JSON error body."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def route_the_rest(app: web.Application) -> None:
    """Give every route ``answer_expect_header``; called once every other route is registered."""
    app.router.add_route("*", "/{path:.*}", unmatched)
    for route in app.router.routes():
        route._expect_handler = answer_expect_header  # noqa: SLF001 -- aiohttp's add_* take it, not every caller
