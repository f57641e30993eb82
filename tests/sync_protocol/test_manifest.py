from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import GENESIS_DIGEST, MAX_METADATA_BYTES
from sync_protocol.manifest import (
    FIELD_KEYS,
    Manifest,
    decode_upload_metadata,
    encode_upload_metadata,
    schema_fingerprint,
    sha256_hex,
)

digests = st.text("0123456789abcdef", min_size=64, max_size=64)


@st.composite
def manifests(draw):
    seq = draw(st.integers(1, 2**63 - 1))
    return Manifest(
        SegmentId.of(draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)),
                     draw(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).filter(
                         lambda t: not t.startswith(("sqlite_", "pg_", "duckdb_")))), seq),
        row_count=draw(st.integers(0, 2**40)),
        byte_size=draw(st.integers(1, 512 * 1024 * 1024)),
        sha256=draw(digests),
        schema_fingerprint=draw(digests),
        prev_sha256=GENESIS_DIGEST if seq == 1 else draw(digests.filter(lambda d: d != GENESIS_DIGEST)),
        priority=draw(st.integers(0, 9)),
        created_at_ms=draw(st.integers(0, 2**53)),
    )


def sample(**changes) -> Manifest:
    fields = dict(segment=SegmentId.of("ship-1", "telemetry", 2), row_count=10, byte_size=100,
                  sha256=sha256_hex(b"x"), schema_fingerprint=schema_fingerprint("a:int64"),
                  prev_sha256=sha256_hex(b"w"), priority=3, created_at_ms=1_700_000_000_000)
    fields.update(changes)
    return Manifest(**fields)


@given(manifests())
def test_manifest_round_trips_through_upload_metadata(manifest):
    header = manifest.to_upload_metadata()
    assert len(header) < MAX_METADATA_BYTES
    assert Manifest.from_upload_metadata(header) == manifest


def test_created_at_comes_from_the_clock_passed_in():
    manifest = Manifest.create(SegmentId.of("s", "t", 1), row_count=1, byte_size=1, sha256=sha256_hex(b""),
                               schema_fingerprint=sha256_hex(b""), prev_sha256=GENESIS_DIGEST, priority=0,
                               clock=lambda: 12.345)
    assert manifest.created_at_ms == 12345


@pytest.mark.parametrize("key", FIELD_KEYS)
def test_a_missing_field_is_named(key):
    fields = sample().fields()
    del fields[key]
    with pytest.raises(RemoteProtocolError, match=f"missing manifest field.*{key}") as caught:
        Manifest.from_fields(fields)
    assert caught.value.code is ErrorCode.BAD_MANIFEST


def test_an_unknown_field_is_named():
    with pytest.raises(RemoteProtocolError, match="unknown manifest field.*filename"):
        Manifest.from_fields({**sample().fields(), "filename": "x.parquet"})


@pytest.mark.parametrize("key,value", [
    ("seq", "-1"), ("seq", "0"), ("row-count", "ten"), ("byte-size", "0"), ("sha256", "ABC"),
    ("prev-sha256", GENESIS_DIGEST), ("priority", "10"), ("harbour-manifest", "2"), ("site", "Ship"),
    ("table", "1t"), ("created-at-ms", "1e9"), ("byte-size", "9" * 30),
])
def test_bad_values_are_rejected(key, value):
    with pytest.raises(RemoteProtocolError):
        Manifest.from_fields({**sample().fields(), key: value})


def test_first_segment_must_start_the_chain():
    with pytest.raises(RemoteProtocolError, match="genesis"):
        sample(segment=SegmentId.of("ship-1", "telemetry", 1))


@pytest.mark.parametrize("header", [
    "", ",", "site", "site c2hpcA==,site c2hpcA==", "si te c2hpcA==", "site !!!", "site c2hpcA",
    "Site c2hpcA==", "x" * (MAX_METADATA_BYTES + 1), "site " + base64.b64encode(b"\xff\xfe").decode(),
    "site " + base64.b64encode(b"a" * 300).decode(), "site c2hpcA== extra",
])
def test_malformed_metadata_headers_are_remote_protocol_errors(header):
    with pytest.raises(RemoteProtocolError):
        Manifest.from_upload_metadata(header)


def test_key_without_value_decodes_to_empty_string():
    assert decode_upload_metadata("is-final,site c2hpcA==") == {"is-final": "", "site": "ship"}
    assert decode_upload_metadata(encode_upload_metadata({"a": "b"})) == {"a": "b"}


@pytest.mark.guarantee("G6")
@given(st.text(max_size=600))
def test_fuzzed_metadata_never_escapes_as_another_exception(header):
    with contextlib.suppress(RemoteProtocolError):
        Manifest.from_upload_metadata(header)


@pytest.mark.guarantee("G6", "G8")
@given(manifests(), st.data())
def test_a_header_damaged_in_transit_is_refused_never_read_as_another_manifest(manifest, data):
    """A flipped byte anywhere in the header (a plain-HTTP link): refused, or decoded to the very manifest that
    was sent -- never to another one (a damaged prev-sha256 committed would break the chain for good)."""
    header = manifest.to_upload_metadata()
    position = data.draw(st.integers(0, len(header) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    mutated = header[:position] + replacement + header[position + 1:]
    try:
        decoded = Manifest.from_upload_metadata(mutated)
    except RemoteProtocolError:
        return
    assert decoded == manifest


def test_a_damaged_field_is_refused_as_metadata_damaged_and_retried():
    fields = decode_upload_metadata(sample().to_upload_metadata())
    fields["prev-sha256"] = sha256_hex(b"v")  # still a valid digest: only the integrity field tells
    with pytest.raises(RemoteProtocolError) as refused:
        Manifest.from_upload_metadata(encode_upload_metadata(fields))
    assert refused.value.code is ErrorCode.METADATA_DAMAGED and refused.value.code.status == 460
    assert refused.value.code.value.action.name == "RETRY"


def test_a_manifest_without_its_integrity_field_is_taken_as_any_tus_client_sends_it():
    fields = {key: value for key, value in decode_upload_metadata(sample().to_upload_metadata()).items()
              if key in FIELD_KEYS}
    assert Manifest.from_upload_metadata(encode_upload_metadata(fields)) == sample()
