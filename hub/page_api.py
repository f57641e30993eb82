"""The fleet page's routes: ``GET /``, ``POST /login``, ``POST /logout``, ``GET /ui/fleet.json`` and the
page's own stylesheet and script.

Access (issue 8, G5): an operator logs in with an operator token and gets a session cookie
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` over TLS). Without a live session ``/`` shows only the
login form and ``/ui/fleet.json`` answers ``401``. A site token is refused at the login (``403``) and
is never accepted by these routes, as a cookie or as a bearer token. The session is checked against
the registry on every request, so revoking or rotating the operator's token ends it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from sync_protocol.errors import ErrorCode, encode_error_body
from sync_protocol.log_hygiene import REPEAT_KIND

from .fleet_assets import CSS, SCRIPT
from .fleet_page import render_login, render_page, render_parts
from .fleet_view import fleet_view
from .history import Point
from .http_shell.request_body import BodyTooLarge, read_bounded
from .registry import Principal, Role, hash_token
from .sessions import SESSION_COOKIE, SESSION_SECONDS, SessionStore

log = logging.getLogger("harbour.hub.page")

CHART_SECONDS = 7 * 86_400.0
"""The charts show the last week: long enough to see a ship's whole trip between ports."""

FLEET_CACHE_SECONDS = 2.0
"""Several open browser tabs refreshing every few seconds share one fleet report this fresh."""

MAX_LOGIN_BODY_BYTES = 1024  # a form with one ~47-character token

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
                               " img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class PageContext:
    authenticate: Callable[[str], Principal | None]  # the registry's token check (blocking)
    operator_holds: Callable[[str, str], bool]  # is this still the operator's token hash? (blocking)
    fleet: Callable[[], dict]  # the fleet report (blocking)
    history: Callable[[str, float], list[Point]]  # a site's chart points since a time (blocking)
    sessions: SessionStore
    clock: Callable[[], float]
    run_in_thread: Callable[..., Awaitable]
    _cached: tuple[float, dict] | None = field(default=None, repr=False)

    async def report(self) -> dict:
        now = self.clock()
        if self._cached is None or now - self._cached[0] > FLEET_CACHE_SECONDS:
            self._cached = (now, await self.run_in_thread(self.fleet))
        return self._cached[1]

    async def operator(self, request: web.Request) -> Principal | None:
        """The operator behind the request's session cookie, or None; a dead session is forgotten."""
        session_id = request.cookies.get(SESSION_COOKIE)
        session = await self.run_in_thread(self.sessions.session, session_id)
        if session is None:
            return None
        if not await self.run_in_thread(self.operator_holds, session.operator, session.token_hash):
            await self.run_in_thread(self.sessions.close, session_id)  # revoked or rotated since the login
            return None
        return Principal(Role.OPERATOR, session.operator)


PAGE = web.AppKey("harbour_fleet_page", PageContext)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)


def _see_root() -> web.Response:
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": "/"})


async def _parts(page: PageContext) -> tuple[dict, object, dict, float]:
    report = await page.report()
    view = fleet_view(report)
    now = page.clock()

    def series() -> dict[str, list[Point]]:
        return {ship.name: page.history(ship.name, now - CHART_SECONDS) for ship in view.ships}

    return report, view, await page.run_in_thread(series), now


async def index(request: web.Request) -> web.Response:
    page = request.app[PAGE]
    if await page.operator(request) is None:
        return _html(render_login())
    _, view, history, now = await _parts(page)
    return _html(render_page(view, history, now))


def _from_another_site(request: web.Request) -> bool:
    """A form posted by a page of another origin (login CSRF: a hostile page logging the browser in as the
    attacker). Browsers say where a request comes from in ``Sec-Fetch-Site``; older ones only in ``Origin``,
    which is "null" for our own page (its ``Referrer-Policy: no-referrer`` hides it), so "null" decides nothing.
    A client that sends neither (curl, a script) is not a browser being steered, so it is let through."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() != request.host.lower()


async def login(request: web.Request) -> web.Response:
    page = request.app[PAGE]
    if _from_another_site(request):
        log.warning("refused a fleet page login posted from another origin (%s) via %s",
                    request.headers.get("Origin", "")[:100], request.remote, extra={REPEAT_KIND: "login cross-site"})
        return _html(render_login("This login form was sent from another web site; open the hub's own page "
                                  "and log in there."), 403)
    try:
        body = await read_bounded(request, MAX_LOGIN_BODY_BYTES)
    except BodyTooLarge:
        body = b""
    if not body or request.content_type != "application/x-www-form-urlencoded":
        return _html(render_login("The login form was not sent as expected; reload the page and try again."), 400)
    token = (parse_qs(body.decode("utf-8", errors="replace")).get("token") or [""])[0].strip()
    principal = await page.run_in_thread(page.authenticate, token) if token else None
    if principal is None:
        log.warning("rejected fleet page login from %s: unknown, revoked or mistyped token", request.remote,
                    extra={REPEAT_KIND: "login bad token"})
        return _html(render_login("That token is not valid (unknown, revoked or mistyped). Operator tokens start "
                                  "with hbo_; `harbour hub add-operator NAME --rotate` issues a new one."), 401)
    if principal.role is not Role.OPERATOR:
        log.warning("rejected fleet page login from %s: a site token (%s)", request.remote, principal.name,
                    extra={REPEAT_KIND: "login site token"})
        return _html(render_login("That is a ship's (site) token; the fleet page needs an operator token "
                                  "(`harbour hub add-operator NAME --data DIR`)."), 403)
    response = _see_root()
    session_id = await page.run_in_thread(page.sessions.open, principal.name, hash_token(token))
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="Strict", path="/",
                        secure=request.secure, max_age=int(SESSION_SECONDS))
    log.info("operator %s logged in to the fleet page from %s", principal.name, request.remote)
    return response


async def logout(request: web.Request) -> web.Response:
    page = request.app[PAGE]
    await page.run_in_thread(page.sessions.close, request.cookies.get(SESSION_COOKIE))
    response = _see_root()
    response.del_cookie(SESSION_COOKIE, path="/", samesite="Strict")
    return response


async def fleet_json(request: web.Request) -> web.Response:
    page = request.app[PAGE]
    if await page.operator(request) is None:
        body = encode_error_body(ErrorCode.UNAUTHORIZED, "no live fleet page session",
                                 "log in again at / with an operator token")
        return web.Response(status=401, body=body, content_type="application/json", headers=SECURITY_HEADERS)
    report, view, history, now = await _parts(page)
    return web.json_response({
        "generated_at": report["generated_at"],
        "merge_lag_seconds": report["merge_lag_seconds"],
        "totals": view.totals,
        "ships": [{"site": s.name, "state": s.state, "flags": [f.text for f in s.flags],
                   "seconds_since_contact": s.seconds_since_contact, "backlog": s.backlog,
                   "rows_merged": s.rows_merged, "rows_merged_today": s.rows_merged_today,
                   "missing_segments": s.missing_segments, "quarantined": s.quarantined} for s in view.ships],
        "html": render_parts(view, history, now),
    }, headers=SECURITY_HEADERS)


def _asset(text: str, content_type: str):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
    return handler


def add_page_routes(app: web.Application, page: PageContext) -> None:
    app[PAGE] = page
    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/ui/fleet.json", fleet_json, allow_head=False)
    app.router.add_get("/ui/fleet.css", _asset(CSS, "text/css"))
    app.router.add_get("/ui/fleet.js", _asset(SCRIPT, "text/javascript"))
