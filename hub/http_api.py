"""The hub's HTTP surface (aiohttp): tus ingest under ``/v1/sync/uploads``, the edges' reports and the downlink
(desired state in the report answer, dataset downloads), fleet API, metrics, health.

Handlers are thin: parse the request with ``sync_protocol.tus``/``manifest``, authenticate and authorise,
ask the upload service (which asks the receiver state machine), and send what comes back. Every error is
a ``RemoteProtocolError`` turned into its status and JSON body by one middleware, which also logs each
rejected request with the site and the reason (G5, G6).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import PayloadAccessError

from hub.http_shell.openapi import add_openapi_route
from hub.http_shell.request_errors import BODY_ERRORS, unreadable_body
from hub.http_shell.routes import route_the_rest
from sync_protocol.downlink import DATASET_VERSION_PATH
from sync_protocol.errors import ErrorCode, RemoteProtocolError, encode_error_body
from sync_protocol.identifiers import SegmentId, SiteId, TableName
from sync_protocol.limits import TUS_VERSION
from sync_protocol.log_hygiene import REPEAT_KIND
from sync_protocol.manifest import Manifest
from sync_protocol.receiver import Respond
from sync_protocol.tus import (
    HARBOUR_TAIL_SHA256,
    PATCH_CONTENT_TYPE,
    TUS_RESUMABLE,
    UPLOAD_CHECKSUM,
    UPLOAD_LENGTH,
    UPLOAD_METADATA,
    UPLOAD_OFFSET,
    UPLOADS_PATH,
    check_tus_resumable,
    options_headers,
    parse_checksum,
    parse_content_length,
    parse_length,
    parse_offset,
    parse_tail_claim,
    single_header,
)

from . import auth
from .dataset_download import send_version
from .datasets import MAX_VERSION, not_offered
from .db import is_ledger_busy
from .downlink import Downlink
from .http_shell.request_body import BodyTooLarge, read_bounded
from .page_api import PageContext, add_page_routes
from .registry import Principal, SiteRegistry
from .site_reports import MAX_REPORT_BYTES, SiteReportStore, parse_report
from .uploads import UploadService

log = logging.getLogger("harbour.hub.http")

SITE_REPORT_PATH = "/v1/sync/sites/{site}/report"
"""Where an edge puts its backlog report (``edge_node/sync/transport.py`` sends to the same path)."""

CONTACT_RECORD_INTERVAL_SECONDS = 10.0
"""Last contact is written at most this often per site: a ship sending a chunk a second must not turn
into a fsync'd SQLite write a second, and "last contact" is read in minutes, not seconds."""

RunInThread = Callable[..., Awaitable]


@dataclass
class HubContext:
    """What the handlers need, assembled by ``hub.server``."""

    registry: SiteRegistry
    uploads: UploadService
    run_in_thread: RunInThread
    clock: Callable[[], float]
    fleet: Callable[[], dict]
    metrics_text: Callable[[], str]
    observe: Callable[[str, str, int], None]
    rejected: Callable[[str], None]
    healthy: Callable[[], bool]
    reports: SiteReportStore
    downlink: Downlink | None = None  # None: a hub assembled without the downlink (some tests)
    last_contact_written: dict[str, float] = field(default_factory=dict)
    last_refusal_written: dict[str, float] = field(default_factory=dict)  # site claimed by a refused token
    held_noted: dict[str, dict[str, int]] = field(default_factory=dict)  # site -> versions last recorded as held


CONTEXT = web.AppKey("harbour_hub_context", HubContext)


def _answer(respond: Respond | None) -> web.Response:
    if respond is None:
        # The body stopped arriving (cut, or idle past the hub's timeout). Usually nobody is left to read
        # this; a client that still is gets a coded, retryable answer and resumes from HEAD.
        return _error_response(RemoteProtocolError(
            "the chunk's body stopped arriving; the bytes that arrived are kept", code=ErrorCode.UNAVAILABLE,
            op="patching", hint="HEAD the upload and continue from its offset"))
    return web.Response(status=respond.status, headers=respond.headers)


def _error_response(error: RemoteProtocolError) -> web.Response:
    headers = {TUS_RESUMABLE: TUS_VERSION, **error.headers}
    return web.Response(status=error.status, body=error.to_body(), headers=headers, content_type="application/json")


def _unexpected(request: web.Request, error: Exception) -> RemoteProtocolError:
    """What to answer for an exception no handler expected: ``503`` while the ledger is busy or out of reach
    (one warning a minute, not a traceback per request), else ``500`` with the traceback in the log."""
    if is_ledger_busy(error):
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        log.warning("answered 503 to %s %s: the ledger is busy or out of reach (%s)", request.method,
                    request.path[:200], reason, extra={REPEAT_KIND: "ledger busy"})
        return RemoteProtocolError("the hub's ledger is busy or out of reach for a moment; the request may be retried",
                                   code=ErrorCode.UNAVAILABLE, headers={"Retry-After": "2"},
                                   hint="retry; if it lasts, check the ledger (PostgreSQL) and the hub's log")
    log.exception("internal error on %s %s", request.method, request.path[:200])
    return RemoteProtocolError("internal error in the hub; the request may be retried", code=ErrorCode.INTERNAL,
                               hint="the hub's log has the details")


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    context = request.app[CONTEXT]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    started = time.monotonic()
    try:
        try:
            response = await handler(request)
        except BODY_ERRORS as error:
            raise unreadable_body(error) from None
    except RemoteProtocolError as error:
        context.rejected(error.code.slug)
        principal: Principal | None = request.get("principal")
        log.warning(
            "rejected %s %s site=%s caller=%s status=%d code=%s reason=%s", request.method, request.path[:200],
            request.get("site", "-"), principal.name if principal else "-", error.status, error.code.slug, error,
            extra={REPEAT_KIND: f"rejected {error.code.slug} {request.get('site', '-')}"},
        )
        response = _error_response(error)
    except web.HTTPException as error:  # routing: unknown path or method
        context.rejected(f"http-{error.status}")
        log.warning("rejected %s %s status=%d reason=%s", request.method, request.path[:200], error.status,
                    error.reason, extra={REPEAT_KIND: f"rejected {error.status}"})
        body = encode_error_body(ErrorCode.of_routing(error.status),
                                 f"{error.reason}: {request.method} {request.path[:200]}",
                                 "see docs/hub.md for the hub's HTTP API")
        response = web.Response(status=error.status, body=body, content_type="application/json",
                                headers={k: v for k, v in error.headers.items() if k.lower() == "allow"})
    except Exception as unexpected:
        error = _unexpected(request, unexpected)
        if error.code is ErrorCode.UNAVAILABLE:
            context.rejected(error.code.slug)  # the metric an operator alerts on (docs/operations.md)
        response = _error_response(error)
    context.observe(request.method, route, response.status)
    if not response.prepared:
        response.headers["Server-Timing"] = f"hub;dur={_hub_milliseconds(request, started):.1f}"
    return response


def _hub_milliseconds(request: web.Request, started: float) -> float:
    """The request's time in the hub itself: all of it without a body; with a PATCH body, the time before
    its first byte was read and after its last (waiting for a lock, fsync, commit), not the bytes' travel."""
    now = time.monotonic()
    body: TimedBody | None = request.get("body")
    if body is None or body.first_read_at is None or body.last_read_at is None:
        return (now - started) * 1000
    return ((body.first_read_at - started) + (now - body.last_read_at)) * 1000


# -- helpers ---------------------------------------------------------------------------------------------


def _header(request: web.Request, name: str) -> str | None:
    return single_header(name, request.headers.getall(name, []))


async def _principal(request: web.Request) -> Principal:
    context = request.app[CONTEXT]
    try:
        authorization = single_header("Authorization", request.headers.getall("Authorization", []))
        principal = await context.run_in_thread(auth.authenticate, context.registry, authorization)
    except RemoteProtocolError as error:
        if error.code is ErrorCode.UNAUTHORIZED:
            await _note_refused(request, context)
        raise
    request["principal"] = principal
    return principal


async def _note_refused(request: web.Request, context: HubContext) -> None:
    """A request for a registered site came with a token the hub refused: record when, so the fleet page says
    "token refused" instead of "silent" (the site is only what the request claims: nothing else is trusted)."""
    claimed = request.get("site")
    now = context.clock()
    if not claimed or now - context.last_refusal_written.get(claimed, float("-inf")) < CONTACT_RECORD_INTERVAL_SECONDS:
        return
    context.last_refusal_written[claimed] = now
    await context.run_in_thread(context.registry.note_refused_token, claimed)


async def _as_site(request: web.Request, site: SiteId, principal: Principal) -> None:
    request["site"] = str(site)
    auth.authorize_site(principal, site)
    context = request.app[CONTEXT]
    now = context.clock()
    if now - context.last_contact_written.get(principal.name, 0.0) >= CONTACT_RECORD_INTERVAL_SECONDS:
        context.last_contact_written[principal.name] = now
        await context.run_in_thread(context.registry.touch, site)


async def _upload_request(request: web.Request) -> SegmentId:
    """The segment an upload URL names, once the caller may act for its site (401/403 first, then 412)."""
    key = request.match_info["key"]
    request["site"] = key.split(".", 1)[0][:63]
    principal = await _principal(request)  # an anonymous caller learns nothing, not even that a key is bad
    segment = SegmentId.from_upload_key(key)
    await _as_site(request, segment.site, principal)
    check_tus_resumable(_header(request, TUS_RESUMABLE))
    return segment


# -- tus -------------------------------------------------------------------------------------------------


async def options(request: web.Request) -> web.Response:
    # Capability discovery reveals nothing about any site, and CORS preflights cannot carry a token.
    return web.Response(status=204, headers=options_headers())


async def create(request: web.Request) -> web.Response:
    with contextlib.suppress(RemoteProtocolError):  # only to say which site a refused token claimed to be
        request["site"] = str(Manifest.from_upload_metadata(request.headers.get(UPLOAD_METADATA, "")).segment.site)
    principal = await _principal(request)
    check_tus_resumable(_header(request, TUS_RESUMABLE))
    length = parse_length(_header(request, UPLOAD_LENGTH))
    metadata = _header(request, UPLOAD_METADATA)
    if metadata is None:
        raise RemoteProtocolError(
            "Upload-Metadata with the Harbour segment manifest is required", code=ErrorCode.BAD_MANIFEST,
            op="creating upload", hint="see docs/protocol.md for the manifest fields",
        )
    manifest = Manifest.from_upload_metadata(metadata)
    await _as_site(request, manifest.segment.site, principal)
    return _answer(await request.app[CONTEXT].uploads.create(manifest, length))


async def head(request: web.Request) -> web.Response:
    segment = await _upload_request(request)
    return _answer(await request.app[CONTEXT].uploads.probe(segment))


async def patch(request: web.Request) -> web.Response:
    segment = await _upload_request(request)
    if request.headers.get("Content-Type", "").split(";")[0].strip().lower() != PATCH_CONTENT_TYPE:
        raise RemoteProtocolError(
            f"PATCH needs Content-Type {PATCH_CONTENT_TYPE}", code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            op="patching", subject=str(segment),
        )
    offset = parse_offset(_header(request, UPLOAD_OFFSET))
    length = parse_content_length(request.headers.get("Content-Length"))
    checksum = parse_checksum(_header(request, UPLOAD_CHECKSUM))
    tail = parse_tail_claim(_header(request, HARBOUR_TAIL_SHA256))
    body = TimedBody(PatchBody(request.content))
    request["body"] = body
    context, principal = request.app[CONTEXT], request["principal"]
    authorization = request.headers.get("Authorization")

    def still_authorized() -> bool:  # the same token still names the same site (not revoked, not rotated)
        return auth.still_valid(context.registry, authorization, principal)

    answer = await context.uploads.patch(segment, offset, length, checksum, body, tail, still_authorized)
    return _answer(answer)


class TimedBody:
    """A PATCH body that remembers when its first and last bytes were read, so that the hub can tell the
    edge how much of the request was its own time (``Server-Timing``) and not the link's."""

    def __init__(self, stream: web.StreamReader | Any) -> None:
        self._stream = stream
        self.first_read_at: float | None = None
        self.last_read_at: float | None = None

    async def read(self, n: int = -1) -> bytes:
        now = time.monotonic()
        if self.first_read_at is None:
            self.first_read_at = now
        data = await self._stream.read(n)
        self.last_read_at = time.monotonic()
        return data


BODY_CUT_ERRORS = (ConnectionError, EOFError, ClientError, HttpProcessingError, PayloadAccessError)
"""What aiohttp raises from a request body whose connection dropped: ``ConnectionResetError`` when the peer
went away, ``ContentLengthError`` (an ``HttpProcessingError``) when the body ended short of its
Content-Length, ``PayloadAccessError`` once the handler's response was sent. Only ``PatchBody`` knows them."""


class PatchBody:
    """A PATCH body as the upload service reads it (``hub.uploads.BodyReader``): aiohttp's errors for a
    connection lost mid-body are translated here, at the HTTP boundary, into the end of the body (b"").

    When the connection drops, aiohttp marks the body's reader failed and its next ``read`` raises at once,
    dropping what it had already received and buffered (up to twice the read size: half a MiB of a cut
    chunk). tus keeps the bytes that reached the server, so the read that meets the cut first hands over what
    is left in the buffer, and the read after it returns b"": the body ends where the cut was."""

    def __init__(self, stream: web.StreamReader) -> None:
        self._stream = stream

    async def read(self, n: int = -1) -> bytes:
        try:
            return await self._stream.read(n)
        except BODY_CUT_ERRORS as error:
            left = self._buffered(n)
            if not left:
                log.info("PATCH body cut: %r", error)
            return left

    def _buffered(self, n: int) -> bytes:
        stream, failure = self._stream, self._stream.exception()
        if failure is None:
            return b""
        # aiohttp has no public read past a failure: lift it for one read of what is buffered, then restore it.
        stream._exception = None
        try:
            return stream.read_nowait(n)
        except RuntimeError:  # another reader waits: the buffer is lost, not the request
            return b""
        finally:
            stream._exception = failure


async def delete(request: web.Request) -> web.Response:
    segment = await _upload_request(request)
    return _answer(await request.app[CONTEXT].uploads.terminate(segment))


# -- the edges' backlog reports ---------------------------------------------------------------------------


async def site_report(request: web.Request) -> web.Response:
    """``PUT /v1/sync/sites/{site}/report``: the edge's backlog and link state; counts as contact."""
    request["site"] = request.match_info["site"][:63]
    principal = await _principal(request)
    site = SiteId(request.match_info["site"])
    await _as_site(request, site, principal)
    if request.content_type != "application/json":
        raise RemoteProtocolError(
            f"a backlog report is JSON, not {request.content_type[:60]!r}", code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            op="reading the backlog report", subject=str(site), hint="send Content-Type: application/json",
        )
    try:
        body = await read_bounded(request, MAX_REPORT_BYTES)
    except BodyTooLarge:
        raise RemoteProtocolError(
            f"the backlog report is larger than the hub takes ({MAX_REPORT_BYTES} bytes)", code=ErrorCode.TOO_LARGE,
            op="reading the backlog report", subject=str(site), hint="a report is a few hundred bytes of counts",
        ) from None
    report = parse_report(body, site)
    context = request.app[CONTEXT]
    await context.run_in_thread(context.reports.save, site, report)
    held = report.downlink.datasets if report.downlink is not None else None
    if context.downlink is not None and held and context.held_noted.get(str(site)) != held:
        await context.run_in_thread(context.downlink.datasets.note_held, str(site), held)  # only when it changed
        context.held_noted[str(site)] = held
    desired = None if context.downlink is None else await context.run_in_thread(
        context.downlink.desired_state, str(site))
    if desired is None:  # nothing offered, nothing managed: "no change" to an edge (and all an older edge expects)
        return web.Response(status=204)
    return web.Response(status=200, body=desired.to_json(), content_type="application/json")


# -- the downlink: a ship downloads a dataset version --------------------------------------------------------


async def dataset_version(request: web.Request) -> web.StreamResponse:
    """``GET``/``HEAD`` ``DATASET_VERSION_PATH`` with the ship's token: a version offered to it (``hub.datasets``),
    resumable with ``Range`` (``hub.dataset_download``)."""
    principal = await _principal(request)
    if principal.site is None:
        raise RemoteProtocolError(
            "dataset versions are downloaded with a site token", code=ErrorCode.FORBIDDEN, op="authorizing",
            hint="a ship downloads what its report answer offers; operators list versions with `harbour hub datasets`")
    await _as_site(request, principal.site, principal)
    context = request.app[CONTEXT]
    name, text = request.match_info["name"][:80], request.match_info["version"][:40]
    TableName(name)  # a name that cannot be a dataset is a 400 that says so (and never reaches a path)
    number = int(text) if text.isascii() and text.isdigit() and len(text) <= 16 else 0
    if context.downlink is None or not 1 <= number <= MAX_VERSION:
        raise not_offered(name, text)
    datasets = context.downlink.datasets
    version = await context.run_in_thread(datasets.servable, principal.name, name, number)
    try:
        return await send_version(request, version, datasets.file_of(name, version.version), context.run_in_thread)
    except FileNotFoundError:  # pruned between the lookup and the open: answer as for a pruned version
        await context.run_in_thread(datasets.servable, principal.name, name, version.version)
        raise


# -- fleet, metrics, health ------------------------------------------------------------------------------


async def fleet(request: web.Request) -> web.Response:
    auth.authorize_operator(await _principal(request))
    context = request.app[CONTEXT]
    report = await context.run_in_thread(context.fleet)
    return web.json_response(report, dumps=lambda doc: json.dumps(doc, indent=1))


async def metrics(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    text = await context.run_in_thread(context.metrics_text)
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def healthz(request: web.Request) -> web.Response:
    healthy = request.app[CONTEXT].healthy()
    return web.json_response({"ok": healthy}, status=200 if healthy else 503)


def build_app(context: HubContext, page: PageContext) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=64 * 1024)
    app[CONTEXT] = context
    add_page_routes(app, page)
    app.router.add_route("OPTIONS", UPLOADS_PATH, options)
    app.router.add_route("OPTIONS", UPLOADS_PATH + "/{key}", options)
    app.router.add_post(UPLOADS_PATH, create)
    app.router.add_route("HEAD", UPLOADS_PATH + "/{key}", head)
    app.router.add_patch(UPLOADS_PATH + "/{key}", patch)
    app.router.add_delete(UPLOADS_PATH + "/{key}", delete)
    app.router.add_put(SITE_REPORT_PATH, site_report)
    app.router.add_get(DATASET_VERSION_PATH, dataset_version)  # and HEAD
    app.router.add_get("/v1/fleet", fleet, allow_head=False)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    add_openapi_route(app, "hub")
    route_the_rest(app)
    return app
