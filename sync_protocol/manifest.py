"""The segment manifest: what a segment is, carried in tus ``Upload-Metadata``.

A manifest travels with every upload so that the hub can check a segment before it commits it:
its size and sha256 (integrity, G4), its place in the (site, table) sequence and the digest of the
segment before it (a hash chain: the hub proves there is no gap, G8), and the fingerprint of its
schema (so a conflicting schema is caught before the merge).

On the wire it is the ``Upload-Metadata`` header of tus creation: comma-separated ``key value``
pairs with base64 values. Decoding is strict: an unknown key, a missing key, a repeated key or a
bad value is a ``RemoteProtocolError`` that names it, never a silently ignored field, because a
field we ignore today is a field whose meaning a newer peer relies on.

Headers have no checksum of their own (tus's ``Upload-Checksum`` covers bodies only), and on a plain-HTTP
link a flipped bit in ``prev-sha256`` still decodes as a valid digest: a hub that committed it would hold
a chain link the ship can never match, and park every earlier segment of the table (seen in the smoke
voyage's corruption fault). So the edge adds ``manifest-sha256``, the sha256 of the other fields; a
manifest that does not match it is refused as damaged in transit (``460 metadata-damaged``, retried). It is
optional on the wire, so that hand-made tus uploads (any tus client) still work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import ErrorCode, RemoteProtocolError
from .identifiers import SegmentId, SiteId, TableName, parse_seq
from .limits import (
    FIRST_SEQ,
    GENESIS_DIGEST,
    MAX_METADATA_BYTES,
    MAX_METADATA_VALUE_BYTES,
    MAX_PRIORITY_CLASS,
    MAX_ROWS_PER_SEGMENT,
    MAX_SEGMENT_BYTES,
)

MANIFEST_VERSION = "1"
"""Bumped when a field is added or changes meaning; a hub rejects versions it does not know."""

HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
METADATA_KEY = re.compile(r"[a-z][a-z0-9-]{0,31}")

INTEGRITY_KEY = "manifest-sha256"
"""The optional field carrying ``manifest_digest`` of all the others (see the module's docstring)."""

# The wire name of every manifest field, in the order they are encoded.
FIELD_KEYS = (
    "harbour-manifest",
    "site",
    "table",
    "seq",
    "row-count",
    "byte-size",
    "sha256",
    "schema-fingerprint",
    "prev-sha256",
    "priority",
    "created-at-ms",
)


def _bad(message: str, key: str = "") -> RemoteProtocolError:
    return RemoteProtocolError(
        message, code=ErrorCode.BAD_MANIFEST, op="decoding manifest", subject=key or "Upload-Metadata",
        hint="the uploader and the hub disagree on the manifest; upgrade the older side",
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schema_fingerprint(canonical_schema: str) -> str:
    """Fingerprint of a schema given in a canonical text form (the edge decides the form, e.g. the
    field names and types in order); equal schemas have equal fingerprints on every ship."""
    return sha256_hex(canonical_schema.encode())


def _bounded_int(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{key} must be an integer from {low} to {high}, got {value!r}", key)
    return value


def _digest(key: str, value: object) -> str:
    if not isinstance(value, str) or not HEX_DIGEST.fullmatch(value):
        raise _bad(f"{key} must be 64 lowercase hex digits, got {value!r}", key)
    return value


@dataclass(frozen=True)
class Manifest:
    segment: SegmentId
    row_count: int
    byte_size: int
    sha256: str
    schema_fingerprint: str
    prev_sha256: str
    priority: int
    created_at_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.segment, SegmentId):
            raise TypeError("Manifest.segment must be a SegmentId")
        _bounded_int("row-count", self.row_count, 0, MAX_ROWS_PER_SEGMENT)
        _bounded_int("byte-size", self.byte_size, 1, MAX_SEGMENT_BYTES)
        _digest("sha256", self.sha256)
        _digest("schema-fingerprint", self.schema_fingerprint)
        _digest("prev-sha256", self.prev_sha256)
        _bounded_int("priority", self.priority, 0, MAX_PRIORITY_CLASS)
        _bounded_int("created-at-ms", self.created_at_ms, 0, 2**53)
        is_first = self.segment.seq == FIRST_SEQ
        if is_first != (self.prev_sha256 == GENESIS_DIGEST):
            raise _bad(
                f"prev-sha256 must be the genesis digest exactly when seq is {FIRST_SEQ} "
                f"(seq {self.segment.seq}, prev-sha256 {self.prev_sha256[:12]}...)",
                "prev-sha256",
            )

    @classmethod
    def create(
        cls, segment: SegmentId, *, row_count: int, byte_size: int, sha256: str, schema_fingerprint: str,
        prev_sha256: str, priority: int, clock: Callable[[], float],
    ) -> Manifest:
        """A manifest stamped with the time ``clock`` says it is (seconds since the epoch)."""
        return cls(
            segment, row_count, byte_size, sha256, schema_fingerprint, prev_sha256, priority,
            created_at_ms=int(clock() * 1000),
        )

    def fields(self) -> dict[str, str]:
        """The manifest as wire key -> text value pairs, in FIELD_KEYS order."""
        return {
            "harbour-manifest": MANIFEST_VERSION,
            "site": str(self.segment.site),
            "table": str(self.segment.table),
            "seq": str(self.segment.seq),
            "row-count": str(self.row_count),
            "byte-size": str(self.byte_size),
            "sha256": self.sha256,
            "schema-fingerprint": self.schema_fingerprint,
            "prev-sha256": self.prev_sha256,
            "priority": str(self.priority),
            "created-at-ms": str(self.created_at_ms),
        }

    def to_upload_metadata(self) -> str:
        fields = self.fields()
        return encode_upload_metadata({**fields, INTEGRITY_KEY: manifest_digest(fields)})

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Manifest:
        unknown = sorted(set(fields) - set(FIELD_KEYS))
        if unknown:
            raise _bad(f"unknown manifest field(s): {', '.join(unknown)}", unknown[0])
        missing = [key for key in FIELD_KEYS if key not in fields]
        if missing:
            raise _bad(f"missing manifest field(s): {', '.join(missing)}", missing[0])
        if fields["harbour-manifest"] != MANIFEST_VERSION:
            raise _bad(
                f"manifest version {fields['harbour-manifest']!r} is not supported (this side speaks "
                f"{MANIFEST_VERSION!r})", "harbour-manifest",
            )
        segment = SegmentId(SiteId(fields["site"]), TableName(fields["table"]), parse_seq(fields["seq"]))
        return cls(
            segment=segment,
            row_count=_decimal("row-count", fields["row-count"]),
            byte_size=_decimal("byte-size", fields["byte-size"]),
            sha256=fields["sha256"],
            schema_fingerprint=fields["schema-fingerprint"],
            prev_sha256=fields["prev-sha256"],
            priority=_decimal("priority", fields["priority"]),
            created_at_ms=_decimal("created-at-ms", fields["created-at-ms"]),
        )

    @classmethod
    def from_upload_metadata(cls, header: str) -> Manifest:
        fields = decode_upload_metadata(header)
        claimed = fields.pop(INTEGRITY_KEY, None)
        manifest = cls.from_fields(fields)  # a malformed field is named first, whatever else is wrong
        if claimed is not None and claimed != manifest_digest(fields):
            raise RemoteProtocolError(
                f"Upload-Metadata does not match its {INTEGRITY_KEY}: it was damaged on the way",
                code=ErrorCode.METADATA_DAMAGED, op="reading the segment manifest", subject=INTEGRITY_KEY,
                hint="send the creation again",
            )
        return manifest


def manifest_digest(fields: Mapping[str, str]) -> str:
    """sha256 over ``key=value`` lines in key order: the same text whatever order the pairs travelled in."""
    return sha256_hex("".join(f"{key}={fields[key]}\n" for key in sorted(fields)).encode())


def _decimal(key: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise _bad(f"{key} must be a non-negative decimal integer, got {text!r}", key)
    return int(text)


def encode_upload_metadata(fields: Mapping[str, str]) -> str:
    """tus ``Upload-Metadata``: ``key base64(value)`` pairs joined by commas."""
    pairs = []
    for key, value in fields.items():
        if not METADATA_KEY.fullmatch(key):
            raise ValueError(f"metadata key {key!r} is not a valid Harbour metadata key")
        pairs.append(f"{key} {base64.b64encode(value.encode()).decode('ascii')}")
    return ",".join(pairs)


def decode_upload_metadata(header: str) -> dict[str, str]:
    """Parse tus ``Upload-Metadata`` strictly: bounded size, unique keys, valid base64 and UTF-8.

    A key without a value (allowed by tus) decodes to the empty string."""
    if not isinstance(header, str):
        raise _bad("Upload-Metadata is missing")
    if len(header.encode("utf-8", errors="replace")) > MAX_METADATA_BYTES:
        raise _bad(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")
    fields: dict[str, str] = {}
    for raw_pair in header.split(","):
        pair = raw_pair.strip()
        if not pair:
            raise _bad("Upload-Metadata has an empty pair")
        parts = pair.split(" ")
        if len(parts) > 2:
            raise _bad(f"Upload-Metadata pair {pair[:40]!r} has more than one space")
        key = parts[0]
        if not METADATA_KEY.fullmatch(key):
            raise _bad(f"Upload-Metadata key {key[:40]!r} is not valid", key[:40])
        if key in fields:
            raise _bad(f"Upload-Metadata key {key!r} appears twice", key)
        fields[key] = _decode_value(key, parts[1]) if len(parts) == 2 else ""
    return fields


def _decode_value(key: str, encoded: str) -> str:
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _bad(f"Upload-Metadata value of {key!r} is not valid base64", key) from None
    if len(raw) > MAX_METADATA_VALUE_BYTES:
        raise _bad(f"Upload-Metadata value of {key!r} is longer than {MAX_METADATA_VALUE_BYTES} bytes", key)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"Upload-Metadata value of {key!r} is not UTF-8", key) from None
