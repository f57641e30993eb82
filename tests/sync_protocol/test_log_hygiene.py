"""No credential reaches a log line, and malformed requests do not flood the log (sync_protocol.log_hygiene)."""

from __future__ import annotations

import io
import logging

import pytest

from sync_protocol.log_hygiene import (
    MALFORMED_LOG_INTERVAL_SECONDS,
    REDACTED,
    MalformedRequestFilter,
    install,
    redact,
)

TOKEN = "hbo_" + "Zq3" * 14


@pytest.mark.parametrize("line", [
    f"b'Authorization: Bearer {TOKEN}'",
    f"b'Authorization : Bearer {TOKEN}'",  # a space before the colon: what a damaged line looks like
    f"b'AUTHORIZATION:Bearer {TOKEN}'",
    f"b'Authorization: Bearer {TOKEN[:10]}\\x01{TOKEN[10:]}'",  # a control byte inside the token
    f"Authorization: Basic {TOKEN}\r\nHost: x",
    f"Cookie: harbour_session={TOKEN}; theme=dark",
    f"GET /v1/fleet?token={TOKEN} HTTP/1.1",
    f"Proxy-Authorization: Bearer {TOKEN}",
])
def test_every_way_a_token_is_quoted_is_redacted(line):
    cleaned = redact(line)
    assert TOKEN not in cleaned and TOKEN[:12] not in cleaned and TOKEN[-12:] not in cleaned
    assert REDACTED in cleaned


def test_text_without_credentials_is_unchanged():
    text = "upload ship-1/telemetry/7 committed: 4,096 bytes, offset 0 -> 4096 (Bearer-less)"
    assert redact(text) == text


class BadHttpMessage(Exception):
    """The shape of aiohttp's HttpProcessingError (code, message), without importing aiohttp."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}, message:\n  {message}")
        self.code, self.message = code, message


def logged(records: list[tuple[str, Exception | None]], clock) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    install([handler], clock)
    logger = logging.getLogger("aiohttp.server")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for message, error in records:
            if error is None:
                logger.error(message)
            else:
                try:
                    raise error
                except Exception:
                    logger.exception(message)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_a_malformed_request_is_one_warning_line_without_the_token():
    error = BadHttpMessage(400, f"Invalid header token:\n\n  b'Authorization : Bearer {TOKEN}'\n   ^")
    text = logged([("Error handling request from 127.0.0.1", error)], lambda: 0.0)
    assert TOKEN not in text and "Traceback" not in text
    assert text.strip().splitlines() == [
        "WARNING aiohttp.server: Error handling request from 127.0.0.1: malformed request answered 400 "
        "(Invalid header token)"]


def test_malformed_requests_of_one_kind_are_logged_once_per_interval_with_a_count():
    now = [0.0]
    error = BadHttpMessage(400, "Invalid header value char")
    records = [("Error handling request", error)] * 500
    text = logged(records, lambda: now[0])
    assert len(text.splitlines()) == 1
    filter_ = MalformedRequestFilter(lambda: now[0])
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", None,
                               (BadHttpMessage, error, None))
    assert filter_.filter(record)
    for _ in range(9):
        assert not filter_.filter(logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "x", None,
                                                    (BadHttpMessage, error, None)))
    now[0] = MALFORMED_LOG_INTERVAL_SECONDS + 1
    later = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", None,
                              (BadHttpMessage, error, None))
    assert filter_.filter(later) and "9 more like it" in later.getMessage()


def test_a_server_error_keeps_its_traceback_but_loses_the_token():
    text = logged([("Error handling request", RuntimeError(f"boom with Bearer {TOKEN}"))], lambda: 0.0)
    assert "ERROR aiohttp.server" in text and "Traceback" in text and "RuntimeError" in text
    assert TOKEN not in text


def test_the_bytes_a_complaint_quotes_do_not_make_each_request_a_new_kind():
    """Found by fuzzing: "Got more than 8190 bytes when reading: b'...'" quoted each request's own bytes."""
    records = [("Error handling request", BadHttpMessage(400, f"Got more than 8190 bytes when reading: b'{c * 50}'."))
               for c in "abcdefghij"]
    assert len(logged(records, lambda: 0.0).splitlines()) == 1


class PayloadError(Exception):
    """aiohttp's RequestPayloadError: no code of its own; the parser's error is its cause."""


def test_a_body_that_is_not_its_content_encoding_is_one_warning_line_too():
    def unreadable():
        try:
            raise BadHttpMessage(400, "Can not decode content-encoding: gzip")
        except BadHttpMessage as cause:
            raise PayloadError("400, message: Can not decode content-encoding: gzip") from cause

    errors = []
    for _ in range(20):
        try:
            unreadable()
        except PayloadError as error:
            errors.append(("Unhandled exception", error))
    text = logged(errors, lambda: 0.0)
    assert text.strip().splitlines() == ["WARNING aiohttp.server: Unhandled exception: malformed request answered 400 "
                                         "(Can not decode content-encoding: gzip)"]


def test_records_naming_a_repeat_kind_are_logged_once_per_interval_per_kind():
    now = [0.0]
    filter_ = MalformedRequestFilter(lambda: now[0])

    def record(kind: str) -> logging.LogRecord:
        made = logging.LogRecord("harbour.hub.http", logging.WARNING, __file__, 1, "rejected %s", ("x",), None)
        made.repeat_kind = kind
        return made

    assert filter_.filter(record("401 ship-1")) and filter_.filter(record("401 ship-2"))
    assert not any(filter_.filter(record("401 ship-1")) for _ in range(99))
    now[0] = MALFORMED_LOG_INTERVAL_SECONDS + 1
    later = record("401 ship-1")
    assert filter_.filter(later) and later.getMessage() == "rejected x; 99 more like it in the last 61 s"
