from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.errors import (
    ErrorCode,
    PeerAction,
    RemoteProtocolError,
    decode_error_body,
)


def test_codes_are_unique_and_round_trip_through_the_body():
    assert len({code.slug for code in ErrorCode}) == len(ErrorCode)
    for code in ErrorCode:
        error = RemoteProtocolError("what went wrong", code=code, op="patching", subject="x", hint="do this")
        body = json.loads(error.to_body())
        assert set(body) == {"error", "code", "hint"} and body["code"] == code.slug
        decoded = decode_error_body(code.status, error.to_body())
        assert decoded.code is code and decoded.action is code.action and "what went wrong" in decoded.message


def test_message_says_what_on_what_and_what_to_do():
    error = RemoteProtocolError("offset 3 is not 5", code=ErrorCode.OFFSET_MISMATCH, op="patching",
                                subject="/v1/sync/uploads/a.b.1", hint="HEAD and continue")
    assert str(error) == "offset 3 is not 5 (while patching /v1/sync/uploads/a.b.1) -- HEAD and continue"


def test_garbled_bodies_still_decode_by_status():
    assert decode_error_body(503, b"<html>busy</html>").action is PeerAction.RETRY
    assert decode_error_body(403, b"[1,2]").action is PeerAction.PARK
    assert decode_error_body(500, b'{"error": 5, "code": "nope"}').code is None


@given(st.integers(100, 599), st.binary(max_size=300))
def test_any_body_decodes_without_raising(status, body):
    decoded = decode_error_body(status, body)
    assert decoded.status == status and isinstance(decoded.message, str)


def test_answers_without_a_code_fall_back_on_what_tus_says_the_status_means():
    # A HEAD answer has no body: a 404 there means "create the upload again", never "park".
    assert decode_error_body(404, b"").action is PeerAction.RESTART_UPLOAD
    assert decode_error_body(410, b"").action is PeerAction.RESTART_UPLOAD
    assert decode_error_body(409, b"garbled").action is PeerAction.RESYNC
    assert decode_error_body(460, b'{"error": "x", "code": "checksum-mismatcX"}').action is PeerAction.RESEND_CHUNK
    assert decode_error_body(401, b"").action is PeerAction.PARK
    assert decode_error_body(408, b"Request Timeout").action is PeerAction.RETRY  # a proxy's, or an older hub's
