from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.limits import MAX_CHUNK_BYTES, MAX_SEGMENT_BYTES
from sync_protocol.tus import (
    check_tus_resumable,
    checksum_of,
    format_expires,
    options_headers,
    parse_checksum,
    parse_content_length,
    parse_length,
    parse_offset,
)


def test_checksum_header_round_trips():
    checksum = checksum_of(b"hello", "sha256")
    parsed = parse_checksum(checksum.header())
    assert parsed == checksum and parsed.matches(b"hello") and not parsed.matches(b"hellO")
    assert parse_checksum(None) is None


@pytest.mark.parametrize("header", ["md5 XUFAKrxLKna5cZ2REBfFkg==", "sha1", "sha1 !!", "sha1 aGVsbG8=", "sha1  x"])
def test_bad_checksum_headers(header):
    with pytest.raises(RemoteProtocolError) as caught:
        parse_checksum(header)
    assert caught.value.status == 400


@pytest.mark.parametrize("value", [None, "", "-1", "1.5", " ", "0x10", "1" * 30, "１"])
def test_bad_offsets(value):
    with pytest.raises(RemoteProtocolError):
        parse_offset(value)


def test_lengths_and_their_limits():
    assert parse_length("10") == 10
    with pytest.raises(RemoteProtocolError) as caught:
        parse_length(str(MAX_SEGMENT_BYTES + 1))
    assert caught.value.code is ErrorCode.TOO_LARGE and caught.value.status == 413
    with pytest.raises(RemoteProtocolError):
        parse_length("0")
    # tus 1.0.0: a PATCH may carry every remaining byte of the upload; the receiver checks it against those.
    assert parse_content_length(str(MAX_CHUNK_BYTES + 1)) == MAX_CHUNK_BYTES + 1
    assert parse_content_length(str(MAX_SEGMENT_BYTES)) == MAX_SEGMENT_BYTES
    with pytest.raises(RemoteProtocolError):
        parse_content_length(None)


def test_tus_resumable_must_be_1_0_0():
    check_tus_resumable("1.0.0")
    for value in (None, "0.2.2", "1.0"):
        with pytest.raises(RemoteProtocolError) as caught:
            check_tus_resumable(value)
        assert caught.value.status == 412


def test_options_advertise_extensions_and_limits():
    headers = options_headers()
    assert headers["Tus-Extension"] == "creation,checksum,termination,expiration"
    assert "sha1" in headers["Tus-Checksum-Algorithm"] and headers["Tus-Max-Size"] == str(MAX_SEGMENT_BYTES)


def test_expires_is_an_http_date():
    assert format_expires(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


@pytest.mark.guarantee("G6")
@given(st.text(max_size=100))
def test_fuzzed_headers_only_raise_remote_protocol_errors(text):
    for parse in (parse_offset, parse_length, parse_content_length, parse_checksum, check_tus_resumable):
        with contextlib.suppress(RemoteProtocolError):
            parse(text)


def test_expires_is_clamped_to_what_an_http_date_can_say():
    assert format_expires(1e15).endswith("9999 23:59:59 GMT")
    assert format_expires(-5) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_a_header_that_may_appear_once_is_refused_when_repeated():
    from sync_protocol.tus import single_header

    assert single_header("Upload-Offset", []) is None and single_header("Upload-Offset", ["5"]) == "5"
    with pytest.raises(RemoteProtocolError, match="appears 2 times") as error:
        single_header("Upload-Offset", ["0", "4096"])
    assert error.value.status == 400


@pytest.mark.parametrize(("value", "refused"), [("100-continue", False), (" 100-Continue ", False), ("", True),
                                                 ("1\udcff", True), ("100-continue, x", True)])
def test_only_100_continue_is_an_expectation_met(value, refused):
    from sync_protocol.tus import expect_refusal

    body = expect_refusal(value)
    assert (body is not None) == refused
    if body is not None:
        assert b"100-continue" in body and (not value or value.encode("utf-8", "surrogateescape") not in body)
