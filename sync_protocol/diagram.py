"""Render the transition tables and the error vocabulary as Markdown for ``docs/protocol.md``.

The docs never describe a state machine by hand: ``docs/generate.py`` pastes these renderings
between markers, and ``tests/test_docs.py`` fails when the docs and the tables drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from .dataset_states import DATASET_START, DATASET_TRANSITIONS, DatasetState
from .errors import ErrorCode
from .merge_states import BATCH_START, BATCH_TRANSITIONS, MERGE_START, MERGE_TRANSITIONS, BatchState, MergeState
from .receiver import RECEIVER_TRANSITIONS, RxState
from .segment_states import SEGMENT_TRANSITIONS, SegmentState
from .sender import SENDER_TRANSITIONS, TxState


def mermaid_state_diagram(
    transitions: Mapping[enum.Enum, Mapping[enum.Enum, enum.Enum]], start: enum.Enum, finals: tuple[enum.Enum, ...],
) -> str:
    """A mermaid ``stateDiagram-v2`` with one arrow per (state, event) pair of the table."""
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {start.name}"]
    for source, moves in transitions.items():
        by_target: dict[enum.Enum, list[str]] = {}
        for event, target in moves.items():
            by_target.setdefault(target, []).append(str(event.value))
        for target, events in by_target.items():
            lines.append(f"    {source.name} --> {target.name}: {' / '.join(events)}")
    lines.extend(f"    {final.name} --> [*]" for final in finals)
    lines.append("```")
    return "\n".join(lines)


def error_table() -> str:
    rows = [
        "| code | HTTP | meaning | what the peer does |",
        "|---|---|---|---|",
    ]
    for code in ErrorCode:
        rows.append(f"| `{code.slug}` | {code.status} | {code.value.meaning} | {code.action.value} |")
    return "\n".join(rows)


def generated_sections() -> dict[str, str]:
    """Marker name -> Markdown, for every generated part of docs/protocol.md."""
    return {
        "receiver-diagram": mermaid_state_diagram(RECEIVER_TRANSITIONS, RxState.ABSENT, (RxState.COMMITTED,)),
        "sender-diagram": mermaid_state_diagram(
            SENDER_TRANSITIONS, TxState.CREATING, (TxState.ACKED, TxState.PARKED)
        ),
        "segment-diagram": mermaid_state_diagram(
            SEGMENT_TRANSITIONS, SegmentState.OPEN, (SegmentState.COLLECTED,)
        ),
        "merge-diagram": mermaid_state_diagram(
            MERGE_TRANSITIONS, MERGE_START, (MergeState.MERGED, MergeState.QUARANTINED)
        ),
        "batch-diagram": mermaid_state_diagram(
            BATCH_TRANSITIONS, BATCH_START, (BatchState.DONE, BatchState.ABANDONED)
        ),
        "dataset-diagram": mermaid_state_diagram(
            DATASET_TRANSITIONS, DATASET_START, (DatasetState.CURRENT,)
        ),
        "error-table": error_table(),
    }
