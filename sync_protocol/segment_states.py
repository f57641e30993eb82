"""The life of a segment on the edge, as one transition table (G1, G8).

    open -> sealed -> uploading -> acked -> collected
                         |   ^
                         v   |
                        parked

* ``open``: rows are being appended in the write-ahead log; not yet a file.
* ``sealed``: an immutable Parquet file with its manifest, recorded in the ledger.
* ``uploading``: the sync agent has started sending it; after an edge restart it resumes with HEAD.
* ``acked``: the hub answered ``Harbour-Commit: committed``; the file is kept for the retention period.
* ``collected``: the file is deleted. Only an acked segment is ever deleted (G8).
* ``parked``: the hub rejected it permanently (auth, conflict, schema quarantine); it stays on disk,
  shown in status, until an operator releases it (back to ``sealed``) after fixing the cause.
"""

from __future__ import annotations

import enum

from .errors import LocalProtocolError


class SegmentState(enum.Enum):
    OPEN = "open"
    SEALED = "sealed"
    UPLOADING = "uploading"
    ACKED = "acked"
    COLLECTED = "collected"
    PARKED = "parked"


class SegmentEvent(enum.Enum):
    SEAL = "seal"
    START_UPLOAD = "start upload"
    HUB_COMMITTED = "hub committed"
    HUB_REJECTED = "hub rejected"
    RELEASE = "operator release"
    RETENTION_EXPIRED = "retention expired"


SEGMENT_TRANSITIONS: dict[SegmentState, dict[SegmentEvent, SegmentState]] = {
    SegmentState.OPEN: {SegmentEvent.SEAL: SegmentState.SEALED},
    SegmentState.SEALED: {
        SegmentEvent.START_UPLOAD: SegmentState.UPLOADING,
        # The hub may already hold it (an edge restored from backup): ack without an upload.
        SegmentEvent.HUB_COMMITTED: SegmentState.ACKED,
    },
    SegmentState.UPLOADING: {
        SegmentEvent.START_UPLOAD: SegmentState.UPLOADING,  # resumed after an edge restart
        SegmentEvent.HUB_COMMITTED: SegmentState.ACKED,
        SegmentEvent.HUB_REJECTED: SegmentState.PARKED,
    },
    SegmentState.PARKED: {SegmentEvent.RELEASE: SegmentState.SEALED},
    SegmentState.ACKED: {SegmentEvent.RETENTION_EXPIRED: SegmentState.COLLECTED},
    SegmentState.COLLECTED: {},
}


def next_segment_state(state: SegmentState, event: SegmentEvent) -> SegmentState:
    """The state after ``event``; raises ``LocalProtocolError`` for a move the table does not allow
    (for example deleting a segment the hub never acknowledged)."""
    target = SEGMENT_TRANSITIONS[state].get(event)
    if target is None:
        raise LocalProtocolError(
            f"segment event {event.value!r} is not allowed in state {state.value!r}",
            op="changing segment state", hint="only acked segments may be collected; see SEGMENT_TRANSITIONS",
        )
    return target
