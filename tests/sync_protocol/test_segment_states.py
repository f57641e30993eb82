from __future__ import annotations

import pytest

from sync_protocol.errors import LocalProtocolError
from sync_protocol.segment_states import SEGMENT_TRANSITIONS, SegmentEvent, SegmentState, next_segment_state


def test_the_normal_life_of_a_segment():
    state = SegmentState.OPEN
    for event in (SegmentEvent.SEAL, SegmentEvent.START_UPLOAD, SegmentEvent.HUB_COMMITTED,
                  SegmentEvent.RETENTION_EXPIRED):
        state = next_segment_state(state, event)
    assert state is SegmentState.COLLECTED


@pytest.mark.parametrize("state", [s for s in SegmentState if s is not SegmentState.ACKED])
def test_only_an_acked_segment_can_be_collected(state):
    with pytest.raises(LocalProtocolError, match="only acked segments"):
        next_segment_state(state, SegmentEvent.RETENTION_EXPIRED)


def test_a_parked_segment_returns_to_sealed_on_release():
    assert next_segment_state(SegmentState.PARKED, SegmentEvent.RELEASE) is SegmentState.SEALED
    assert set(SEGMENT_TRANSITIONS) == set(SegmentState)
