"""Bearer parsing and the 401/403 split."""

from __future__ import annotations

import pytest

from hub import auth
from hub.registry import Principal, Role, SiteRegistry
from sync_protocol.errors import RemoteProtocolError
from sync_protocol.identifiers import SiteId


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc"),
    (None, None), ("", None), ("Bearer", None), ("Bearer   ", None), ("Basic abc", None), ("abc", None),
])
def test_bearer_token(header, token):
    assert auth.bearer_token(header) == token


@pytest.mark.guarantee("G5")
def test_status_codes(database, clock):
    registry = SiteRegistry(database, clock)
    token = registry.add_site(SiteId("ship-a"))
    with pytest.raises(RemoteProtocolError) as missing:
        auth.authenticate(registry, None)
    assert missing.value.status == 401
    with pytest.raises(RemoteProtocolError) as wrong:
        auth.authenticate(registry, "Bearer hbs_nope")
    assert wrong.value.status == 401 and "add-site" in wrong.value.hint
    principal = auth.authenticate(registry, f"Bearer {token}")
    auth.authorize_site(principal, SiteId("ship-a"))
    with pytest.raises(RemoteProtocolError) as foreign:
        auth.authorize_site(principal, SiteId("ship-b"))
    assert foreign.value.status == 403
    with pytest.raises(RemoteProtocolError) as not_operator:
        auth.authorize_operator(principal)
    assert not_operator.value.status == 403
    operator = Principal(Role.OPERATOR, "ops")
    auth.authorize_operator(operator)
    with pytest.raises(RemoteProtocolError):
        auth.authorize_site(operator, SiteId("ops"))
