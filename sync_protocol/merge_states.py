"""The life of a committed segment at the hub, and of the merge batch that carries it: two transition tables (G2).

Theory of operation
-------------------
A segment the hub committed (``hub.ledger``) waits to be merged into its Delta table (``hub.merger``)::

    committed --planned--> merging --batch reached the table--> merged
        |  ^  ^               |
        |  |  +---------------+ batch never reached the table
        |  +---released by an operator---+
        +--cannot be merged--> quarantined

A **merge batch** is the set of segments one Delta commit holds. Planning it opens it and moves its segments
to ``merging``; the batch then ends exactly one way, and the same event moves the batch and every segment in
it: ``done`` (the Delta commit carrying the batch id happened, the segments are ``merged``) or ``abandoned``
(it did not, the segments wait again). A crash leaves a batch ``open``; the merger's start-up ``reconcile``
asks the Delta table which of the two it was. ``merged`` is final: a merged segment's rows
are in the table, and a quarantined one is set aside with its reason for an operator, who may release it
once the cause is fixed: it then waits like a newly committed segment (and comes back with the new reason if
it still cannot be merged).

The ledger applies these tables, never state strings of its own: a move the table does not allow is a bug in
the hub (``LocalProtocolError``), not something to write down.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields

from .errors import LocalProtocolError


class MergeState(enum.Enum):
    COMMITTED = "committed"
    MERGING = "merging"
    MERGED = "merged"
    QUARANTINED = "quarantined"


class BatchState(enum.Enum):
    OPEN = "open"
    DONE = "done"
    ABANDONED = "abandoned"


class MergeEvent(enum.Enum):
    PLANNED = "planned into a batch"
    BATCH_COMMITTED = "batch reached the table"
    BATCH_ABANDONED = "batch never reached the table"
    REFUSED = "cannot be merged"
    RELEASED = "released by an operator"  # `harbour hub quarantine release`, once the cause is fixed


MERGE_TRANSITIONS: dict[MergeState, dict[MergeEvent, MergeState]] = {
    MergeState.COMMITTED: {
        MergeEvent.PLANNED: MergeState.MERGING,
        # unreadable, not what its manifest says, refused by the type rules or by Delta alone: set aside so
        # that one segment never blocks its site's later ones (G7)
        MergeEvent.REFUSED: MergeState.QUARANTINED,
    },
    MergeState.MERGING: {
        MergeEvent.BATCH_COMMITTED: MergeState.MERGED,
        MergeEvent.BATCH_ABANDONED: MergeState.COMMITTED,
    },
    MergeState.MERGED: {},
    # merged again through the normal path: exactly once by the batch id, back here if it still does not fit
    MergeState.QUARANTINED: {MergeEvent.RELEASED: MergeState.COMMITTED},
}

BATCH_TRANSITIONS: dict[BatchState, dict[MergeEvent, BatchState]] = {
    BatchState.OPEN: {
        MergeEvent.BATCH_COMMITTED: BatchState.DONE,
        MergeEvent.BATCH_ABANDONED: BatchState.ABANDONED,
    },
    BatchState.DONE: {},
    BatchState.ABANDONED: {},
}

MERGE_START = MergeState.COMMITTED
"""What a segment is the moment the ledger commits it."""

BATCH_START = BatchState.OPEN
"""What a batch is the moment it is planned."""

OPERATOR_EVENTS = frozenset({MergeEvent.RELEASED})
"""Moves only an operator makes: a state left only by these is settled as far as the merger is concerned."""

AWAITING_MERGE = frozenset(state for state, moves in MERGE_TRANSITIONS.items() if set(moves) - OPERATOR_EVENTS)
"""Segments not yet settled (neither merged nor quarantined): status counts them as pending."""


@dataclass(frozen=True)
class MergeTally:
    """What status counts of some segments (``harbour hub status``, ``/v1/fleet``): committed, their rows, rows
    merged, pending (``AWAITING_MERGE``) and quarantined. Tallies add up, so the hub keeps one per (site, table)
    and adds what each move changes (``moved``) instead of counting every segment it ever committed again."""

    segments_committed: int = 0
    rows_committed: int = 0
    rows_merged: int = 0
    segments_pending: int = 0
    segments_quarantined: int = 0

    @classmethod
    def of(cls, state: MergeState, segments: int, rows: int) -> MergeTally:
        """The tally of ``segments`` segments holding ``rows`` rows, all in ``state``."""
        return cls(segments, rows, rows if state is MergeState.MERGED else 0,
                   segments if state in AWAITING_MERGE else 0, segments if state is MergeState.QUARANTINED else 0)

    @classmethod
    def moved(cls, source: MergeState, target: MergeState, segments: int, rows: int) -> MergeTally:
        """What moving ``segments`` segments (``rows`` rows) from ``source`` to ``target`` adds to a tally."""
        return cls.of(target, segments, rows) - cls.of(source, segments, rows)

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, field.name) for field in fields(self))

    def __add__(self, other: MergeTally) -> MergeTally:
        return MergeTally(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __sub__(self, other: MergeTally) -> MergeTally:
        return MergeTally(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))


def _next(transitions: Mapping[enum.Enum, Mapping[MergeEvent, enum.Enum]], kind: str, state: enum.Enum,
          event: MergeEvent) -> enum.Enum:
    target = transitions[state].get(event)
    if target is None:
        raise LocalProtocolError(
            f"{kind} event {event.value!r} is not allowed in state {state.value!r}",
            op=f"changing {kind} state",
            hint="see MERGE_TRANSITIONS and BATCH_TRANSITIONS in sync_protocol/merge_states.py",
        )
    return target


def next_merge_state(state: MergeState, event: MergeEvent) -> MergeState:
    """The segment's state after ``event``; ``LocalProtocolError`` for a move the table does not allow."""
    return _next(MERGE_TRANSITIONS, "segment", state, event)


def next_batch_state(state: BatchState, event: MergeEvent) -> BatchState:
    """The batch's state after ``event``; ``LocalProtocolError`` for a move the table does not allow."""
    return _next(BATCH_TRANSITIONS, "batch", state, event)


def merge_move(event: MergeEvent) -> tuple[frozenset[MergeState], MergeState]:
    """(the states ``event`` moves a segment from, the state it moves it to): what a ledger needs to move a set of
    segments in one statement (``UPDATE ... SET state = target WHERE ... AND state IN sources``)."""
    moves = {(source, target) for source, events in MERGE_TRANSITIONS.items()
             for move, target in events.items() if move is event}
    targets = {target for _, target in moves}
    if len(targets) != 1:
        raise LocalProtocolError(f"segment event {event.value!r} has {len(targets)} target states, not one",
                                 op="moving a set of segments", hint="move them one at a time with next_merge_state")
    return frozenset(source for source, _ in moves), targets.pop()
