"""The data directory layout: made on first use, file names only from validated identifiers."""

from __future__ import annotations

from hub.layout import HubLayout
from sync_protocol.identifiers import SegmentId, TableName


def test_layout(tmp_path):
    layout = HubLayout.create(tmp_path / "a" / "b")
    assert all(p.is_dir() for p in (layout.uploads, layout.quarantine, layout.tables))
    segment = SegmentId.of("ship-1", "telemetry", 7)
    assert layout.segment_file(segment) == layout.uploads / "ship-1.telemetry.7.seg"
    assert layout.quarantined_file(segment).parent == layout.quarantine
    assert layout.table_dir(TableName("telemetry")) == layout.tables / "telemetry"
    assert HubLayout.create(tmp_path / "a" / "b") == layout  # idempotent
