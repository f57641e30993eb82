"""aiohttp's errors for a request body the client spoiled, turned into the 400 they are."""

from __future__ import annotations

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from sync_protocol import ErrorCode, RemoteProtocolError

BODY_ERRORS = (RequestPayloadError, HttpProcessingError, ConnectionError)
"""What reading a request body raises when the body is not what its headers say (``Content-Encoding: gzip`` on
bytes that are not gzip, broken chunked framing, fewer bytes than Content-Length) or the client went away mid-body.
The client's doing: answered 400 (to whoever is still there), never a 500 with a traceback per request."""


def unreadable_body(error: Exception) -> RemoteProtocolError:
    cause = getattr(error, "message", None) or str(error) or type(error).__name__
    if isinstance(error, RequestPayloadError) and error.__cause__ is not None:
        cause = getattr(error.__cause__, "message", None) or str(error.__cause__)
    return RemoteProtocolError(
        f"the request body could not be read: {str(cause).strip()[:200]}", code=ErrorCode.BAD_REQUEST,
        op="reading body", subject="request body",
        hint="send the body as its headers describe it (Content-Length, Content-Encoding, Transfer-Encoding)",
        headers={"Connection": "close"})
