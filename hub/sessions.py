"""Browser sessions for the fleet page: an operator logs in once with a token, then holds a cookie.

* The cookie carries a fresh random session id (256 bits), never the token; the hub keeps only the
  id's sha256, so a memory dump of the map is not a set of working cookies.
* Each request re-checks the operator's *token* against the registry, so ``revoke-operator`` or a
  rotation ends the operator's sessions at once, as it does for API calls. The token stays in this
  process's memory for the session's life; it is never written anywhere.
* Sessions live in memory: a restarted hub asks its operators to log in again, which is cheap, and
  nothing on disk has to be protected or cleaned up.
* Bounded: at most ``MAX_SESSIONS``, each at most ``SESSION_SECONDS``; the oldest goes first.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "harbour_session"
SESSION_SECONDS = 12 * 3600.0
"""A working day: an operator logs in each morning, and a forgotten browser tab stops working by night."""

MAX_SESSIONS = 1_000
"""Far more than a head office has operators and browsers; a login flood only evicts old sessions."""

SESSION_ID_BYTES = 32


@dataclass(frozen=True)
class Session:
    operator_token: str
    expires_at: float


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", errors="replace")).hexdigest()


class SessionStore:
    def __init__(self, clock: Callable[[], float], id_source: Callable[[int], str] = secrets.token_urlsafe) -> None:
        self._clock = clock
        self._id_source = id_source
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, operator_token: str) -> str:
        """A new session for a token already checked to be an operator's; returns the cookie value."""
        session_id = self._id_source(SESSION_ID_BYTES)
        self._sessions[_key(session_id)] = Session(operator_token, self._clock() + SESSION_SECONDS)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session_id

    def token(self, session_id: str | None) -> str | None:
        """The operator token behind a live session, or None (no, unknown or expired session)."""
        if not session_id or len(session_id) > 100:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            del self._sessions[key]
            return None
        return session.operator_token

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(_key(session_id), None)
