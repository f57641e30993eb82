from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.dataset_states import (
    DATASET_TRANSITIONS,
    Action,
    DatasetEvent,
    DatasetFetch,
    DatasetState,
    next_dataset_state,
)
from sync_protocol.downlink import DatasetOffer
from sync_protocol.errors import LocalProtocolError


def offer(version: int, size: int = 100, name: str = "offers") -> DatasetOffer:
    return DatasetOffer(name, version, hashlib.sha256(f"{name}{version}".encode()).hexdigest(), size)


def test_every_state_has_a_row_and_only_current_is_reached_by_verification():
    assert set(DATASET_TRANSITIONS) == set(DatasetState)
    targets = {(s, e): t for s, moves in DATASET_TRANSITIONS.items() for e, t in moves.items()}
    assert {s for (s, e), t in targets.items() if t is DatasetState.CURRENT} == {DatasetState.VERIFYING,
                                                                                  DatasetState.WAITING}
    with pytest.raises(LocalProtocolError, match="not allowed"):
        next_dataset_state(DatasetState.DOWNLOADING, DatasetEvent.VERIFIED)  # never switch unverified bytes


def test_offered_downloading_verifying_current():
    fetch = DatasetFetch("offers")
    v1 = offer(1)
    assert fetch.offer(v1) is Action.FETCH and fetch.state is DatasetState.OFFERED
    assert fetch.start() == 0 and fetch.state is DatasetState.DOWNLOADING
    fetch.received(40)
    assert (fetch.state, fetch.offset) == (DatasetState.DOWNLOADING, 40)
    assert fetch.start() == 40  # a cut: resumed where the durable bytes end
    fetch.received(100)
    assert fetch.state is DatasetState.VERIFYING
    assert fetch.verified(v1.sha256)
    assert (fetch.state, fetch.held, fetch.target) == (DatasetState.CURRENT, v1, None)
    assert fetch.offer(v1) is Action.NOTHING  # every answer repeats the desired state


def test_a_newer_offer_supersedes_a_download_in_progress_and_its_partial_is_discarded():
    fetch = DatasetFetch("offers", held=offer(1), state=DatasetState.CURRENT)
    fetch.offer(offer(2))
    fetch.start()
    fetch.received(50)
    assert fetch.offer(offer(3)) is Action.DISCARD_PARTIAL
    assert (fetch.state, fetch.target.version, fetch.offset) == (DatasetState.OFFERED, 3, 0)


def test_an_edge_offline_through_versions_2_and_3_fetches_only_3():
    fetch = DatasetFetch.restored("offers", offer(1), None, 0)
    # while offline the hub published 2 then 3; the first answer after reconnecting names only the newest
    assert fetch.offer(offer(3)) is Action.FETCH
    assert fetch.target.version == 3
    assert fetch.offer(offer(2)) is Action.NOTHING  # an older offer (a stale answer) never goes back


@pytest.mark.guarantee("G4")
def test_a_corrupt_download_is_fetched_again_from_byte_0():
    fetch = DatasetFetch("offers")
    fetch.offer(offer(1))
    fetch.start()
    fetch.received(100)
    assert not fetch.verified("0" * 64)
    assert (fetch.state, fetch.offset, fetch.held) == (DatasetState.OFFERED, 0, None)


def test_gone_waits_for_the_next_answer_and_a_repeat_of_the_held_version_makes_it_current():
    fetch = DatasetFetch("offers", held=offer(1), state=DatasetState.CURRENT)
    fetch.offer(offer(2))
    fetch.start()
    fetch.gone()
    assert (fetch.state, fetch.target) == (DatasetState.WAITING, None)
    assert fetch.offer(offer(1)) is Action.NOTHING and fetch.state is DatasetState.CURRENT
    fetch.offer(offer(2))
    fetch.gone()
    assert fetch.offer(offer(4)) is Action.FETCH and fetch.target.version == 4


def test_restored_partial_resumes_at_its_durable_offset_and_a_stale_one_is_ignored():
    fetch = DatasetFetch.restored("offers", offer(1), offer(2), 64)
    assert (fetch.state, fetch.start()) == (DatasetState.DOWNLOADING, 64)
    stale = DatasetFetch.restored("offers", offer(3), offer(2), 64)
    assert (stale.state, stale.target) == (DatasetState.CURRENT, None)


def test_a_complete_partial_found_at_start_is_verified_and_a_refused_range_starts_again():
    complete = DatasetFetch.restored("offers", None, offer(2), 100)
    assert complete.state is DatasetState.VERIFYING  # all bytes on board: no request (it would get a 416)
    fetch = DatasetFetch.restored("offers", None, offer(2), 60)
    fetch.start()
    fetch.range_refused()
    assert (fetch.state, fetch.offset) == (DatasetState.OFFERED, 0)
    assert fetch.start() == 0 and fetch.state is DatasetState.DOWNLOADING


def test_an_empty_version_needs_no_request():
    fetch = DatasetFetch("offers")
    fetch.offer(offer(1, size=0))
    assert fetch.start() == 0 and fetch.state is DatasetState.VERIFYING


def test_progress_never_goes_backwards_or_past_the_end():
    fetch = DatasetFetch("offers")
    fetch.offer(offer(1))
    fetch.start()
    fetch.received(60)
    for bad in (59, 101):
        with pytest.raises(LocalProtocolError, match="durable offset"):
            fetch.received(bad)


@given(st.lists(st.integers(1, 6), max_size=12))
def test_the_target_is_always_newer_than_the_held_version(versions):
    fetch = DatasetFetch("offers")
    for version in versions:
        fetch.offer(offer(version))
        if fetch.target is not None and fetch.state is DatasetState.OFFERED:
            fetch.start()
            fetch.received(fetch.target.size)
            fetch.verified(fetch.target.sha256)
        if fetch.target is not None and fetch.held is not None:
            assert fetch.target.version > fetch.held.version
    if versions:
        assert fetch.held.version == max(versions)
