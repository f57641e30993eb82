from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.chain import ChainLink, ChainStatus, chain_from_runs, chain_status, check_link
from sync_protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import Manifest, sha256_hex

DIGESTS = {seq: sha256_hex(str(seq).encode()) for seq in range(0, 12)}


def link(seq: int) -> ChainLink:
    return ChainLink(DIGESTS[seq], GENESIS_DIGEST if seq == 1 else DIGESTS[seq - 1])


def test_empty_and_contiguous():
    assert chain_status({}).watermark == 0
    status = chain_status({seq: link(seq) for seq in range(1, 6)})
    assert (status.watermark, status.highest, status.gaps, status.breaks) == (5, 5, (), ())


@pytest.mark.guarantee("G8")
def test_gaps_are_listed_as_ranges():
    status = chain_status({seq: link(seq) for seq in (1, 2, 5, 6, 9)})
    assert status.watermark == 2 and status.gaps == ((3, 4), (7, 8)) and not status.complete


@pytest.mark.guarantee("G8")
def test_a_spliced_history_is_a_break_and_stops_the_watermark():
    links = {seq: link(seq) for seq in range(1, 6)}
    links[4] = ChainLink(DIGESTS[4], DIGESTS[0])
    status = chain_status(links)
    assert status.breaks == (4,) and status.watermark == 3


@pytest.mark.guarantee("G8")
def test_check_link_refuses_a_splice_from_either_side():
    manifest = Manifest(SegmentId.of("s", "t", 3), 1, 1, DIGESTS[3], DIGESTS[0], DIGESTS[2], 0, 0)
    check_link(manifest, link(2), link(4))
    with pytest.raises(RemoteProtocolError) as caught:
        check_link(manifest, ChainLink(DIGESTS[9], DIGESTS[8]), None)
    assert caught.value.code is ErrorCode.CHAIN_CONFLICT
    with pytest.raises(RemoteProtocolError):
        check_link(manifest, None, ChainLink(DIGESTS[4], DIGESTS[9]))


# -- cost follows the number of runs, not the seq range (issue 12, item 6) -------------------------------


def test_one_segment_at_seq_10_to_the_12_is_one_gap_at_once():
    far = 10**12
    started = time.monotonic()
    status = chain_status({1: link(1), 2: link(2), far: ChainLink(DIGESTS[9], DIGESTS[8])})
    assert time.monotonic() - started < 0.1
    assert status == ChainStatus(2, far, ((3, far - 1),), ())
    assert chain_from_runs([(far, far)], []) == ChainStatus(0, far, ((1, far - 1),), ())


def test_runs_must_ascend_with_gaps_between_them():
    for runs in ([(3, 2)], [(1, 3), (4, 5)], [(5, 6), (1, 2)], [(0, 2)]):
        with pytest.raises(LocalProtocolError):
            chain_from_runs(runs, [])


def walked(links: dict[int, ChainLink]) -> ChainStatus:
    """The old walk over every seq from 1 to the highest: the reference on small seqs."""
    if not links:
        return ChainStatus(0, 0, (), ())
    highest, gaps, breaks, gap_start = max(links), [], [], None
    for seq in range(1, highest + 1):
        if seq not in links:
            gap_start = seq if gap_start is None else gap_start
            continue
        if gap_start is not None:
            gaps.append((gap_start, seq - 1))
            gap_start = None
        expected = GENESIS_DIGEST if seq == 1 else links[seq - 1].sha256 if seq - 1 in links else None
        if expected is not None and links[seq].prev_sha256 != expected:
            breaks.append(seq)
    watermark = 0
    for seq in range(1, highest + 1):
        if seq not in links or seq in breaks:
            break
        watermark = seq
    return ChainStatus(watermark, highest, tuple(gaps), tuple(breaks))


@pytest.mark.guarantee("G8")
@given(st.dictionaries(st.integers(1, 11), st.booleans(), max_size=11))
def test_runs_give_what_walking_every_seq_gave(present):
    links = {seq: link(seq) if good else ChainLink(DIGESTS[seq], DIGESTS[0]) for seq, good in present.items()}
    assert chain_status(links) == walked(links)
