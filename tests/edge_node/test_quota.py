"""The quota's decision and its 507 message (G7)."""

import pytest

from edge_node.quota import DiskQuota, Usage
from sync_protocol import ErrorCode, RemoteProtocolError

MiB = 1024 * 1024


def test_fits_under_the_quota():
    DiskQuota(100 * MiB).check(Usage(50 * MiB, 50 * MiB, 3, 10 * MiB), 40 * MiB, sync_state="offline")


@pytest.mark.guarantee("G7")
def test_refusal_is_507_saying_how_much_is_pending_and_what_to_do():
    usage = Usage(segment_bytes=90 * MiB, pending_segment_bytes=80 * MiB, pending_segments=12, log_bytes=5 * MiB)
    with pytest.raises(RemoteProtocolError) as caught:
        DiskQuota(100 * MiB).check(usage, 6 * MiB, sync_state="no hub configured")
    error = caught.value
    assert error.code is ErrorCode.DISK_FULL and error.status == 507
    text = str(error)
    assert "100.0 MiB" in text and "85.0 MiB is waiting" in text and "12 sealed segments" in text
    assert "no hub configured" in text and "No stored row is dropped" in text
    assert "--max-disk" in error.hint


def test_acked_bytes_are_what_collection_can_free():
    assert Usage(90, 80, 1, 5).acked_bytes == 10
    assert Usage(90, 80, 1, 5).total == 95
