from __future__ import annotations

import pytest

from sync_protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import (
    GENESIS_DIGEST,
    MAX_ANNOUNCED_BYTES_PER_SITE,
    MAX_OPEN_UPLOADS_PER_SITE,
    UPLOAD_EXPIRY_SECONDS,
)
from sync_protocol.manifest import Manifest, sha256_hex
from sync_protocol.receiver import (
    RECEIVER_TRANSITIONS,
    CheckContents,
    CheckManifest,
    CommitSegment,
    DiscardUpload,
    DropChunk,
    ForgetUpload,
    KeepChunk,
    KeepSlice,
    KeepUpload,
    ResetStaging,
    Respond,
    RxState,
    SiteUploads,
    StoreChunk,
    TailCheck,
    UploadReceiver,
    VerifySegment,
)
from sync_protocol.segment_contents import SegmentContents
from sync_protocol.tus import COMMITTED, HARBOUR_COMMIT, UPLOAD_OFFSET, TailClaim, checksum_of

DATA = b"0123456789" * 10
SEGMENT = SegmentId.of("ship-1", "telemetry", 1)


def manifest(data: bytes = DATA) -> Manifest:
    return Manifest(SEGMENT, 10, len(data), sha256_hex(data), sha256_hex(b"s"), GENESIS_DIGEST, 1, 0)


TRUE_CONTENTS = SegmentContents(10, sha256_hex(b"s"))
"""What the hub reads from the footer of a file that ``manifest()`` describes truly."""


def create(receiver: UploadReceiver, m: Manifest, length: int, now: float, refused: str | None = None):
    """POST as the hub performs it: the receiver's answer, or its decision once the ledger had its say."""
    decision = receiver.create(m, length, now)
    if isinstance(decision, CheckManifest):
        decision = receiver.manifest_checked(decision, refused, now)
    return decision


def created(slice_bytes: int | None = None) -> UploadReceiver:
    receiver = UploadReceiver(SEGMENT) if slice_bytes is None else UploadReceiver(SEGMENT, slice_bytes)
    decision = create(receiver, manifest(), len(DATA), now=0)
    assert isinstance(decision, ResetStaging) and decision.answer.status == 201
    assert decision.answer.headers["Location"] == "/v1/sync/uploads/ship-1.telemetry.1"
    return receiver


def send(receiver: UploadReceiver, offset: int, data: bytes, *, damaged=False, cut=None):
    plan = receiver.begin_chunk(offset, len(data), checksum_of(data), now=1)
    assert isinstance(plan, StoreChunk)
    received = data if cut is None else data[:cut]
    ok = None if cut is not None else (not damaged)
    return receiver.end_chunk(plan, len(received), ok, now=1)


def test_every_state_has_a_row_in_the_table():
    assert set(RECEIVER_TRANSITIONS) == set(RxState)


def test_happy_path_ends_committed_and_says_so():
    receiver = created()
    first = send(receiver, 0, DATA[:60])
    assert isinstance(first, KeepChunk) and not first.verify and first.answer.headers[UPLOAD_OFFSET] == "60"
    last = send(receiver, 60, DATA[60:])
    assert isinstance(last, KeepChunk) and last.verify
    assert isinstance(receiver.segment_digest(sha256_hex(DATA)), CheckContents)
    assert receiver.state is RxState.CHECKING
    with pytest.raises(LocalProtocolError):
        receiver.committed()  # the footer must be checked first
    assert isinstance(receiver.contents_read(TRUE_CONTENTS), CommitSegment)
    answer = receiver.committed()
    assert answer.status == 204 and answer.headers[HARBOUR_COMMIT] == COMMITTED
    assert receiver.probe(now=2).headers[HARBOUR_COMMIT] == COMMITTED


def test_offset_mismatch_is_409_with_the_true_offset():
    receiver = created()
    send(receiver, 0, DATA[:30])
    with pytest.raises(RemoteProtocolError) as caught:
        receiver.begin_chunk(10, 10, None, now=1)
    assert caught.value.code is ErrorCode.OFFSET_MISMATCH and caught.value.status == 409
    assert caught.value.headers[UPLOAD_OFFSET] == "30"


@pytest.mark.guarantee("G4")
def test_damaged_chunk_is_460_and_the_offset_stays():
    receiver = created()
    outcome = send(receiver, 0, DATA[:30], damaged=True)
    assert isinstance(outcome, DropChunk) and outcome.offset == 0
    assert outcome.error.status == 460 and outcome.error.code is ErrorCode.CHECKSUM_MISMATCH
    assert receiver.offset == 0


@pytest.mark.guarantee("G3")
def test_a_cut_chunk_keeps_what_arrived_as_an_unverified_tail():
    receiver = created()
    outcome = send(receiver, 0, DATA[:30], cut=12)
    assert isinstance(outcome, KeepChunk) and outcome.new_offset == 12 == receiver.offset
    assert receiver.verified == 0
    assert receiver.probe(now=1).headers["Harbour-Verified-Offset"] == "0"
    nothing = send(receiver, 12, DATA[12:30], cut=0)
    assert isinstance(nothing, DropChunk) and receiver.offset == 12


def test_a_tail_the_sender_vouches_for_becomes_verified():
    receiver = created()
    send(receiver, 0, DATA[:30], cut=12)
    chunk = DATA[12:40]
    plan = receiver.begin_chunk(12, len(chunk), checksum_of(chunk), now=1, tail=TailClaim(0, sha256_hex(DATA[:12])))
    assert plan.tail_check == TailCheck(0, 12, sha256_hex(DATA[:12]))
    assert receiver.tail_checked(plan, matches=True) is None
    outcome = receiver.end_chunk(plan, len(chunk), True, now=1)
    assert isinstance(outcome, KeepChunk) and receiver.verified == receiver.offset == 40


@pytest.mark.guarantee("G3", "G4")
def test_a_damaged_tail_is_dropped_and_the_sender_resumes_at_the_verified_offset():
    receiver = created()
    send(receiver, 0, DATA[:20])
    send(receiver, 20, DATA[20:50], cut=10)  # tail [20, 30)
    plan = receiver.begin_chunk(30, 5, None, now=1, tail=TailClaim(20, sha256_hex(b"not what the hub has")))
    dropped = receiver.tail_checked(plan, matches=False)
    assert isinstance(dropped, DropChunk) and dropped.offset == 20 == receiver.offset
    assert dropped.error.status == 409 and dropped.error.headers[UPLOAD_OFFSET] == "20"


def test_a_patch_behind_the_offset_is_refused_even_at_the_verified_offset():
    receiver = created()
    send(receiver, 0, DATA[:20])
    send(receiver, 20, DATA[20:50], cut=10)
    for offset in (20, 5):
        with pytest.raises(RemoteProtocolError) as caught:
            receiver.begin_chunk(offset, 10, None, now=1)
        assert caught.value.status == 409 and receiver.offset == 30


def test_after_a_restart_every_kept_byte_is_unverified():
    receiver = UploadReceiver.restore(SEGMENT, staged=manifest(), durable_offset=37, expires_at=10)
    assert receiver.verified == 0 and receiver.probe(now=1).headers["Harbour-Verified-Offset"] == "0"


def test_chunk_past_upload_length_is_refused():
    receiver = created()
    with pytest.raises(RemoteProtocolError, match="runs past Upload-Length"):
        receiver.begin_chunk(0, len(DATA) + 1, None, now=1)


@pytest.mark.guarantee("G4")
def test_digest_mismatch_discards_the_upload():
    receiver = created()
    send(receiver, 0, DATA)
    outcome = receiver.segment_digest(sha256_hex(b"other"))
    assert isinstance(outcome, DiscardUpload) and outcome.error.code is ErrorCode.SEGMENT_DIGEST_MISMATCH
    assert receiver.state is RxState.ABSENT
    with pytest.raises(RemoteProtocolError) as caught:
        receiver.probe(now=2)
    assert caught.value.status == 404


def test_creation_is_idempotent_and_a_new_manifest_replaces_an_uncommitted_upload():
    receiver = created()
    send(receiver, 0, DATA[:40])
    again = create(receiver, manifest(), len(DATA), now=2)
    assert isinstance(again, KeepUpload) and again.answer.headers[UPLOAD_OFFSET] == "40"
    assert receiver.expires_at == 2 + UPLOAD_EXPIRY_SECONDS  # the record to persist carries the new expiry
    other = DATA[::-1]
    replaced = create(receiver, manifest(other), len(other), now=3)
    assert isinstance(replaced, ResetStaging) and receiver.offset == 0


@pytest.mark.guarantee("G2")
def test_committed_segment_answers_idempotently_and_refuses_a_different_digest():
    receiver = UploadReceiver.restore(SEGMENT, committed=manifest())
    answer = receiver.create(manifest(), len(DATA), now=0)
    assert isinstance(answer, Respond) and answer.headers[HARBOUR_COMMIT] == COMMITTED
    replay = receiver.begin_chunk(len(DATA), 0, None, now=0)
    assert isinstance(replay, Respond) and replay.status == 204
    with pytest.raises(RemoteProtocolError) as caught:
        receiver.create(manifest(DATA[::-1]), len(DATA), now=0)
    assert caught.value.code is ErrorCode.SEGMENT_CONFLICT
    with pytest.raises(RemoteProtocolError) as caught:
        receiver.terminate()
    assert caught.value.code is ErrorCode.ALREADY_COMMITTED


def test_upload_length_must_match_the_manifest():
    with pytest.raises(RemoteProtocolError, match="Upload-Length"):
        create(UploadReceiver(SEGMENT), manifest(), len(DATA) + 1, now=0)


def test_expired_upload_is_gone_and_can_be_created_again():
    receiver = created()
    send(receiver, 0, DATA[:10])
    later = 1 + UPLOAD_EXPIRY_SECONDS
    assert receiver.expired(later)
    with pytest.raises(RemoteProtocolError) as caught:
        receiver.probe(later)
    assert caught.value.status == 410
    assert isinstance(create(receiver, manifest(), len(DATA), later), ResetStaging)


def test_the_sweeper_forgets_only_an_upload_that_really_expired():
    receiver = created()
    send(receiver, 0, DATA[:10])
    assert receiver.sweep(UPLOAD_EXPIRY_SECONDS) is None and receiver.state is RxState.RECEIVING
    assert isinstance(receiver.sweep(1 + UPLOAD_EXPIRY_SECONDS), ForgetUpload)
    assert receiver.state is RxState.ABSENT and receiver.settled
    assert receiver.sweep(2 * UPLOAD_EXPIRY_SECONDS) is None  # gone already: nothing more to drop
    committed = UploadReceiver.restore(SEGMENT, committed=manifest())
    assert committed.sweep(10 * UPLOAD_EXPIRY_SECONDS) is None and committed.settled


def test_terminate_then_404():
    receiver = created()
    forget = receiver.terminate()
    assert isinstance(forget, ForgetUpload) and forget.answer.status == 204 and receiver.settled
    with pytest.raises(RemoteProtocolError) as caught:
        receiver.begin_chunk(0, 1, None, now=1)
    assert caught.value.status == 404


def test_restore_resumes_at_the_durable_offset_or_verifies_a_complete_upload():
    resumed = UploadReceiver.restore(SEGMENT, staged=manifest(), durable_offset=37, expires_at=10)
    assert resumed.state is RxState.RECEIVING and resumed.probe(now=1).headers[UPLOAD_OFFSET] == "37"
    complete = UploadReceiver.restore(SEGMENT, staged=manifest(), durable_offset=len(DATA), expires_at=10)
    assert complete.state is RxState.VERIFYING
    assert isinstance(complete.after_restore(), VerifySegment) and resumed.after_restore() is None
    with pytest.raises(LocalProtocolError):
        complete.probe(now=1)  # the hub must verify and commit before serving it
    with pytest.raises(LocalProtocolError):
        UploadReceiver.restore(SEGMENT, staged=manifest(), durable_offset=len(DATA) + 1)


def test_illegal_moves_are_local_protocol_errors():
    with pytest.raises(LocalProtocolError):
        UploadReceiver(SEGMENT).committed()
    with pytest.raises(LocalProtocolError):
        UploadReceiver(SEGMENT).segment_digest("0" * 64)


def test_a_refused_commit_discards_the_upload():
    receiver = created()
    send(receiver, 0, DATA)
    assert isinstance(receiver.segment_digest(sha256_hex(DATA)), CheckContents)
    assert isinstance(receiver.contents_read(TRUE_CONTENTS), CommitSegment)
    conflict = RemoteProtocolError("raced", code=ErrorCode.SEGMENT_CONFLICT)
    outcome = receiver.commit_refused(conflict)
    assert isinstance(outcome, DiscardUpload) and outcome.error is conflict
    assert receiver.state is RxState.ABSENT


def test_a_tail_claim_from_another_start_is_refused_without_dropping_anything():
    # e.g. the hub restarted (verified is 0 again) while the sender still believes it was 20
    receiver = UploadReceiver.restore(SEGMENT, staged=manifest(), durable_offset=30, expires_at=10)
    with pytest.raises(RemoteProtocolError) as caught:
        receiver.begin_chunk(30, 5, None, now=1, tail=TailClaim(20, sha256_hex(DATA[20:30])))
    assert caught.value.status == 409 and receiver.offset == 30
    assert caught.value.headers["Harbour-Verified-Offset"] == "0"


# -- the file must be what its manifest says ------------------------------------------------------------


@pytest.mark.parametrize("contents, words", [
    (SegmentContents(9, sha256_hex(b"s")), "the manifest says 10 rows, the file holds 9"),
    (SegmentContents(10, sha256_hex(b"t"), "a:int64"), "schema fingerprint"),
    (SegmentContents.not_parquet("Parquet magic bytes not found in footer"), "not a readable Parquet file"),
])
def test_a_manifest_that_lies_about_its_file_is_discarded_and_refused_again(contents, words):
    receiver = created()
    send(receiver, 0, DATA)
    assert isinstance(receiver.segment_digest(sha256_hex(DATA)), CheckContents)
    outcome = receiver.contents_read(contents)
    assert isinstance(outcome, DiscardUpload) and outcome.refuse_again == manifest()
    assert outcome.error.code is ErrorCode.MANIFEST_MISMATCH and outcome.error.status == 422
    assert words in outcome.error.message and receiver.state is RxState.ABSENT
    with pytest.raises(RemoteProtocolError) as caught:  # the same manifest again: refused before any byte
        create(receiver, manifest(), len(DATA), now=2, refused=outcome.error.message)
    assert caught.value.code is ErrorCode.MANIFEST_MISMATCH and words in caught.value.message
    other = manifest(DATA[:50])  # another manifest for the seq is taken
    assert isinstance(create(receiver, other, 50, now=2), ResetStaging)


# -- long chunks are made durable in slices --------------------------------------------------------------


def test_slices_of_a_long_chunk_count_as_kept_and_unverified_until_the_checksum():
    receiver = created(slice_bytes=30)
    plan = receiver.begin_chunk(0, 80, checksum_of(DATA[:80]), now=1)
    assert isinstance(plan, StoreChunk) and plan.slice_bytes == 30
    assert receiver.slice_stored(plan, 30) == KeepSlice(30)
    assert receiver.slice_stored(plan, 64) == KeepSlice(64)
    assert receiver.offset == 64 and receiver.verified == 0
    with pytest.raises(LocalProtocolError):
        receiver.slice_stored(plan, 64)  # slices only move forward
    with pytest.raises(LocalProtocolError):
        receiver.slice_stored(plan, 80)  # the last bytes are end_chunk's
    kept = receiver.end_chunk(plan, 80, True, now=1)
    assert isinstance(kept, KeepChunk) and kept.new_offset == 80 and receiver.verified == 80


def test_a_cut_after_slices_keeps_everything_that_arrived():
    receiver = created(slice_bytes=30)
    plan = receiver.begin_chunk(0, 80, checksum_of(DATA[:80]), now=1)
    receiver.slice_stored(plan, 30)
    kept = receiver.end_chunk(plan, 47, None, now=1)
    assert isinstance(kept, KeepChunk) and kept.new_offset == 47 and receiver.verified == 0
    with pytest.raises(LocalProtocolError):
        receiver.end_chunk(plan, 47, None, now=1)  # the chunk is over


def test_a_damaged_long_chunk_drops_its_slices_too():
    receiver = created(slice_bytes=30)
    plan = receiver.begin_chunk(0, 80, checksum_of(DATA[:80]), now=1)
    receiver.slice_stored(plan, 60)
    dropped = receiver.end_chunk(plan, 80, False, now=1)
    assert isinstance(dropped, DropChunk) and dropped.offset == 0 and dropped.lowered
    assert dropped.error is not None and dropped.error.code is ErrorCode.CHECKSUM_MISMATCH
    assert receiver.offset == 0 and dropped.error.headers[UPLOAD_OFFSET] == "0"
    short = receiver.begin_chunk(0, 10, checksum_of(DATA[:10]), now=1)
    assert not receiver.end_chunk(short, 10, False, now=1).lowered  # nothing was counted: nothing to lower


def test_an_empty_patch_answers_the_offset_and_stores_nothing():
    receiver = created()
    assert isinstance(send(receiver, 0, DATA[:30]), KeepChunk)
    answer = receiver.begin_chunk(30, 0, None, now=1)
    assert isinstance(answer, Respond) and answer.status == 204 and answer.headers[UPLOAD_OFFSET] == "30"


@pytest.mark.guarantee("G7")
def test_a_site_cannot_hold_more_unfinished_uploads_than_its_share():
    """Issue 16: 3,000 creations of 512 MiB uploads were all kept. Past either limit a new upload is refused
    with a retryable code; resuming one the site already holds is not a new upload and goes on."""
    full = SiteUploads(MAX_OPEN_UPLOADS_PER_SITE, 0)
    with pytest.raises(RemoteProtocolError) as refused:
        receiver = UploadReceiver(SEGMENT)
        receiver.manifest_checked(receiver.create(manifest(), len(DATA), 0), None, 0, full)
    assert refused.value.code is ErrorCode.RATE_LIMITED and refused.value.headers["Retry-After"]
    promised = SiteUploads(1, MAX_ANNOUNCED_BYTES_PER_SITE - len(DATA) + 1)
    with pytest.raises(RemoteProtocolError) as refused:
        receiver = UploadReceiver(SEGMENT)
        receiver.manifest_checked(receiver.create(manifest(), len(DATA), 0), None, 0, promised)
    assert refused.value.code is ErrorCode.DISK_FULL and refused.value.status == 507
    at_the_edge = SiteUploads(MAX_OPEN_UPLOADS_PER_SITE - 1, MAX_ANNOUNCED_BYTES_PER_SITE - len(DATA))
    receiver = UploadReceiver(SEGMENT)
    assert isinstance(receiver.manifest_checked(receiver.create(manifest(), len(DATA), 0), None, 0, at_the_edge),
                      ResetStaging)
    again = receiver.create(manifest(), len(DATA), 1)  # the same upload created again: resumes, whatever the counts
    assert isinstance(receiver.manifest_checked(again, None, 1, full), KeepUpload)
