"""tus 1.0.0 headers: names, strict parsing of what a peer sends, and building what we send.

Only what Harbour speaks: core, creation, checksum, termination, expiration (see ``limits``).
Harbour adds two response headers of its own, which tus clients ignore:

* ``Harbour-Commit: committed`` on any answer about a segment the hub has durably committed --
  this is how the edge learns its ack (on the final PATCH, or on HEAD after a cut);
* ``Upload-Offset`` on the creation answer as well, so the sender can resume without a HEAD;
* ``Harbour-Verified-Offset`` on answers about an upload in progress: bytes from there to
  ``Upload-Offset`` were kept after a cut and no checksum covered them yet; and, on a PATCH,
  ``Harbour-Tail-Sha256: <start> <sha256>``: the sender's sha256 of its bytes from ``start`` (the verified
  offset it was told) to ``Upload-Offset``, checked before the chunk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import ErrorCode, RemoteProtocolError, encode_error_body
from .limits import (
    CHECKSUM_ALGORITHMS,
    MAX_SEGMENT_BYTES,
    TUS_EXTENSIONS,
    TUS_VERSION,
)

TUS_RESUMABLE = "Tus-Resumable"
TUS_VERSION_HEADER = "Tus-Version"
TUS_EXTENSION = "Tus-Extension"
TUS_MAX_SIZE = "Tus-Max-Size"
TUS_CHECKSUM_ALGORITHM = "Tus-Checksum-Algorithm"
UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
UPLOAD_METADATA = "Upload-Metadata"
UPLOAD_CHECKSUM = "Upload-Checksum"
UPLOAD_EXPIRES = "Upload-Expires"
HARBOUR_COMMIT = "Harbour-Commit"
HARBOUR_VERIFIED_OFFSET = "Harbour-Verified-Offset"
HARBOUR_TAIL_SHA256 = "Harbour-Tail-Sha256"
COMMITTED = "committed"
PATCH_CONTENT_TYPE = "application/offset+octet-stream"

UPLOADS_PATH = "/v1/sync/uploads"
"""The tus creation endpoint; an upload lives at ``UPLOADS_PATH/<SegmentId.upload_key>``."""


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes

    def header(self) -> str:
        return f"{self.algorithm} {base64.b64encode(self.digest).decode('ascii')}"

    def matches(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).digest() == self.digest


def _bad(message: str, header: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=code, op="parsing header", subject=header)


def _non_negative(header: str, text: str | None) -> int:
    if text is None:
        raise _bad(f"{header} is required", header)
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise _bad(f"{header} must be a non-negative decimal integer, got {text[:40]!r}", header)
    return int(value)


def single_header(name: str, values: list[str]) -> str | None:
    """The one value of a header that may appear once (``values``: every occurrence, as received). A repeated
    Upload-Offset, Upload-Length or Authorization is ambiguous -- two middleboxes disagreeing, or a smuggling
    attempt -- and taking the first would act on a value the sender may not have meant: 400."""
    if len(values) > 1:
        raise _bad(f"the {name} header appears {len(values)} times; send it once", name)
    return values[0] if values else None


def expect_refusal(value: str) -> bytes | None:
    """``None`` when an ``Expect`` header asks for ``100 Continue``, the only expectation HTTP/1.1 defines (RFC 9110
    10.1.1); otherwise the JSON body of the 417 that answers it. Decided here because aiohttp's own handler quotes
    the value in its 417 text, and a non-ASCII byte there turned the answer into a 500."""
    if value.strip().lower() == "100-continue":
        return None
    return encode_error_body(ErrorCode.BAD_REQUEST, "only 'Expect: 100-continue' is supported",
                             "send the request without an Expect header")


def check_tus_resumable(value: str | None) -> None:
    if value != TUS_VERSION:
        raise _bad(
            f"Tus-Resumable must be {TUS_VERSION!r}, got {value!r}", TUS_RESUMABLE, ErrorCode.PRECONDITION_FAILED,
        )


def parse_offset(text: str | None) -> int:
    return _non_negative(UPLOAD_OFFSET, text)


def parse_length(text: str | None) -> int:
    length = _non_negative(UPLOAD_LENGTH, text)
    if length > MAX_SEGMENT_BYTES:
        raise _bad(
            f"Upload-Length {length} exceeds the hub's maximum segment size {MAX_SEGMENT_BYTES}",
            UPLOAD_LENGTH, ErrorCode.TOO_LARGE,
        )
    if length == 0:
        raise _bad("Upload-Length must be at least 1: a segment is never empty", UPLOAD_LENGTH)
    return length


def parse_content_length(text: str | None) -> int:
    """A PATCH body's length. No limit of its own: tus 1.0.0 lets a PATCH carry every remaining byte of the
    upload, and the receiver checks it against those (``UploadReceiver.begin_chunk``); the hub streams it."""
    return _non_negative("Content-Length", text)


def parse_checksum(text: str | None) -> Checksum | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``; absent means the chunk is not checksummed."""
    if text is None:
        return None
    parts = text.strip().split(" ")
    if len(parts) != 2:
        raise _bad("Upload-Checksum must be '<algorithm> <base64 digest>'", UPLOAD_CHECKSUM)
    algorithm, encoded = parts
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise _bad(
            f"checksum algorithm {algorithm[:20]!r} is not supported; use one of {', '.join(CHECKSUM_ALGORITHMS)}",
            UPLOAD_CHECKSUM,
        )
    try:
        digest = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _bad("Upload-Checksum digest is not valid base64", UPLOAD_CHECKSUM) from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise _bad(f"Upload-Checksum digest has the wrong length for {algorithm}", UPLOAD_CHECKSUM)
    return Checksum(algorithm, digest)


@dataclass(frozen=True)
class TailClaim:
    """The sender's sha256 of its bytes ``[start, Upload-Offset)``: the tail the hub kept after a cut."""

    start: int
    sha256: str

    def header(self) -> str:
        return f"{self.start} {self.sha256}"


def parse_tail_claim(text: str | None) -> TailClaim | None:
    """``Harbour-Tail-Sha256: <start offset> <64 lowercase hex digits>``; absent for plain tus clients."""
    if text is None:
        return None
    parts = text.strip().split(" ")
    if len(parts) != 2 or len(parts[1]) != 64 or any(c not in "0123456789abcdef" for c in parts[1]):
        raise _bad("Harbour-Tail-Sha256 must be '<start offset> <64 lowercase hex digits>'", HARBOUR_TAIL_SHA256)
    return TailClaim(_non_negative(HARBOUR_TAIL_SHA256, parts[0]), parts[1])


def checksum_of(data: bytes, algorithm: str = "sha1") -> Checksum:
    return Checksum(algorithm, hashlib.new(algorithm, data).digest())


LATEST_HTTP_DATE = 253402300799.0
"""23:59:59 on 31 Dec 9999, the last instant an HTTP-date can name; a damaged record must not crash an answer."""


def format_expires(epoch_seconds: float) -> str:
    """RFC 9110 HTTP-date, as tus expiration wants it."""
    clamped = min(max(epoch_seconds, 0.0), LATEST_HTTP_DATE)
    return datetime.fromtimestamp(clamped, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def options_headers() -> dict[str, str]:
    """What ``OPTIONS`` advertises: the server's tus version, extensions and limits."""
    return {
        TUS_RESUMABLE: TUS_VERSION,
        TUS_VERSION_HEADER: TUS_VERSION,
        TUS_EXTENSION: ",".join(TUS_EXTENSIONS),
        TUS_MAX_SIZE: str(MAX_SEGMENT_BYTES),
        TUS_CHECKSUM_ALGORITHM: ",".join(CHECKSUM_ALGORITHMS),
    }
