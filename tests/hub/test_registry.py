"""Site and operator tokens: random, shown once, stored hashed, revocable, rotatable (G5)."""

from __future__ import annotations

import re

import pytest

from hub.registry import RegistryError, Role, SiteRegistry, hash_token
from sync_protocol.identifiers import SiteId


@pytest.fixture
def registry(database, clock):
    return SiteRegistry(database, clock)


@pytest.mark.guarantee("G5")
def test_tokens_are_256_bit_random_and_stored_only_as_hashes(layout, sqlite_database, clock):
    registry, database = SiteRegistry(sqlite_database, clock), sqlite_database
    tokens = [registry.add_site(SiteId(f"ship-{i}")) for i in range(5)]
    assert len(set(tokens)) == 5
    for token in tokens:
        assert re.fullmatch(r"hbs_[A-Za-z0-9_-]{43}", token)  # 32 bytes of urlsafe base64
    database.close()
    raw = layout.database.read_bytes() + b"".join(p.read_bytes() for p in layout.root.glob("hub.db-*"))
    for token in tokens:
        assert token.encode() not in raw
        assert token[4:].encode() not in raw
    assert hash_token(tokens[0]).encode() in raw


@pytest.mark.guarantee("G5")
def test_authenticate_finds_the_site_and_nothing_else(registry):
    token = registry.add_site(SiteId("ship-a"))
    principal = registry.authenticate(token)
    assert principal is not None and principal.role is Role.SITE and principal.site == SiteId("ship-a")
    for bad in ("", token[:-1], token + "A", "hbs_", "hbo_" + token[4:], "x" * 5000, token.upper(), "\x00" + token):
        assert registry.authenticate(bad) is None, bad


@pytest.mark.guarantee("G5")
def test_revocation_and_rotation(registry):
    site = SiteId("ship-a")
    old = registry.add_site(site)
    with pytest.raises(RegistryError, match="--rotate"):
        registry.add_site(site)
    registry.revoke_site(site)
    assert registry.authenticate(old) is None
    new = registry.add_site(site, rotate=True)
    assert registry.authenticate(new).name == "ship-a"
    assert registry.authenticate(old) is None
    newer = registry.add_site(site, rotate=True)
    assert registry.authenticate(new) is None and registry.authenticate(newer) is not None
    with pytest.raises(RegistryError, match="not registered"):
        registry.revoke_site(SiteId("ghost"))


@pytest.mark.guarantee("G5")
def test_operators(registry):
    token = registry.add_operator("alice")
    assert token.startswith("hbo_")
    assert registry.authenticate(token).role is Role.OPERATOR
    assert registry.authenticate(token).site is None
    with pytest.raises(RegistryError):
        registry.add_operator("alice")
    with pytest.raises(RegistryError, match="not valid"):
        registry.add_operator("Bad Name/../")
    other = registry.add_operator("bob")
    assert registry.operator_of_token(token) == "alice"
    assert registry.revoke_operator("alice") is True
    assert registry.authenticate(token) is None and registry.authenticate(other).name == "bob"
    assert registry.revoke_operator("alice") is False  # already revoked: nothing left to stop
    with pytest.raises(RegistryError, match="not registered"):
        registry.revoke_operator("ghost")
    for not_live in (token, registry.add_site(SiteId("ship-a")), "hbo_guess"):
        with pytest.raises(RegistryError, match="not a live operator token") as refused:
            registry.operator_of_token(not_live)
        assert not_live not in str(refused.value)


def test_last_contact_uses_the_clock(registry, clock):
    site = SiteId("ship-a")
    registry.add_site(site)
    assert registry.sites()[0]["last_contact"] is None
    clock.advance(42)
    registry.touch(site)
    assert registry.sites()[0]["last_contact"] == clock.now
