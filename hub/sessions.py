"""Browser sessions for the fleet page: an operator logs in once with a token, then holds a cookie.

* The cookie carries a fresh random session id (256 bits), never the token. The ledger database keeps only the
  id's sha256, the operator's name and the sha256 of the token they logged in with (table ``page_sessions``), so
  a copy of the table is not a set of working cookies, and no token is written anywhere.
* Each request re-checks that the operator's *current* token hash is still the one the session was opened with
  (``SiteRegistry.operator_by_token_hash``), so ``revoke-operator`` or a rotation ends the operator's sessions at
  once, as it does for API calls.
* Sessions live in the ledger database, so that in a hub cluster a login on one process holds on all of them
  (a balancer without affinity sends each page load anywhere), and a restarted hub keeps its operators logged in.
* Bounded: at most ``MAX_SESSIONS``, each at most ``SESSION_SECONDS``; the oldest goes first.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .db import LedgerDatabase

SESSION_COOKIE = "harbour_session"
SESSION_SECONDS = 12 * 3600.0
"""A working day: an operator logs in each morning, and a forgotten browser tab stops working by night."""

MAX_SESSIONS = 1_000
"""Far more than a head office has operators and browsers; a login flood only evicts old sessions."""

SESSION_ID_BYTES = 32
MAX_SESSION_ID_CHARS = 100


@dataclass(frozen=True)
class Session:
    operator: str
    token_hash: str  # of the token the operator logged in with


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", errors="replace")).hexdigest()


class SessionStore:
    def __init__(self, database: LedgerDatabase, clock: Callable[[], float],
                 id_source: Callable[[int], str] = secrets.token_urlsafe) -> None:
        self._database = database
        self._clock = clock
        self._id_source = id_source
        if "page_sessions" not in database.tables():
            with database.write() as db:  # one process at a time: concurrent CREATEs collide on PostgreSQL
                db.execute("CREATE TABLE IF NOT EXISTS page_sessions (id_hash TEXT PRIMARY KEY, operator TEXT NOT NULL,"
                           " token_hash TEXT NOT NULL, expires_at REAL NOT NULL)")

    def open(self, operator: str, token_hash: str) -> str:
        """A new session for an operator whose token was just checked; returns the cookie value."""
        session_id = self._id_source(SESSION_ID_BYTES)
        now = self._clock()
        with self._database.write() as db:
            db.execute("INSERT INTO page_sessions (id_hash, operator, token_hash, expires_at) VALUES (?, ?, ?, ?)",
                       [_key(session_id), operator, token_hash, now + SESSION_SECONDS])
            db.execute("DELETE FROM page_sessions WHERE expires_at <= ?", [now])
            db.execute("DELETE FROM page_sessions WHERE id_hash NOT IN (SELECT id_hash FROM page_sessions"
                       " ORDER BY expires_at DESC LIMIT ?)", [MAX_SESSIONS])
        return session_id

    def session(self, session_id: str | None) -> Session | None:
        """The live session behind a cookie, or None (no, unknown or expired session)."""
        if not session_id or len(session_id) > MAX_SESSION_ID_CHARS:
            return None
        row = self._database.db.execute(
            "SELECT operator, token_hash FROM page_sessions WHERE id_hash = ? AND expires_at > ?",
            [_key(session_id), self._clock()]).fetchone()
        return None if row is None else Session(row[0], row[1])

    def close(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= MAX_SESSION_ID_CHARS:
            with self._database.write() as db:
                db.execute("DELETE FROM page_sessions WHERE id_hash = ?", [_key(session_id)])
