"""The ingest API (aiohttp): thin handlers that parse the request, call the node, answer.

Every error answer is ``sync_protocol``'s JSON error body; a request can only be refused, never half
stored, and no request can stop the node (G6). A body is streamed into memory up to the configured
limit (413 beyond), and the bodies of all requests in flight share one byte budget, so memory stays
bounded however many writers there are (G7).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import Counter

from aiohttp import web

from hub.http_shell.openapi import add_openapi_route
from hub.http_shell.request_body import BodyTooLarge, read_bounded
from hub.http_shell.request_errors import BODY_ERRORS, unreadable_body
from hub.http_shell.routes import route_the_rest
from sync_protocol import ErrorCode, RemoteProtocolError, TableName, encode_error_body
from sync_protocol.units import format_size

from . import codecs
from . import metrics as edge_metrics
from .body_budget import BodyShare, BudgetDeadlock, ByteBudget
from .config import MAX_INFLIGHT_BODY_BYTES
from .node import EdgeNode
from .release import RELEASE_PATH, TOKEN_HEADER, NotParked, parse_request_body, release_parked
from .status import backlog_by_class, build_status

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 256 * 1024

BODY_IDLE_TIMEOUT_SECONDS = 15.0
"""A write whose body sends nothing for this long is answered 408 and its share of the in-flight budget freed.
Applications on board write over the ship's LAN, where a body never pauses this long; without it, four
connections announcing 64 MiB and sending nothing held the whole budget, and every other write waited forever."""

BODY_GRACE_SECONDS = 30.0
MIN_BODY_BYTES_PER_SECOND = 256 * 1024
"""A body must arrive within ``BODY_GRACE_SECONDS`` plus its announced size at this rate (a 64 MiB body: 4.8 min):
a trickle of a byte every few seconds (which the idle timeout alone lets through) cannot hold the budget."""
INLINE_DECODE_BYTES = 64 * 1024
"""Bodies up to this size decode on the event loop: a thread hand-off costs more than decoding them,
and small writes are the ones whose rate group commit must keep up."""
MAX_RELEASE_BODY_BYTES = 1024 * 1024
"""A release names at most a few thousand segments (``SITE/TABLE/SEQ``, under 150 bytes each)."""

NODE_KEY = web.AppKey("node", EdgeNode)
BUDGET_KEY = web.AppKey("budget", object)
RELEASE_TOKEN_KEY = web.AppKey("release_token", str)
BODY_IDLE_TIMEOUT_KEY = web.AppKey("body_idle_timeout", float)
REFUSED_KEY = web.AppKey("refused", Counter)  # writes refused since start, by error code (for /metrics)
METRICS_KEY = web.AppKey("metrics", object)


def _json_error(status: int, code: ErrorCode, message: str, hint: str = "") -> web.Response:
    return web.Response(status=status, body=encode_error_body(code, message, hint), content_type="application/json")


def _too_large(limit: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"the body is larger than {format_size(limit)}", code=ErrorCode.TOO_LARGE, op="reading body",
        subject="request body", hint="split the rows into several writes",
    )


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        try:
            return await handler(request)
        except BODY_ERRORS as error:
            raise unreadable_body(error) from None
    except RemoteProtocolError as error:
        request.app[REFUSED_KEY][error.code.slug] += 1
        return web.Response(status=error.status, body=error.to_body(), content_type="application/json",
                            headers=error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = f"{request.method} {request.path[:100]}: {error.reason}"
        hint = ("see the edge API: POST /v1/tables/{table}, GET /v1/status, GET /v1/datasets[/{name}], "
                "GET /healthz")
        return _json_error(error.status, ErrorCode.of_routing(error.status), message, hint)
    except Exception:
        log.exception("internal error handling %s %s", request.method, request.path[:100])
        return _json_error(500, ErrorCode.INTERNAL, "internal error in the edge node; the write was not stored",
                           "retry; if it persists, send the node's log to support")


def _budget_deadlock(received: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"the node is holding other writes' bodies and had no room for this one after {format_size(received)}; "
        "nothing was stored", code=ErrorCode.UNAVAILABLE, op="reading body", subject="request body",
        hint="retry the write in a moment", headers={"Retry-After": "1", "Connection": "close"})


def _too_slow(received: int, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"the body {why} after {format_size(received)}; nothing was stored", code=ErrorCode.BODY_TIMEOUT,
        op="reading body", subject="request body", hint="send the whole body without pausing; retry the write",
        headers={"Connection": "close"},
    )


async def _read_body(request: web.Request, limit: int, idle_timeout: float, share: BodyShare) -> bytes:
    """The whole body, at most ``limit`` bytes, each taken from ``share`` as it arrives; a 408 when it stalls for
    ``idle_timeout`` or comes slower than ``MIN_BODY_BYTES_PER_SECOND`` after a grace period."""
    loop = asyncio.get_running_loop()
    announced = request.content_length if request.content_length is not None else limit
    deadline = loop.time() + BODY_GRACE_SECONDS + announced / MIN_BODY_BYTES_PER_SECOND
    body = bytearray()
    while True:
        left = deadline - loop.time()
        try:
            async with asyncio.timeout(min(idle_timeout, left)):
                chunk = await request.content.read(READ_CHUNK_BYTES)
        except TimeoutError:
            raise _too_slow(len(body), "stopped arriving" if left > idle_timeout else "came too slowly") from None
        if not chunk:
            return bytes(body)
        try:
            await share.take(len(chunk))
        except BudgetDeadlock:
            raise _budget_deadlock(len(body)) from None
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)


async def ingest(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    table = TableName(request.match_info["table"])
    content_type = request.content_type
    if content_type not in codecs.CONTENT_TYPES:
        raise codecs.unsupported_type(request.headers.get("Content-Type", ""))
    limit = node.config.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    async with request.app[BUDGET_KEY].share() as share:
        body = await _read_body(request, limit, request.app[BODY_IDLE_TIMEOUT_KEY], share)
        if len(body) <= INLINE_DECODE_BYTES:
            data = codecs.decode_body(content_type, body)
        else:
            data = await asyncio.get_running_loop().run_in_executor(None, codecs.decode_body, content_type, body)
        del body
        rows = await node.write(table, data)
    return web.json_response({"table": str(table), "rows": rows})


DATASET_VERSION_HEADER = "Harbour-Dataset-Version"
DATASET_SHA256_HEADER = "Harbour-Dataset-Sha256"


async def list_datasets(request: web.Request) -> web.Response:
    """The reference datasets on board: each one's current version (what ``GET /v1/datasets/{name}`` answers)."""
    held = await asyncio.to_thread(request.app[NODE_KEY].datasets.all_held)
    return web.json_response({"datasets": [dataset.to_dict() for dataset in held]})


async def get_dataset(request: web.Request) -> web.StreamResponse:
    """The current version of one dataset: the Arrow IPC stream as published (default), or JSON Lines with
    ``Accept: application/x-ndjson``. The file is opened once, so a switch while it is sent changes nothing
    of this answer: ``Harbour-Dataset-Version`` names the version every byte of the body belongs to."""
    node = request.app[NODE_KEY]
    name = str(TableName(request.match_info["name"]))
    opened = await asyncio.to_thread(node.datasets.open_current, name)
    if opened is None:
        known = ", ".join(node.datasets.names()) or "none yet"
        raise RemoteProtocolError(
            f"no reference dataset {name!r} on this ship (held: {known})", code=ErrorCode.NO_SUCH_PATH,
            op="reading a reference dataset", subject=name,
            hint="GET /v1/datasets lists them; a dataset arrives once the hub publishes it for this ship and a link "
                 "allows (see /v1/status, sync.downloads)")
    held, handle = opened
    ndjson = codecs.JSON_LINES in request.headers.get("Accept", "")
    response = web.StreamResponse(headers={
        DATASET_VERSION_HEADER: str(held.version), DATASET_SHA256_HEADER: held.sha256,
        "Content-Type": codecs.JSON_LINES if ndjson else codecs.ARROW_STREAM})
    if not ndjson:
        response.content_length = held.size
    with handle:
        await response.prepare(request)
        pieces = codecs.json_lines_of_arrow_stream(handle) if ndjson else iter(
            lambda: handle.read(READ_CHUNK_BYTES), b"")
        while piece := await asyncio.to_thread(next, pieces, b""):
            await response.write(piece)
    await response.write_eof()
    return response


async def status(request: web.Request) -> web.Response:
    return web.json_response(status_report(request.app[NODE_KEY]))


async def metrics(request: web.Request) -> web.Response:
    text = request.app[METRICS_KEY]()
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def status_report(node: EdgeNode) -> dict:
    """What /v1/status answers, and what /metrics is built from."""
    logs = {table: node.wal.pending_summary(table) for table in node.wal.tables()}
    usage = node.usage()
    report = build_status(str(node.config.site), node.ledger, logs, usage, node.config.max_disk_bytes,
                          node.clock(), node.sync_state,
                          {"writes": node.stats.appends, "rows": node.stats.rows, "fsync_groups": node.stats.groups})
    for table in report["tables"]:  # a table with nothing sealed yet has no priority in the ledger: say the set one
        if table["priority"] is None:
            table["priority"] = node.config.priority_of(table["table"])
    if node.sync is not None:
        report["sync"] = node.sync.describe(usage.pending_segment_bytes + usage.log_bytes)
        report["sync"]["backlog_by_class"] = backlog_by_class(report["tables"])
    report["datasets"] = [held.to_dict() for held in node.datasets.all_held()]
    report["disk"]["dataset_bytes"] = usage.dataset_bytes
    if node.managed is not None:
        report["managed_settings"] = node.managed.outcome.to_dict()
    return report


async def release(request: web.Request) -> web.Response:
    """``harbour edge release`` while the node runs: the node changes its own ledger (see release.py)."""
    node = request.app[NODE_KEY]
    expected = request.app.get(RELEASE_TOKEN_KEY, "")
    given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")  # a header may hold any byte
    if not expected or not secrets.compare_digest(given, expected.encode()):
        raise RemoteProtocolError(
            "releasing parked segments needs the token of the data directory's lock", code=ErrorCode.UNAUTHORIZED,
            op="releasing parked segments", subject=RELEASE_PATH,
            hint="run `harbour edge release --data DIR` on the ship, as a user who can read DIR")
    try:
        body = await read_bounded(request, MAX_RELEASE_BODY_BYTES)
    except BodyTooLarge:
        raise RemoteProtocolError(
            f"a release request is larger than the node takes ({format_size(MAX_RELEASE_BODY_BYTES)})",
            code=ErrorCode.TOO_LARGE, op="releasing parked segments", subject=RELEASE_PATH,
            hint="release fewer segments at a time, or all of them with --all") from None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep, which is no request of ours
        doc = None
    requested = parse_request_body(doc)
    try:
        released = await asyncio.get_running_loop().run_in_executor(None, release_parked, node.ledger, requested)
    except NotParked as error:
        raise RemoteProtocolError(str(error), op="releasing parked segments", subject=", ".join(error.segments),
                                  hint="see `harbour edge status` for the parked ones") from None
    if node.sync is not None:
        node.sync.notify()
    log.info("released %d parked segments on request: %s", len(released), ", ".join(str(s) for s, _ in released))
    return web.json_response({"released": [{"segment": str(s), "reason": reason} for s, reason in released]})


async def healthz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if node.quota.would_exceed(node.usage(), 0):
        # The code's own status (507, as for a refused write); a 503 said "try again soon", not "disk full".
        return _json_error(ErrorCode.DISK_FULL.status, ErrorCode.DISK_FULL, "disk quota reached: writes are refused",
                           "see GET /v1/status for what is waiting to be synced")
    return web.json_response({"ok": True, "site": str(node.config.site)})


def make_app(node: EdgeNode, release_token: str = "",
             body_idle_timeout: float = BODY_IDLE_TIMEOUT_SECONDS) -> web.Application:
    """``release_token``: the token in the data directory's lock file; empty turns POST /v1/parked/release off."""
    # client_max_size only bounds request.read(); ingest streams and enforces the limit itself.
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=node.config.max_body_bytes)
    app[NODE_KEY] = node
    app[RELEASE_TOKEN_KEY] = release_token
    app[BODY_IDLE_TIMEOUT_KEY] = body_idle_timeout
    app[REFUSED_KEY] = Counter()
    app[METRICS_KEY] = edge_metrics.make_render(lambda: status_report(node), app[REFUSED_KEY])
    app[BUDGET_KEY] = ByteBudget(max(MAX_INFLIGHT_BODY_BYTES, node.config.max_body_bytes))
    app.router.add_post("/v1/tables/{table}", ingest)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/datasets", list_datasets)
    app.router.add_get("/v1/datasets/{name}", get_dataset)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post(RELEASE_PATH, release)
    add_openapi_route(app, "edge_node")
    route_the_rest(app)

    async def on_startup(_: web.Application) -> None:
        await node.start()

    async def on_cleanup(_: web.Application) -> None:
        await node.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
