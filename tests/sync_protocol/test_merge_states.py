from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.errors import LocalProtocolError
from sync_protocol.merge_states import (
    AWAITING_MERGE,
    BATCH_TRANSITIONS,
    MERGE_TRANSITIONS,
    BatchState,
    MergeEvent,
    MergeState,
    MergeTally,
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


def test_a_tally_counts_what_status_shows_of_each_state():
    assert MergeTally.of(MergeState.COMMITTED, 2, 30) == MergeTally(2, 30, 0, 2, 0)
    assert MergeTally.of(MergeState.MERGING, 2, 30) == MergeTally(2, 30, 0, 2, 0)
    assert MergeTally.of(MergeState.MERGED, 2, 30) == MergeTally(2, 30, 30, 0, 0)
    assert MergeTally.of(MergeState.QUARANTINED, 2, 30) == MergeTally(2, 30, 0, 0, 2)
    assert MergeTally.moved(MergeState.COMMITTED, MergeState.MERGING, 5, 50) == MergeTally()
    assert MergeTally.moved(MergeState.MERGING, MergeState.MERGED, 5, 50) == MergeTally(0, 0, 50, -5, 0)


@given(st.lists(st.tuples(st.integers(0, 39), st.sampled_from(list(MergeEvent))), max_size=60))
def test_a_tally_kept_move_by_move_is_the_tally_of_the_states_reached(moves):
    """What the hub's progress summary does: add ``moved`` for each allowed move, never count again."""
    rows = [seq % 7 for seq in range(40)]
    states = [MergeState.COMMITTED] * 40
    kept = MergeTally.of(MergeState.COMMITTED, 40, sum(rows))
    for index, event in moves:
        target = MERGE_TRANSITIONS[states[index]].get(event)
        if target is not None:
            kept += MergeTally.moved(states[index], target, 1, rows[index])
            states[index] = target
    recounted = MergeTally()
    for state, count in zip(states, rows, strict=True):
        recounted += MergeTally.of(state, 1, count)
    assert kept == recounted
