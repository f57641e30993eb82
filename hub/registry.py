"""Who may talk to the hub: site tokens and operator tokens (G5).

* A token is 256 bits from ``secrets`` (``secrets.token_urlsafe(32)``) behind a short prefix that says
  what it is (``hbs_`` site, ``hbo_`` operator), so a leaked one is recognisable in logs and by
  secret scanners. It is shown once, when issued, and never stored: the database keeps its sha256.
* A slow password hash is not needed: the token has 256 bits of entropy, so its sha256 cannot be
  reversed by guessing. The hash is looked up through an index and then compared again with
  ``hmac.compare_digest``; the index lookup leaks at most timing about a *hash*, which tells an
  attacker nothing about any token.
* Revocation clears the stored hash at once; every request reads the registry, so another process
  (``harbour hub revoke-site``) stops a token without restarting the hub.
* Rotation: ``add-site SITE --rotate`` issues a new token and the old one stops working.
* Operators: ``revoke-operator NAME`` (or ``--token-file F`` for a leaked token whose owner is unknown)
  clears the operator's hash the same way; their fleet page sessions end with it (``sessions.py``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sync_protocol.identifiers import SiteId

from .db import LedgerDatabase, upsert

TOKEN_BYTES = 32
"""256 bits: the contract's minimum, and the same as the key size of the digests that protect the data."""

SITE_TOKEN_PREFIX = "hbs_"
OPERATOR_TOKEN_PREFIX = "hbo_"
MAX_TOKEN_CHARS = 128
"""A real token is 47 characters; anything much longer is garbage and is refused before hashing."""

OPERATOR_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


class RegistryError(Exception):
    """An operator command that cannot be done as asked; the message says what to do instead."""


class Role(enum.Enum):
    SITE = "site"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    role: Role
    name: str  # the site id for a site, the operator's name for an operator

    @property
    def site(self) -> SiteId | None:
        return SiteId(self.name) if self.role is Role.SITE else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()


class SiteRegistry:
    """Sites and operators in the hub database (tables ``sites`` and ``operators``)."""

    def __init__(self, database: LedgerDatabase, clock: Callable[[], float],
                 token_source: Callable[[int], str] = secrets.token_urlsafe) -> None:
        self._database = database
        self._clock = clock
        self._token_source = token_source
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        if {"sites", "operators"} <= self._database.tables() and "token_refused_at" in self._database.columns("sites"):
            return  # current: no write lock taken (every command and process start comes here)
        with self._database.write() as db:  # one process at a time: concurrent CREATEs collide on PostgreSQL
            db.execute(
                "CREATE TABLE IF NOT EXISTS sites (site TEXT PRIMARY KEY, token_hash TEXT, created_at REAL NOT NULL,"
                " rotated_at REAL, revoked_at REAL, last_contact REAL, token_refused_at REAL)"
            )
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS sites_token ON sites(token_hash)")
            if "token_refused_at" not in self._database.columns("sites"):  # a hub.db from before that column
                db.execute("ALTER TABLE sites ADD COLUMN token_refused_at REAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS operators (name TEXT PRIMARY KEY, token_hash TEXT,"
                " created_at REAL NOT NULL, revoked_at REAL)"
            )
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS operators_token ON operators(token_hash)")

    def _new_token(self, prefix: str) -> tuple[str, str]:
        token = prefix + self._token_source(TOKEN_BYTES)
        return token, hash_token(token)

    # -- operator commands ---------------------------------------------------------------------------

    def add_site(self, site: SiteId, *, rotate: bool = False) -> str:
        """Register ``site`` (or, with ``rotate``, replace its token); returns the new token."""
        token, digest = self._new_token(SITE_TOKEN_PREFIX)
        now = self._clock()
        with self._database.write() as db:
            row = db.execute("SELECT site FROM sites WHERE site = ?", [str(site)]).fetchone()
            if row is not None and not rotate:
                raise RegistryError(
                    f"site {site} is already registered; use `harbour hub add-site {site} --rotate` to issue a "
                    "new token (the old one stops working)"
                )
            if row is None:
                db.execute("INSERT INTO sites (site, token_hash, created_at) VALUES (?, ?, ?)",
                           [str(site), digest, now])
            else:
                db.execute(
                    "UPDATE sites SET token_hash = ?, rotated_at = ?, revoked_at = NULL WHERE site = ?",
                    [digest, now, str(site)],
                )
        return token

    def revoke_site(self, site: SiteId) -> None:
        with self._database.write() as db:
            cursor = db.execute(
                "UPDATE sites SET token_hash = NULL, revoked_at = ? WHERE site = ?", [self._clock(), str(site)]
            )
            if cursor.rowcount == 0:
                raise RegistryError(f"site {site} is not registered; `harbour hub status` lists the known sites")

    def add_operator(self, name: str, *, rotate: bool = False) -> str:
        if not isinstance(name, str) or not OPERATOR_NAME.fullmatch(name):
            raise RegistryError(f"operator name {name[:70]!r} is not valid: use 1-63 of a-z, 0-9, '.', '_' and '-'")
        token, digest = self._new_token(OPERATOR_TOKEN_PREFIX)
        with self._database.write() as db:
            row = db.execute("SELECT name FROM operators WHERE name = ?", [name]).fetchone()
            if row is not None and not rotate:
                raise RegistryError(f"operator {name} exists; use `harbour hub add-operator {name} --rotate`")
            db.execute(upsert("operators", ["name", "token_hash", "created_at", "revoked_at"], ["name"]),
                       [name, digest, self._clock(), None])
        return token

    def revoke_operator(self, name: str) -> bool:
        """Stop ``name``'s token working; False if it had already been revoked (nothing left to stop).

        Fleet page sessions re-check the operator's token hash on every request, so they end with it."""
        with self._database.write() as db:
            row = db.execute("SELECT token_hash FROM operators WHERE name = ?", [name]).fetchone()
            if row is None:
                raise RegistryError(f"operator {name[:70]!r} is not registered (names are the ones given to "
                                    "`harbour hub add-operator`); to revoke a token whose owner you do not know, "
                                    "use `harbour hub revoke-operator --token-file F`")
            if row[0] is None:
                return False
            db.execute("UPDATE operators SET token_hash = NULL, revoked_at = ? WHERE name = ?", [self._clock(), name])
        return True

    def operator_of_token(self, token: str) -> str:
        """The name of the operator whose live token this is (to revoke a leaked token whose owner is unknown)."""
        principal = self.authenticate(token)
        if principal is None or principal.role is not Role.OPERATOR:
            # Never echo the token: it may be a live secret of someone else, e.g. a site's.
            raise RegistryError("that is not a live operator token (unknown, already revoked, mistyped, or a "
                                "site's token: `harbour hub revoke-site SITE` revokes those)")
        return principal.name

    # -- request path --------------------------------------------------------------------------------

    def authenticate(self, token: str) -> Principal | None:
        """The principal a token belongs to, or None (unknown, revoked, malformed)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        if token.startswith(SITE_TOKEN_PREFIX):
            table, key, role = "sites", "site", Role.SITE
        elif token.startswith(OPERATOR_TOKEN_PREFIX):
            table, key, role = "operators", "name", Role.OPERATOR
        else:
            return None
        digest = hash_token(token)
        row = self._database.db.execute(
            f"SELECT {key}, token_hash FROM {table} WHERE token_hash = ?", [digest]
        ).fetchone()
        if row is None or row[1] is None or not hmac.compare_digest(row[1], digest):
            return None
        return Principal(role, row[0])

    def operator_holds(self, name: str, token_hash: str) -> bool:
        """Whether ``token_hash`` is still operator ``name``'s live token: a fleet page session opened with it
        holds only while it is (``hub.sessions``)."""
        row = self._database.db.execute("SELECT token_hash FROM operators WHERE name = ?", [name]).fetchone()
        return row is not None and row[0] is not None and hmac.compare_digest(row[0], token_hash)

    def touch(self, site: SiteId) -> None:
        """Record contact from ``site`` (shown as last contact in status and the fleet API)."""
        with self._database.write(serial=False) as db:
            db.execute("UPDATE sites SET last_contact = ? WHERE site = ?", [self._clock(), str(site)])

    def note_refused_token(self, site: str) -> None:
        """A request claiming to be ``site`` came with a token the hub refused (a wrong or old token on board).
        Only a registered site's row changes: a made-up name leaves no trace."""
        with self._database.write(serial=False) as db:
            db.execute("UPDATE sites SET token_refused_at = ? WHERE site = ?", [self._clock(), site])

    def sites(self) -> list[dict]:
        rows = self._database.db.execute(
            "SELECT site, created_at, rotated_at, revoked_at, last_contact, token_refused_at FROM sites ORDER BY site"
        ).fetchall()
        return [
            {"site": r[0], "created_at": r[1], "rotated_at": r[2], "revoked_at": r[3], "last_contact": r[4],
             "token_refused_at": r[5]}
            for r in rows
        ]
