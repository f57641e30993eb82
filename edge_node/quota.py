"""The disk quota of a data directory (G7).

Policy: when a write would take the directory over its quota, the write is refused with ``507`` and a
message that says how much is waiting for the hub. Nothing acknowledged is ever dropped to make room;
only segments the hub has durably acknowledged may go early (before their retention ends), oldest first,
because the hub already holds their rows.

What counts: segment files not yet collected, write-ahead logs not yet sealed, and reference datasets from the
hub (held versions and downloads in progress; a download starts only if the dataset fits). The ledger's own file
and Parquet metadata are small next to them and left out, which the quota's slack absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync_protocol import ErrorCode, RemoteProtocolError
from sync_protocol.units import format_size


@dataclass(frozen=True)
class Usage:
    segment_bytes: int  # sealed, uploading, parked or acked-but-not-collected segment files
    pending_segment_bytes: int  # the part of segment_bytes the hub has not acknowledged
    pending_segments: int
    log_bytes: int  # write-ahead logs not yet sealed
    dataset_bytes: int = 0  # reference datasets on board (edge_node.datasets)

    @property
    def total(self) -> int:
        return self.segment_bytes + self.log_bytes + self.dataset_bytes

    @property
    def acked_bytes(self) -> int:
        return self.segment_bytes - self.pending_segment_bytes


class DiskQuota:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def would_exceed(self, usage: Usage, incoming: int) -> bool:
        return usage.total + incoming > self.max_bytes

    def check(self, usage: Usage, incoming: int, *, sync_state: str) -> None:
        """Raise the 507 error for a write of ``incoming`` bytes that does not fit."""
        if not self.would_exceed(usage, incoming):
            return
        waiting = usage.pending_segment_bytes + usage.log_bytes
        raise RemoteProtocolError(
            f"disk quota of {format_size(self.max_bytes)} reached: {format_size(waiting)} is waiting to be "
            f"synced to the hub ({format_size(usage.pending_segment_bytes)} in {usage.pending_segments} sealed "
            f"segments, {format_size(usage.log_bytes)} in the write-ahead log; {sync_state}); this write of "
            f"{format_size(incoming)} does not fit. No stored row is dropped to make room",
            code=ErrorCode.DISK_FULL, op="accepting write", subject="disk quota",
            hint="writes resume as soon as the hub acknowledges segments; restore the link to the hub, or "
                 "restart the node with a larger --max-disk if the disk has room",
        )
