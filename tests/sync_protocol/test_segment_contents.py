"""The check of a segment file against its manifest, and the one schema fingerprint both sides compute."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sync_protocol.errors import ErrorCode
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import GENESIS_DIGEST, MAX_COLUMNS, MAX_SEGMENT_ROWS
from sync_protocol.manifest import Manifest, sha256_hex
from sync_protocol.segment_contents import (
    SCHEMA_TEXT_IN_MESSAGES,
    SegmentContents,
    arrow_schema_fingerprint,
    canonical_schema_text,
    contents_problem,
    refused_again,
)

SCHEMA = pa.schema([("row_id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("tags", pa.list_(pa.string()))])


def manifest(rows: int = 10, schema: pa.Schema = SCHEMA) -> Manifest:
    return Manifest(SegmentId.of("ship-1", "telemetry", 1), rows, 100, sha256_hex(b"f"),
                    arrow_schema_fingerprint(schema), GENESIS_DIGEST, 1, 0)


def test_the_canonical_text_is_names_and_types_in_order():
    assert canonical_schema_text(SCHEMA) == "row_id:int64;ts:timestamp[us, tz=UTC];tags:list<item: string>"
    assert arrow_schema_fingerprint(SCHEMA) == sha256_hex(canonical_schema_text(SCHEMA).encode())
    swapped = pa.schema([SCHEMA.field(1), SCHEMA.field(0), SCHEMA.field(2)])
    assert arrow_schema_fingerprint(swapped) != arrow_schema_fingerprint(SCHEMA)


def test_the_edge_fingerprints_its_segments_the_same_way():
    from edge_node.schemas import fingerprint  # the edge seals with it; the hub checks with ours

    for schema in (SCHEMA, pa.schema([("a", pa.float64())]), pa.schema([("s", pa.struct([("x", pa.int64())]))])):
        assert fingerprint(schema) == arrow_schema_fingerprint(schema)


def test_a_true_manifest_has_no_problem():
    assert contents_problem(manifest(), SegmentContents.of(10, SCHEMA)) is None


@pytest.mark.parametrize("contents, words", [
    (SegmentContents.of(9, SCHEMA), "the manifest says 10 rows, the file holds 9"),
    (SegmentContents.of(10, pa.schema([("row_id", pa.int32())])), "'row_id:int32'"),
    (SegmentContents.not_parquet("Parquet magic bytes not found"), "not a readable Parquet file: Parquet magic"),
    (SegmentContents.not_parquet("  "), "not a readable Parquet file: unreadable"),
])
def test_a_lying_manifest_gets_a_coded_refusal_naming_both_sides(contents, words):
    problem = contents_problem(manifest(), contents)
    assert problem is not None and problem.code is ErrorCode.MANIFEST_MISMATCH and problem.status == 422
    assert words in problem.message and problem.hint and problem.subject == "ship-1/telemetry/1"


def test_a_wide_schema_is_quoted_within_bounds():
    wide = pa.schema([(f"column_{i}", pa.int64()) for i in range(200)])
    problem = contents_problem(manifest(), SegmentContents.of(10, wide))
    assert problem is not None and len(problem.message) < SCHEMA_TEXT_IN_MESSAGES + 200


def test_refused_again_repeats_the_reason():
    error = refused_again(manifest(), "the manifest says 10 rows, the file holds 9")
    assert error.code is ErrorCode.MANIFEST_MISMATCH and "refused again: the manifest says 10 rows" in error.message


def test_a_segment_too_long_or_too_wide_to_merge_is_refused_before_its_commit():
    """Issue 16: a 74 KB file of 20 M constant rows took 2.2 GB of the hub's memory at merge, a 10,000-column
    one minutes; the footer says so first, and the segment is refused (413, parked) instead of committed."""
    long = contents_problem(manifest(rows=MAX_SEGMENT_ROWS + 1), SegmentContents.of(MAX_SEGMENT_ROWS + 1, SCHEMA))
    assert long is not None and long.code is ErrorCode.TOO_LARGE and long.status == 413
    wide = pa.schema([(f"c{i}", pa.int64()) for i in range(MAX_COLUMNS + 2)])
    problem = contents_problem(manifest(schema=wide), SegmentContents.of(10, wide))
    assert problem is not None and problem.code is ErrorCode.TOO_LARGE
    assert f"{MAX_COLUMNS + 2} columns" in problem.message
    with_site = pa.schema([*[(f"c{i}", pa.int64()) for i in range(MAX_COLUMNS)], ("_site", pa.string())])
    assert contents_problem(manifest(schema=with_site), SegmentContents.of(10, with_site)) is None
    assert contents_problem(manifest(rows=MAX_SEGMENT_ROWS), SegmentContents.of(MAX_SEGMENT_ROWS, SCHEMA)) is None
