"""The contract of ``hub.upload_storage``: the real ledger and staging area and their in-memory twins pass the
same tests (as Litestream runs its ``ReplicaClient`` tests against ``file/`` and ``mock/``). The protocol
simulation drives the real upload service over the in-memory pair, so it is only as good as this contract."""

from __future__ import annotations

import hashlib

import pytest

from hub.memory import MemoryLedger, MemoryStaging
from hub.staging import StagingArea
from hub.upload_storage import UploadLedger, UploadStaging
from sync_protocol.errors import RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.receiver import SiteUploads

from .conftest import chain, make_segment, rows_table


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def storage(request, layout, clock):
    """(ledger, reopen): ``reopen()`` is the ledger a restarted hub finds."""
    if request.param == "memory":
        ledger = MemoryLedger()
        yield ledger, lambda: ledger  # every call was durable: the restarted hub finds the same records
        return
    from hub.layout import open_database
    from hub.ledger import SqliteLedger

    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    databases = [open_database(url, layout.database)]

    def reopen() -> SqliteLedger:
        databases[-1].close()
        databases.append(open_database(url, layout.database))
        return SqliteLedger(databases[-1], clock)

    yield SqliteLedger(databases[0], clock), reopen
    databases[-1].close()


@pytest.fixture
def ledger(storage) -> UploadLedger:
    return storage[0]


@pytest.fixture(params=["file", "memory"])
def staging(request, layout) -> UploadStaging:
    return StagingArea(layout) if request.param == "file" else MemoryStaging()


SEGMENT = SegmentId.of("ship-a", "telemetry", 1)


# -- UploadLedger ----------------------------------------------------------------------------------------


@pytest.mark.guarantee("G3")
def test_upload_records_are_durable_and_dropped(storage):
    ledger, reopen = storage
    segment = chain("ship-a", "telemetry", 1)[0]
    ledger.save_staged(segment.manifest, 123, 456.0)
    record = reopen().staged(segment.manifest.segment)
    assert (record.manifest, record.offset, record.expires_at) == (segment.manifest, 123, 456.0)
    ledger = reopen()
    ledger.save_staged(segment.manifest, 200, 500.0)  # saving again replaces the record
    assert [(r.manifest, r.offset) for r in ledger.all_staged()] == [(segment.manifest, 200)]
    ledger.drop_staged(segment.manifest.segment)
    ledger.drop_staged(segment.manifest.segment)  # gone already: fine
    assert reopen().all_staged() == [] and ledger.staged(segment.manifest.segment) is None


def test_a_sites_unfinished_uploads_are_counted_without_the_one_asked_about(ledger):
    ship_a = chain("ship-a", "telemetry", 3)
    for number, segment in enumerate(ship_a):
        ledger.save_staged(segment.manifest, 0, 100.0 if number < 2 else 10.0)  # the third has expired at 50
    ledger.save_staged(chain("ship-b", "telemetry", 1)[0].manifest, 0, 100.0)
    first, second = ship_a[0].manifest, ship_a[1].manifest
    assert ledger.site_uploads(first.segment, 50.0) == SiteUploads(1, second.byte_size)
    assert ledger.site_uploads(SegmentId.of("ship-a", "events", 1), 50.0) == SiteUploads(
        2, first.byte_size + second.byte_size)
    assert ledger.site_uploads(SegmentId.of("ship-c", "events", 1), 50.0) == SiteUploads(0, 0)


@pytest.mark.guarantee("G2")
def test_commit_is_exactly_once_and_drops_the_record(storage):
    ledger, reopen = storage
    segment = chain("ship-a", "telemetry", 1)[0]
    ledger.save_staged(segment.manifest, 0, 100.0)
    assert ledger.commit(segment.manifest, 1.0) is True
    assert ledger.commit(segment.manifest, 2.0) is False
    ledger = reopen()
    assert ledger.committed(segment.manifest.segment) == segment.manifest
    assert ledger.staged(segment.manifest.segment) is None
    other = make_segment("ship-a", "telemetry", 1, rows_table(7, 3))
    with pytest.raises(RemoteProtocolError) as conflict:
        ledger.commit(other.manifest, 3.0)
    assert conflict.value.code.slug == "segment-conflict"
    assert ledger.committed(segment.manifest.segment) == segment.manifest


@pytest.mark.guarantee("G8")
def test_the_chain_is_checked_on_both_sides(ledger):
    first, second, third = chain("ship-a", "telemetry", 3)
    ledger.commit(first.manifest, 1.0)
    ledger.commit(third.manifest, 1.0)
    spliced = make_segment("ship-a", "telemetry", 2, rows_table(0, 10), prev_sha256="cd" * 32)
    for check in (ledger.check_chain, lambda m: ledger.commit(m, 2.0)):
        with pytest.raises(RemoteProtocolError) as error:
            check(spliced.manifest)
        assert error.value.code.slug == "chain-conflict"
    ledger.check_chain(second.manifest)  # the real seq 2 fits between its neighbours
    assert ledger.committed(spliced.manifest.segment) is None
    assert ledger.commit(second.manifest, 3.0) is True


def test_a_refused_manifest_is_refused_again_until_its_seq_commits(storage):
    ledger, reopen = storage
    segment = chain("ship-a", "telemetry", 1)[0]
    liar = make_segment("ship-a", "telemetry", 1, rows_table(0, 4))
    ledger.save_staged(liar.manifest, liar.manifest.byte_size, 9.0)
    ledger.refuse(liar.manifest, "the file holds 3 rows", 1.0)
    ledger = reopen()
    assert ledger.staged(liar.manifest.segment) is None  # refusing drops the upload record with it
    assert ledger.refusal(liar.manifest) == "the file holds 3 rows"
    assert ledger.refusal(segment.manifest) is None  # another manifest for the seq is a new upload
    ledger.commit(segment.manifest, 2.0)
    assert ledger.refusal(liar.manifest) is None


# -- UploadStaging ---------------------------------------------------------------------------------------


def test_a_chunk_is_written_at_its_offset_and_kept_or_cut(staging):
    staging.reset(SEGMENT)
    assert staging.size(SEGMENT) == 0
    handle = staging.open_chunk(SEGMENT, 0)
    hasher = hashlib.sha1()
    staging.write(handle, b"hello ", hasher)
    staging.sync(handle)
    staging.write(handle, b"world", hasher)
    staging.finish_chunk(handle, keep_to=11)
    assert hasher.digest() == hashlib.sha1(b"hello world").digest()
    assert isinstance(handle.name, str) and handle.name
    # A dropped chunk's bytes are cut by the next chunk handle.
    handle = staging.open_chunk(SEGMENT, 11)
    staging.write(handle, b"garbage", None)
    staging.finish_chunk(handle, keep_to=None)
    staging.finish_chunk(staging.open_chunk(SEGMENT, 11), keep_to=11)
    assert staging.size(SEGMENT) == 11
    assert staging.sha256(SEGMENT) == hashlib.sha256(b"hello world").hexdigest()
    assert staging.sha256_range(SEGMENT, 6, 11) == hashlib.sha256(b"world").hexdigest()
    staging.truncate(SEGMENT, 5)
    assert staging.sha256(SEGMENT) == hashlib.sha256(b"hello").hexdigest()
    staging.reset(SEGMENT)  # a new manifest replaces the upload: empty again
    assert staging.size(SEGMENT) == 0


def test_a_missing_file_has_size_minus_one_and_deletes_quietly(staging):
    assert staging.size(SEGMENT) == -1
    staging.truncate(SEGMENT, 0)  # nothing to cut: fine
    assert staging.contents(SEGMENT).unreadable
    staging.reset(SEGMENT)
    staging.delete(SEGMENT)
    staging.delete(SEGMENT)
    assert staging.size(SEGMENT) == -1


def test_contents_come_from_the_parquet_footer(staging):
    segment = chain("ship-a", "telemetry", 1, rows_per=25)[0]
    staging.reset(SEGMENT)
    handle = staging.open_chunk(SEGMENT, 0)
    staging.write(handle, segment.data, None)
    staging.finish_chunk(handle, keep_to=len(segment.data))
    contents = staging.contents(SEGMENT)
    assert contents.row_count == 25 and contents.schema_fingerprint == segment.manifest.schema_fingerprint
    staging.truncate(SEGMENT, 10)
    assert "Parquet" in staging.contents(SEGMENT).unreadable


# -- what a crash keeps (only the in-memory staging can crash on demand) ----------------------------------


@pytest.mark.guarantee("G1", "G3")
def test_a_crash_keeps_only_what_was_synced():
    staging = MemoryStaging()
    staging.reset(SEGMENT)
    handle = staging.open_chunk(SEGMENT, 0)
    staging.write(handle, b"durable ", None)
    staging.sync(handle)
    staging.write(handle, b"lost", None)
    assert staging.data(SEGMENT) == b"durable lost"  # a reader sees the page cache
    staging.crash()
    assert staging.data(SEGMENT) == b"durable "
    handle = staging.open_chunk(SEGMENT, 8)
    staging.write(handle, b"kept", None)
    staging.finish_chunk(handle, keep_to=12)
    handle = staging.open_chunk(SEGMENT, 12)
    staging.write(handle, b"dropped", None)
    staging.finish_chunk(handle, keep_to=None)
    staging.crash()
    assert staging.data(SEGMENT) == b"durable kept"
    staging.truncate(SEGMENT, 4)
    staging.crash()
    assert staging.data(SEGMENT) == b"dura"
