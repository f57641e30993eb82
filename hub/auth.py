"""Bearer-token checks for requests: who is calling, and may they act for this site (G5).

Every request under ``/v1/`` carries ``Authorization: Bearer <token>``. A missing, malformed, unknown or
revoked token is ``401``; a valid token used for another site (or a site token on an operator-only
resource) is ``403``. The registry is read on every request, so revocation takes effect at once.
"""

from __future__ import annotations

from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SiteId

from .registry import Principal, Role, SiteRegistry

BEARER = "bearer"


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        return None
    return token.strip()


def authenticate(registry: SiteRegistry, header: str | None) -> Principal:
    token = bearer_token(header)
    if token is None:
        raise RemoteProtocolError(
            "missing bearer token", code=ErrorCode.UNAUTHORIZED, op="authenticating",
            hint="send 'Authorization: Bearer <token>': a ship uses the token `harbour hub add-site SITE` printed, "
                 "the fleet API and page an operator token from `harbour hub add-operator NAME`",
        )
    principal = registry.authenticate(token)
    if principal is None:
        raise RemoteProtocolError(
            "the bearer token is not valid (unknown, revoked or malformed)", code=ErrorCode.UNAUTHORIZED,
            op="authenticating", hint="ask the hub operator for a new token (`harbour hub add-site SITE --rotate` "
                                      "for a ship, `harbour hub add-operator NAME --rotate` for an operator)",
        )
    return principal


def still_valid(registry: SiteRegistry, header: str | None, principal: Principal) -> bool:
    """Whether the token of an authenticated request still names the same principal (a request can outlive a
    revocation: a long PATCH is re-checked before its commit)."""
    token = bearer_token(header)
    return token is not None and registry.authenticate(token) == principal


def authorize_site(principal: Principal, site: SiteId) -> None:
    if principal.role is not Role.SITE or principal.name != str(site):
        raise RemoteProtocolError(
            f"a token of {principal.role.value} {principal.name!r} may not act for site {site}",
            code=ErrorCode.FORBIDDEN, op="authorizing", subject=str(site),
            hint="each site uploads with its own token only",
        )


def authorize_operator(principal: Principal) -> None:
    if principal.role is not Role.OPERATOR:
        raise RemoteProtocolError(
            "fleet-wide reads need an operator token", code=ErrorCode.FORBIDDEN, op="authorizing",
            hint="create one with `harbour hub add-operator NAME --data DIR`",
        )
