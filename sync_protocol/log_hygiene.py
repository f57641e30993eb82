"""What may reach a log line: no credential, and no flood of one malformed request after another.

Both servers run on aiohttp, whose HTTP parser logs a request it cannot parse at ERROR with a traceback
that quotes the offending header line *verbatim*: a bit-flipping satellite link or a fuzzer that damages
the ``Authorization`` line puts the bearer token into the log in plain text, once per request. So every
record is passed through ``redact`` before a handler writes it (message, arguments and traceback alike),
and a client's malformed request -- the client's mistake, answered 4xx -- becomes one WARNING line per
kind and per ``MALFORMED_LOG_INTERVAL_SECONDS`` instead of an ERROR traceback per request.

Pure: the clock is passed in; ``install`` only attaches filters to handlers the caller made.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

REDACTED = "[redacted]"

MALFORMED_LOG_INTERVAL_SECONDS = 60.0
"""A kind of malformed request is logged at most once a minute, with the count of those not logged: enough to
see that it happens and how often, too little for a fuzzer or a noisy link to fill the disk."""

_CREDENTIAL_HEADER = re.compile(
    r"(?P<name>(?:proxy-)?authorization|cookie|set-cookie)(?P<sep>\s*:\s*)(?P<value>[^\r\n'\"]*)",
    re.IGNORECASE,
)
"""A credential header line as a parser error quotes it: any case, spaces before the colon (the malformed
case), the value up to the end of the line or the closing quote of a bytes repr."""
_BEARER = re.compile(r"(?P<scheme>bearer|basic)(?P<sep>\s+)(?P<value>[^\s'\",;]+)", re.IGNORECASE)
_HARBOUR_TOKEN = re.compile(r"\b(?:hbs|hbo)_[A-Za-z0-9_\-\\]{8,}")
"""Site and operator tokens (``hub.registry``): caught even outside a header, e.g. pasted into a URL."""
_SESSION_COOKIE = re.compile(r"(?P<name>harbour_session=)(?P<value>[^\s;'\"]+)")


def redact(text: str) -> str:
    """``text`` with every credential it quotes replaced by ``[redacted]``."""
    text = _CREDENTIAL_HEADER.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m['scheme']}{m['sep']}{REDACTED}", text)
    text = _SESSION_COOKIE.sub(lambda m: f"{m['name']}{REDACTED}", text)
    return _HARBOUR_TOKEN.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record so that neither its message nor its traceback can carry a credential."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


@dataclass
class _Kind:
    last_logged: float
    suppressed: int = 0


REPEAT_KIND = "repeat_kind"
"""A record's attribute (``log.warning(..., extra={REPEAT_KIND: kind})``) that puts it under the same limit as a
malformed request: at most one line per kind and interval. The hub logs every refused request this way, with the
status, code and claimed site as its kind: a ship retrying a refused upload, or a hostile client, is one line a
minute with a count, not one line per request."""

MAX_KINDS_REMEMBERED = 10_000
"""Kinds of record remembered at once; past it, those not logged within the interval are forgotten, so a client
that invents a new kind per request cannot grow the filter's memory without bound."""


class MalformedRequestFilter(logging.Filter):
    """aiohttp's "Error handling request" records for requests it could not parse (a 4xx it answered itself),
    and records that name a ``REPEAT_KIND``: one WARNING line without traceback, per kind, at most once per
    ``interval``."""

    def __init__(self, clock: Callable[[], float], interval: float = MALFORMED_LOG_INTERVAL_SECONDS) -> None:
        super().__init__()
        self._clock = clock
        self._interval = interval
        self._kinds: dict[str, _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        repeat_kind = getattr(record, REPEAT_KIND, None)
        status, reason = _client_error(record) if repeat_kind is None else (None, "")
        if status is None and repeat_kind is None:
            return True
        kind = f"{status} {_kind_of(reason)}" if repeat_kind is None else str(repeat_kind)
        now, seen = self._clock(), self._kinds.get(kind)
        if seen is not None and now - seen.last_logged < self._interval:
            seen.suppressed += 1
            return False
        more = f"; {seen.suppressed} more like it in the last {now - seen.last_logged:.0f} s" if seen else ""
        if len(self._kinds) >= MAX_KINDS_REMEMBERED:
            self._kinds = {k: v for k, v in self._kinds.items() if now - v.last_logged < self._interval}
        self._kinds[kind] = _Kind(now)
        if repeat_kind is not None:
            record.msg, record.args = f"{record.getMessage()}{more}", None
            return True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = f"{record.getMessage()}: malformed request answered {status} ({reason}){more}"
        record.args, record.exc_info, record.exc_text = None, None, None
        return True


_QUOTED = re.compile(r"""\s*:?\s*(?:b?'|b?"|\().*$""", re.DOTALL)


def _kind_of(reason: str) -> str:
    """A parser complaint without the bytes it quotes (``Got more than 8190 bytes when reading: b'vvv...'``), so
    that one kind of damage stays one kind whatever the request held."""
    return _QUOTED.sub("", reason)[:80]


def _client_error(record: logging.LogRecord) -> tuple[int | None, str]:
    """(status, first line of the parser's message) when ``record`` is aiohttp's log of a request it could not
    parse, or of a body it could not read (the parser's error is then the cause), else (None, ""). Duck-typed on
    ``HttpProcessingError`` (``code``, ``message``) to stay free of aiohttp."""
    if not record.name.startswith("aiohttp") or not record.exc_info or record.exc_info[1] is None:
        return None, ""
    error = record.exc_info[1]
    if getattr(error, "code", None) is None and error.__cause__ is not None:
        error = error.__cause__
    status, message = getattr(error, "code", None), getattr(error, "message", None)
    if not isinstance(status, int) or not 400 <= status < 500 or not isinstance(message, str):
        return None, ""
    first_line = next((line.strip() for line in message.splitlines() if line.strip()), type(error).__name__)
    return status, redact(first_line.rstrip(":"))


def install(handlers: list[logging.Handler], clock: Callable[[], float]) -> None:
    """Attach both filters to every handler (handler filters see the records of every logger, aiohttp's too)."""
    malformed = MalformedRequestFilter(clock)
    for handler in handlers:
        handler.addFilter(malformed)
        handler.addFilter(RedactingFilter())
