"""What a segment file must hold for its manifest to be true, checked by the hub before it answers `committed`.

The whole-segment sha256 proves the hub holds the bytes the sender meant; it cannot prove that the manifest's
``row-count`` and ``schema-fingerprint`` describe those bytes. A manifest that lies about them (a buggy or
hand-made uploader) would be acknowledged and then quarantined at merge time, after the sender was told its
data was safe. So, once the digest matched, the hub reads the Parquet footer (row count and schema: a few KiB,
however large the file), hands what it read here as ``SegmentContents``, and commits only when
``contents_problem`` finds nothing: otherwise the answer is ``422 manifest-mismatch`` (``PeerAction.PARK``:
the same bytes with the same manifest can never commit) and the hub refuses that exact manifest again at
creation, without its bytes, so Harbour's sender reaches its three permanent answers and parks after sending
the segment once. A different manifest for the seq is taken as usual (the edge is the authority on its
uncommitted segment), so a manifest damaged on the way costs one upload.

The schema fingerprint is the sha256 of ``canonical_schema_text``: field names and Arrow types, in order, as
``pyarrow.parquet.read_schema`` gives them. The edge fingerprints every segment it seals with it; this is
its one definition. pyarrow's types are pure; reading the footer is the hub's I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .errors import ErrorCode, RemoteProtocolError
from .limits import MAX_COLUMNS, MAX_SEGMENT_DECODED_BYTES, MAX_SEGMENT_ROWS
from .manifest import Manifest, schema_fingerprint
from .units import format_size

SCHEMA_TEXT_IN_MESSAGES = 300
"""How much of a file's schema an error message quotes: enough for the columns an operator would compare,
bounded for a table of hundreds of columns."""

REFUSED_HINT = ("the uploader's manifest does not describe its file (a bug in the uploader); nothing was committed: "
                "send the segment with a manifest made from the file itself")


def canonical_schema_text(schema: pa.Schema) -> str:
    """The text a segment's ``schema-fingerprint`` is the sha256 of: ``name:type`` per field, in order."""
    return ";".join(f"{field.name}:{field.type}" for field in schema)


def arrow_schema_fingerprint(schema: pa.Schema) -> str:
    return schema_fingerprint(canonical_schema_text(schema))


@dataclass(frozen=True)
class SegmentContents:
    """What the hub read from a complete staging file's Parquet footer, or why it could not read one."""

    row_count: int
    schema_fingerprint: str
    schema_text: str = ""  # the canonical text fingerprinted, quoted in a refusal
    unreadable: str = ""  # the reader's complaint when the file is not Parquet (or a damaged one)
    columns: int = 0  # top-level columns, the lineage column _site among them if the file has one
    decoded_bytes: int = 0  # what its rows take once decoded (hub.segment_size), or past the limit when it was

    @classmethod
    def of(cls, row_count: int, schema: pa.Schema, decoded_bytes: int = 0) -> SegmentContents:
        text = canonical_schema_text(schema)
        return cls(row_count, schema_fingerprint(text), text, columns=len(schema), decoded_bytes=decoded_bytes)

    @classmethod
    def not_parquet(cls, complaint: str) -> SegmentContents:
        return cls(0, "", unreadable=complaint.strip() or "unreadable")


def _refusal(manifest: Manifest, message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=ErrorCode.MANIFEST_MISMATCH, op="checking the segment file",
                               subject=str(manifest.segment), hint=REFUSED_HINT)


def contents_problem(manifest: Manifest, contents: SegmentContents) -> RemoteProtocolError | None:
    """None when the file is what ``manifest`` says; else the 422 to answer (the first difference found)."""
    if contents.unreadable:
        return _refusal(manifest, f"the segment file is not a readable Parquet file: {contents.unreadable[:200]}")
    if contents.row_count > MAX_SEGMENT_ROWS or contents.columns > MAX_COLUMNS + 1:
        return RemoteProtocolError(
            f"the segment holds {contents.row_count} rows in {contents.columns} columns; the hub merges at most "
            f"{MAX_SEGMENT_ROWS} rows and {MAX_COLUMNS} columns (plus _site) per segment",
            code=ErrorCode.TOO_LARGE, op="checking the segment file", subject=str(manifest.segment),
            hint="seal smaller segments (Harbour's edge seals at those limits) or split the table")
    if contents.decoded_bytes > MAX_SEGMENT_DECODED_BYTES:
        return RemoteProtocolError(
            f"the segment's rows take more than {format_size(MAX_SEGMENT_DECODED_BYTES)} once decoded "
            f"({format_size(contents.decoded_bytes)} counted from its footer and dictionaries); the hub merges at "
            f"most that per segment", code=ErrorCode.TOO_LARGE, op="checking the segment file",
            subject=str(manifest.segment), hint="seal smaller segments (the edge's --seal-size)")
    if contents.row_count != manifest.row_count:
        return _refusal(manifest, f"the manifest says {manifest.row_count} rows, the file holds {contents.row_count}")
    if contents.schema_fingerprint != manifest.schema_fingerprint:
        text = contents.schema_text
        if len(text) > SCHEMA_TEXT_IN_MESSAGES:
            text = text[:SCHEMA_TEXT_IN_MESSAGES] + "..."
        return _refusal(manifest, f"the manifest's schema fingerprint {manifest.schema_fingerprint[:16]}... is not "
                                  f"the file's {contents.schema_fingerprint[:16]}... (sha256 of {text!r})")
    return None


def refused_again(manifest: Manifest, reason: str) -> RemoteProtocolError:
    """Creation with exactly a manifest the hub refused before: the same answer, before any byte is sent."""
    return _refusal(manifest, f"this manifest was refused before and is refused again: {reason}")
