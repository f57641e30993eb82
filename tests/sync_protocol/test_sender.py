from __future__ import annotations

import pytest

from sync_protocol.chunking import ChunkSizer
from sync_protocol.errors import ErrorBody, ErrorCode, LocalProtocolError, RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import (
    GENESIS_DIGEST,
    MALFORMED_ANSWERS_BEFORE_PARKING,
    MAX_SEGMENT_DIGEST_FAILURES,
    PERMANENT_ANSWERS_BEFORE_PARKING,
)
from sync_protocol.manifest import Manifest, sha256_hex
from sync_protocol.sender import (
    SENDER_TRANSITIONS,
    CreateUpload,
    ProbeOffset,
    SendChunk,
    TxState,
    UploadSender,
)

DATA = bytes(1000)
MANIFEST = Manifest(SegmentId.of("ship-1", "sales", 1), 5, len(DATA), sha256_hex(DATA), sha256_hex(b"s"),
                    GENESIS_DIGEST, 2, 0)


def sender(**kwargs) -> UploadSender:
    return UploadSender(MANIFEST, sizer=ChunkSizer(size=100, minimum=10, maximum=400), **kwargs)


def error(code: ErrorCode) -> ErrorBody:
    return ErrorBody(code.status, "x", code, "")


def test_every_state_has_a_row_in_the_table():
    assert set(SENDER_TRANSITIONS) == set(TxState)


def test_happy_path():
    tx = sender()
    assert isinstance(tx.next_request(), CreateUpload)
    tx.on_created(0, committed=False)
    offset = 0
    while True:
        request = tx.next_request()
        assert isinstance(request, SendChunk) and request.offset == offset
        offset += request.length
        tx.on_chunk_accepted(offset, committed=offset == len(DATA), seconds=0.1)
        if tx.done:
            break
    assert tx.state is TxState.ACKED and tx.next_request() is None


def test_a_resumed_sender_asks_first_and_a_cut_makes_it_ask_again_with_smaller_chunks():
    tx = sender(resumed=True)
    assert isinstance(tx.next_request(), ProbeOffset)
    tx.on_offset(300, committed=False)
    chunk = tx.next_request()
    assert chunk == SendChunk(300, 100)
    tx.on_connection_lost()
    assert tx.state is TxState.PROBING and tx.sizer.size == 50


@pytest.mark.guarantee("G8")
def test_only_the_hubs_commit_header_makes_it_acked():
    tx = sender()
    tx.next_request()
    tx.on_created(len(DATA), committed=False)  # every byte, but no commit: ask again
    assert tx.state is TxState.PROBING
    tx.next_request()
    tx.on_offset(len(DATA), committed=True)
    assert tx.state is TxState.ACKED


@pytest.mark.parametrize("code,state", [
    (ErrorCode.OFFSET_MISMATCH, TxState.PROBING),
    (ErrorCode.CHECKSUM_MISMATCH, TxState.SENDING),
    (ErrorCode.UPLOAD_NOT_FOUND, TxState.CREATING),
    (ErrorCode.INTERNAL, TxState.PROBING),
    (ErrorCode.RATE_LIMITED, TxState.PROBING),
    (ErrorCode.ALREADY_COMMITTED, TxState.ACKED),
    (ErrorCode.FORBIDDEN, TxState.PARKED),
    (ErrorCode.SCHEMA_QUARANTINED, TxState.PARKED),
])
def test_each_error_code_leads_where_its_action_says(code, state):
    tx = sender()
    tx.next_request()
    tx.on_created(0, committed=False)
    tx.next_request()
    tx.on_error(error(code))
    for _ in range(PERMANENT_ANSWERS_BEFORE_PARKING - 1):  # a permanent answer must repeat before parking
        if state is not TxState.PARKED:
            break
        assert tx.state is not TxState.PARKED
        tx.next_request()
        tx.on_error(error(code))
    assert tx.state is state


def test_one_permanent_looking_answer_is_retried_and_only_progress_clears_it():
    tx = sender()
    tx.next_request()
    tx.on_error(error(ErrorCode.UNAUTHORIZED))  # e.g. a token damaged on a bit-flipping link
    assert tx.state is TxState.CREATING and tx.permanent_strikes == 1
    tx.next_request()
    tx.on_created(0, committed=False)
    assert tx.permanent_strikes == 1  # a successful POST or HEAD is not progress
    tx.next_request()
    tx.on_chunk_accepted(100, committed=False, seconds=0.1)
    assert tx.permanent_strikes == 0


@pytest.mark.guarantee("G7")
def test_a_permanent_answer_to_every_patch_parks_even_with_successful_heads_between():
    tx = sender()
    tx.next_request()
    tx.on_created(0, committed=False)
    for _ in range(PERMANENT_ANSWERS_BEFORE_PARKING):
        tx.next_request()
        tx.on_error(error(ErrorCode.FORBIDDEN))
        if tx.state is TxState.PROBING:
            tx.next_request()
            tx.on_offset(0, committed=False)
    assert tx.state is TxState.PARKED


def test_already_committed_without_the_commit_header_is_not_an_ack():
    tx = sender()
    tx.next_request()
    body = RemoteProtocolError("done", code=ErrorCode.ALREADY_COMMITTED).to_body()
    tx.on_answer(409, {}, body, 0.1)
    assert tx.state is TxState.PROBING
    tx.next_request()
    tx.on_answer(200, {"Upload-Offset": str(len(DATA)), "Harbour-Commit": "committed"}, b"", 0.1)
    assert tx.state is TxState.ACKED


def test_unknown_4xx_parks_unknown_5xx_retries():
    tx = sender()
    for _ in range(MALFORMED_ANSWERS_BEFORE_PARKING):
        tx.next_request()
        tx.on_error(ErrorBody(418, "teapot", None, ""))
    assert tx.state is TxState.PARKED and "418" in tx.park_reason
    tx = sender()
    tx.next_request()
    tx.on_error(ErrorBody(502, "bad gateway", None, ""))
    assert tx.state is TxState.CREATING


def test_repeated_segment_digest_failures_park():
    tx = sender()
    for _ in range(MAX_SEGMENT_DIGEST_FAILURES):
        tx.next_request()
        tx.on_error(error(ErrorCode.SEGMENT_DIGEST_MISMATCH))
    assert tx.state is TxState.PARKED


def test_an_answer_that_contradicts_the_chunk_resyncs():
    tx = sender()
    tx.next_request()
    tx.on_created(0, committed=False)
    tx.next_request()
    tx.on_chunk_accepted(55, committed=False, seconds=1)
    assert tx.state is TxState.PROBING


def test_misuse_is_a_local_protocol_error():
    tx = sender()
    with pytest.raises(LocalProtocolError):
        tx.on_offset(0, committed=False)
    tx.next_request()
    with pytest.raises(LocalProtocolError):
        tx.next_request()


@pytest.mark.parametrize("answer", [
    ErrorBody(400, "Invalid char in url path", None, ""),  # the hub's HTTP parser: a byte flipped in the path
    ErrorBody(404, "Not Found: POST /v1/sync/upmoads", ErrorCode.NO_SUCH_PATH, ""),  # flipped to another letter
    error(ErrorCode.BAD_REQUEST),
])
def test_a_request_the_link_damaged_is_retried_longer_before_parking(answer):
    """A request the hub could not read is the link's doing unless it repeats: the segment (maybe a ship's
    alarms) must not wait for an operator because a corrupting link damaged three requests in a row."""
    tx = sender()
    for _ in range(MALFORMED_ANSWERS_BEFORE_PARKING - 1):
        tx.next_request()
        tx.on_error(answer)
    assert tx.state is not TxState.PARKED and tx.permanent_strikes == MALFORMED_ANSWERS_BEFORE_PARKING - 1
    tx.next_request()
    tx.on_error(answer)
    assert tx.state is TxState.PARKED  # a bug repeats: it still reaches the operator
    assert MALFORMED_ANSWERS_BEFORE_PARKING > PERMANENT_ANSWERS_BEFORE_PARKING


def test_a_refusal_of_the_segment_itself_still_parks_after_a_few():
    tx = sender()
    for _ in range(PERMANENT_ANSWERS_BEFORE_PARKING):
        tx.next_request()
        tx.on_error(error(ErrorCode.SEGMENT_CONFLICT))
    assert tx.state is TxState.PARKED
