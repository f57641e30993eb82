"""An in-memory ``SegmentQueue``: the ledger's contract for the agent, without SQLite.

For unit tests of the agent's scheduling and for benchmarks that feed the agent ready-made segment
files. It enforces the same state moves as the real ledger (``next_segment_state``) and the same order
(priority class, then seq), and ``tests/edge_node/sync/test_memory_queue.py`` runs both through the
same checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync_protocol import Manifest, SegmentId
from sync_protocol.segment_states import SegmentEvent, SegmentState, next_segment_state


@dataclass
class QueuedSegment:
    manifest: Manifest
    path: str  # relative to the data directory the agent is given
    state: SegmentState = SegmentState.SEALED
    park_reason: str = ""


class MemorySegmentQueue:
    def __init__(self) -> None:
        self.segments: dict[SegmentId, QueuedSegment] = {}
        self.acked_order: list[SegmentId] = []

    def add(self, manifest: Manifest, path: str) -> QueuedSegment:
        queued = QueuedSegment(manifest, path)
        self.segments[manifest.segment] = queued
        return queued

    def pending_segments(self, limit: int = 100) -> list[QueuedSegment]:
        pending = [s for s in self.segments.values() if s.state in (SegmentState.SEALED, SegmentState.UPLOADING)]
        pending.sort(key=lambda s: (s.manifest.priority, s.manifest.segment.seq, str(s.manifest.segment.table)))
        return pending[:limit]

    def _move(self, segment: SegmentId, event: SegmentEvent) -> QueuedSegment:
        queued = self.segments[segment]
        queued.state = next_segment_state(queued.state, event)
        return queued

    def mark_uploading(self, segment: SegmentId) -> None:
        self._move(segment, SegmentEvent.START_UPLOAD)

    def mark_acked(self, segment: SegmentId) -> None:
        self._move(segment, SegmentEvent.HUB_COMMITTED)
        self.acked_order.append(segment)

    def mark_parked(self, segment: SegmentId, reason: str = "") -> None:
        self._move(segment, SegmentEvent.HUB_REJECTED).park_reason = reason

    def release(self, segment: SegmentId) -> None:
        self._move(segment, SegmentEvent.RELEASE).park_reason = ""

    def parked(self) -> list[tuple[SegmentId, str]]:
        return sorted((s.manifest.segment, s.park_reason) for s in self.segments.values()
                      if s.state is SegmentState.PARKED)
