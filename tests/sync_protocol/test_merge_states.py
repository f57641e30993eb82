from __future__ import annotations

import pytest

from sync_protocol.errors import LocalProtocolError
from sync_protocol.merge_states import (
    AWAITING_MERGE,
    BATCH_TRANSITIONS,
    MERGE_TRANSITIONS,
    BatchState,
    MergeEvent,
    MergeState,
    merge_move,
    next_batch_state,
    next_merge_state,
)


def test_a_segment_is_planned_then_merged_and_its_batch_done():
    state = next_merge_state(MergeState.COMMITTED, MergeEvent.PLANNED)
    assert next_merge_state(state, MergeEvent.BATCH_COMMITTED) is MergeState.MERGED
    assert next_batch_state(BatchState.OPEN, MergeEvent.BATCH_COMMITTED) is BatchState.DONE


def test_an_abandoned_batch_sends_its_segments_back_to_waiting():
    assert next_merge_state(MergeState.MERGING, MergeEvent.BATCH_ABANDONED) is MergeState.COMMITTED
    assert next_batch_state(BatchState.OPEN, MergeEvent.BATCH_ABANDONED) is BatchState.ABANDONED


@pytest.mark.parametrize("state", [MergeState.MERGED, MergeState.QUARANTINED])
@pytest.mark.parametrize("event", list(MergeEvent))
def test_merged_is_final_and_only_an_operator_takes_a_segment_out_of_quarantine(state, event):
    if state is MergeState.QUARANTINED and event is MergeEvent.RELEASED:
        assert next_merge_state(state, event) is MergeState.COMMITTED  # `harbour hub quarantine release`
        return
    with pytest.raises(LocalProtocolError, match="not allowed"):
        next_merge_state(state, event)


def test_only_a_waiting_segment_is_quarantined():
    assert next_merge_state(MergeState.COMMITTED, MergeEvent.REFUSED) is MergeState.QUARANTINED
    with pytest.raises(LocalProtocolError, match="'merging'"):
        next_merge_state(MergeState.MERGING, MergeEvent.REFUSED)


@pytest.mark.parametrize("event", [MergeEvent.BATCH_COMMITTED, MergeEvent.BATCH_ABANDONED])
def test_a_batch_ends_once(event):
    for end in (BatchState.DONE, BatchState.ABANDONED):
        with pytest.raises(LocalProtocolError):
            next_batch_state(end, event)


def test_set_moves_come_from_the_table():
    assert merge_move(MergeEvent.PLANNED) == (frozenset({MergeState.COMMITTED}), MergeState.MERGING)
    assert merge_move(MergeEvent.BATCH_COMMITTED) == (frozenset({MergeState.MERGING}), MergeState.MERGED)
    assert merge_move(MergeEvent.BATCH_ABANDONED) == (frozenset({MergeState.MERGING}), MergeState.COMMITTED)


def test_every_state_has_a_row_and_pending_means_not_settled():
    assert set(MERGE_TRANSITIONS) == set(MergeState) and set(BATCH_TRANSITIONS) == set(BatchState)
    assert {MergeState.COMMITTED, MergeState.MERGING} == AWAITING_MERGE
