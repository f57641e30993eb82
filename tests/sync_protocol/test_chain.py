from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.chain import (
    ChainLink,
    ChainStatus,
    GapChange,
    breaks_at_commit,
    chain_from_gaps,
    chain_from_runs,
    chain_status,
    check_link,
    gaps_after_commit,
)
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


# -- the gaps and breaks the hub keeps, one commit at a time (issue 14, item 4) ------------------------------


def test_a_commit_above_the_highest_opens_a_gap_and_one_inside_a_gap_splits_it():
    assert gaps_after_commit(1, 0, None) == GapChange(None, (), 1)
    assert gaps_after_commit(10**12, 2, None) == GapChange(None, ((3, 10**12 - 1),), 10**12)
    assert gaps_after_commit(5, 9, (3, 8)) == GapChange((3, 8), ((3, 4), (6, 8)), 9)
    assert gaps_after_commit(3, 9, (3, 8)) == GapChange((3, 8), ((4, 8),), 9)
    assert gaps_after_commit(8, 9, (3, 8)) == GapChange((3, 8), ((3, 7),), 9)
    assert gaps_after_commit(4, 9, (4, 4)) == GapChange((4, 4), (), 9)


@pytest.mark.parametrize(("seq", "highest", "below"), [(9, 9, None), (5, 9, None), (5, 9, (1, 4)), (0, 3, None)])
def test_a_seq_committed_already_is_a_bug_not_a_gap(seq, highest, below):
    with pytest.raises(LocalProtocolError):
        gaps_after_commit(seq, highest, below)


def test_gaps_must_ascend_below_the_highest_with_commits_between_them():
    assert chain_from_gaps(0, [], []) == ChainStatus(0, 0, (), ())
    assert chain_from_gaps(10, [(1, 3)], [7]) == ChainStatus(0, 10, ((1, 3),), (7,))
    assert chain_from_gaps(10, [(4, 5), (8, 8)], [3]) == ChainStatus(2, 10, ((4, 5), (8, 8)), (3,))
    for highest, gaps in ((5, [(2, 5)]), (9, [(2, 3), (4, 5)]), (9, [(5, 6), (2, 3)]), (9, [(0, 2)]), (9, [(4, 3)])):
        with pytest.raises(LocalProtocolError):
            chain_from_gaps(highest, gaps, [])


def manifest_at(seq: int, sha256: str, prev_sha256: str) -> Manifest:
    return Manifest(SegmentId.of("s", "t", seq), 1, 1, sha256, DIGESTS[0], prev_sha256, 0, 0)


def test_a_commit_finds_its_own_break_and_its_successors():
    good = manifest_at(3, DIGESTS[3], DIGESTS[2])
    assert breaks_at_commit(good, link(2), link(4)) == ()
    assert breaks_at_commit(good, None, None) == ()
    assert breaks_at_commit(manifest_at(3, DIGESTS[3], DIGESTS[9]), link(2), None) == (3,)
    assert breaks_at_commit(manifest_at(3, DIGESTS[9], DIGESTS[9]), link(2), link(4)) == (3, 4)
    assert breaks_at_commit(manifest_at(1, DIGESTS[1], GENESIS_DIGEST), None, ChainLink(DIGESTS[2], DIGESTS[7])) == (2,)


@pytest.mark.guarantee("G8")
@given(st.permutations([1, 2, 3, 5, 6, 9, 10, 11, 40, 10**12]), st.sets(st.integers(2, 11)))
def test_gaps_and_breaks_kept_commit_by_commit_are_what_the_links_give(order, forged):
    """Whatever the commit order, the gaps and breaks kept one commit at a time give the status of all links."""
    digests = {seq: DIGESTS.get(seq) or sha256_hex(str(seq).encode()) for seq in order}
    links: dict[int, ChainLink] = {}
    gaps: list[tuple[int, int]] = []
    breaks: set[int] = set()
    highest = 0
    for seq in order:
        prev = GENESIS_DIGEST if seq == 1 else DIGESTS[0] if seq in forged else digests.get(seq - 1, DIGESTS[0])
        manifest = manifest_at(seq, digests[seq], prev)
        below = max((gap for gap in gaps if gap[0] <= seq), default=None)
        change = gaps_after_commit(seq, highest, below)
        gaps = sorted({*gaps, *change.added} - {change.removed})
        breaks |= set(breaks_at_commit(manifest, links.get(seq - 1), links.get(seq + 1)))
        highest = change.highest
        links[seq] = ChainLink(manifest.sha256, manifest.prev_sha256)
        assert chain_from_gaps(highest, gaps, breaks) == chain_status(links)
