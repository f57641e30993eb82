"""The error vocabulary both sides share.

Two kinds of error, as in h11:

* ``LocalProtocolError`` -- *our* code misused the API (a bug, or a caller that skipped a
  validation step). It should never reach a peer; it is raised so that the bug is loud.
* ``RemoteProtocolError`` -- the *peer* sent something wrong. The receiving side answers it
  with the error's HTTP status and JSON body and carries on; the sending side decides from
  the code whether to retry, resume or park the segment.

Every error names what was attempted (``op``), on what (``subject``) and a ``hint`` that an
operator on a ship can act on, in the manner of Litestream's ``LTXError{Op, Path, Hint}``.
The JSON body on the wire is ``{"error": message, "code": code, "hint": hint}``; ``error``
alone is what the public contract promises, the other two keys are for programs.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from .limits import MAX_ERROR_BODY_BYTES


class PeerAction(enum.Enum):
    """What the side that *receives* an error should do about it."""

    RETRY = "retry"  # transient: back off, then try the same request again
    RESYNC = "resync"  # ask the hub where the upload stands (HEAD), then continue from there
    RESEND_CHUNK = "resend-chunk"  # the chunk was damaged on the way: send it again
    RESTART_UPLOAD = "restart-upload"  # the hub dropped the upload: create it anew, from offset 0
    ACKED = "acked"  # nothing went wrong after all: the segment is already committed
    PARK = "park"  # permanent: quarantine the segment, surface it, move on to the next one
    FIX_REQUEST = "fix-request"  # the client sent a malformed request: a bug or a hostile client


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    action: PeerAction
    meaning: str


class ErrorCode(enum.Enum):
    """Every error a Harbour peer can answer with, its HTTP status and what the peer does."""

    BAD_REQUEST = ErrorSpec(400, PeerAction.FIX_REQUEST, "a header or body is malformed")
    BAD_IDENTIFIER = ErrorSpec(400, PeerAction.PARK, "a site id, table name or seq is not valid")
    BAD_MANIFEST = ErrorSpec(400, PeerAction.PARK, "the segment manifest is missing a field or has a bad one")
    UNAUTHORIZED = ErrorSpec(401, PeerAction.PARK, "the bearer token is missing, wrong or revoked")
    FORBIDDEN = ErrorSpec(403, PeerAction.PARK, "the token belongs to another site")
    NO_SUCH_PATH = ErrorSpec(404, PeerAction.FIX_REQUEST, "no API at this path (a typo, or another service)")
    UPLOAD_NOT_FOUND = ErrorSpec(404, PeerAction.RESTART_UPLOAD, "no upload at this URL (never made, or expired)")
    METHOD_NOT_ALLOWED = ErrorSpec(405, PeerAction.FIX_REQUEST, "the path does not take this method (see Allow)")
    OFFSET_MISMATCH = ErrorSpec(409, PeerAction.RESYNC, "Upload-Offset is not the hub's durable offset")
    SEGMENT_CONFLICT = ErrorSpec(
        409, PeerAction.PARK, "this (site, table, seq) was committed with a different digest"
    )
    ALREADY_COMMITTED = ErrorSpec(
        409, PeerAction.ACKED, "the segment is already durably committed; it cannot be changed or terminated"
    )
    CHAIN_CONFLICT = ErrorSpec(
        409, PeerAction.PARK, "prev-sha256 does not match the digest the hub holds for seq - 1"
    )
    UPLOAD_GONE = ErrorSpec(410, PeerAction.RESTART_UPLOAD, "the upload was terminated or expired")
    BODY_TIMEOUT = ErrorSpec(
        408, PeerAction.RETRY, "the request body stopped arriving, or came too slowly; nothing was stored"
    )
    HEADER_TIMEOUT = ErrorSpec(
        408, PeerAction.RETRY, "the request's headers did not arrive in time; the connection was closed"
    )
    PRECONDITION_FAILED = ErrorSpec(412, PeerAction.FIX_REQUEST, "Tus-Resumable is missing or unsupported")
    TOO_LARGE = ErrorSpec(413, PeerAction.PARK, "the segment or request body is larger than the hub allows")
    UNSUPPORTED_MEDIA_TYPE = ErrorSpec(415, PeerAction.FIX_REQUEST, "the Content-Type is not accepted here")
    SCHEMA_QUARANTINED = ErrorSpec(
        422, PeerAction.PARK, "the segment's schema conflicts with the table's; it is quarantined at the hub"
    )
    MANIFEST_MISMATCH = ErrorSpec(
        422, PeerAction.PARK, "the segment file's row count or schema differs from its manifest; nothing was committed"
    )
    UPLOAD_BUSY = ErrorSpec(
        423, PeerAction.RETRY, "another hub process of the cluster is working on this upload; retry in a moment"
    )
    RATE_LIMITED = ErrorSpec(429, PeerAction.RETRY, "too many requests; honour Retry-After")
    CHECKSUM_MISMATCH = ErrorSpec(460, PeerAction.RESEND_CHUNK, "the chunk does not match its Upload-Checksum")
    METADATA_DAMAGED = ErrorSpec(
        460, PeerAction.RETRY, "Upload-Metadata does not match its manifest-sha256 (damaged in transit); nothing kept"
    )
    SEGMENT_DIGEST_MISMATCH = ErrorSpec(
        460, PeerAction.RESTART_UPLOAD, "the whole segment does not match the manifest's sha256"
    )
    # the downlink (sync_protocol/downlink.py): a ship downloading a dataset version
    DATASET_NOT_FOUND = ErrorSpec(
        404, PeerAction.PARK, "no such dataset version was offered to this ship; take what the report answer offers"
    )
    DATASET_GONE = ErrorSpec(
        410, PeerAction.RESYNC, "the dataset version was pruned at the hub; the next report answer offers a newer one"
    )
    RANGE_NOT_SATISFIABLE = ErrorSpec(
        416, PeerAction.RESTART_UPLOAD, "the Range is malformed or starts past the end; download from byte 0 again"
    )
    INTERNAL = ErrorSpec(500, PeerAction.RETRY, "the peer failed; the request may be retried")
    UNAVAILABLE = ErrorSpec(503, PeerAction.RETRY, "the peer is starting, stopping or overloaded")
    DISK_FULL = ErrorSpec(507, PeerAction.RETRY, "the node's disk quota is reached")

    @property
    def slug(self) -> str:
        return self.name.lower().replace("_", "-")

    @property
    def status(self) -> int:
        return self.value.status

    @property
    def action(self) -> PeerAction:
        return self.value.action

    @classmethod
    def of_routing(cls, status: int) -> ErrorCode:
        """The code of an answer the HTTP router gave (unknown path, method not allowed, ...)."""
        return {404: cls.NO_SUCH_PATH, 405: cls.METHOD_NOT_ALLOWED}.get(status, cls.BAD_REQUEST)

    @classmethod
    def from_slug(cls, slug: str) -> ErrorCode | None:
        for code in cls:
            if code.slug == slug:
                return code
        return None


class HarbourError(Exception):
    """Base of both error kinds: a message, what was attempted, on what, and a hint."""

    def __init__(self, message: str, *, op: str = "", subject: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.subject = subject
        self.hint = hint

    def __str__(self) -> str:
        parts = [self.message]
        if self.op or self.subject:
            parts.append(f"(while {self.op or 'handling'} {self.subject})".replace(" )", ")"))
        if self.hint:
            parts.append(f"-- {self.hint}")
        return " ".join(parts)


class LocalProtocolError(HarbourError):
    """Our own code broke a rule of the protocol: a bug, never the peer's fault."""


class RemoteProtocolError(HarbourError):
    """The peer sent something that breaks the protocol; answer with ``code`` and carry on."""

    def __init__(
        self, message: str, *, code: ErrorCode = ErrorCode.BAD_REQUEST, op: str = "", subject: str = "",
        hint: str = "", headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, op=op, subject=subject, hint=hint)
        self.code = code
        # Response headers that help the peer recover, e.g. Upload-Offset on a 409.
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return self.code.status

    def to_body(self) -> bytes:
        return encode_error_body(self.code, str(self), self.hint)


def encode_error_body(code: ErrorCode, message: str, hint: str = "") -> bytes:
    body: dict[str, Any] = {"error": message, "code": code.slug}
    if hint:
        body["hint"] = hint
    return json.dumps(body).encode()


@dataclass(frozen=True)
class ErrorBody:
    """A decoded error answer from a peer."""

    status: int
    message: str
    code: ErrorCode | None
    hint: str

    @property
    def action(self) -> PeerAction:
        """What to do about it. Without a code -- a HEAD answer has no body, a plain tus server sends none,
        a damaged body loses it -- the HTTP status decides, as tus defines it."""
        if self.code is not None:
            return self.code.action
        return STATUS_ACTIONS.get(self.status, PeerAction.RETRY if self.status >= 500 else PeerAction.PARK)


STATUS_ACTIONS = {
    404: PeerAction.RESTART_UPLOAD,  # tus: no such upload (never made, expired, terminated)
    410: PeerAction.RESTART_UPLOAD,
    409: PeerAction.RESYNC,  # tus: offset mismatch
    460: PeerAction.RESEND_CHUNK,  # tus checksum extension: the chunk did not match
    408: PeerAction.RETRY,  # the request's head or body came too slowly (a proxy's, or an older hub's, code-less)
    423: PeerAction.RETRY,  # locked: another request holds the upload
    429: PeerAction.RETRY,
}
"""Fallback when an error answer carries no Harbour code (see ``ErrorBody.action``)."""


def decode_error_body(status: int, body: bytes) -> ErrorBody:
    """Read a peer's error answer. Never raises: a garbled body still yields a usable ErrorBody,
    because an error path that itself fails would hide the original problem."""
    text = body[:MAX_ERROR_BODY_BYTES].decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return ErrorBody(status, text.strip() or f"HTTP {status}", None, "")
    if not isinstance(doc, dict):
        return ErrorBody(status, text.strip(), None, "")
    message = doc.get("error")
    slug = doc.get("code")
    hint = doc.get("hint")
    return ErrorBody(
        status=status,
        message=message if isinstance(message, str) else text.strip(),
        code=ErrorCode.from_slug(slug) if isinstance(slug, str) else None,
        hint=hint if isinstance(hint, str) else "",
    )
