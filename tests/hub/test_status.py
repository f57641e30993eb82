"""The fleet report: watermark, gaps and breaks from the chain, quarantine, last contact."""

from __future__ import annotations

import pytest

from hub.registry import SiteRegistry
from hub.status import fleet_report, format_report
from sync_protocol.identifiers import SiteId

from .conftest import chain, make_segment, rows_table


@pytest.mark.guarantee("G8")
def test_report_shows_watermark_gaps_breaks_and_quarantine(ledger, database, clock):
    registry = SiteRegistry(database, clock)
    registry.add_site(SiteId("ship-a"))
    registry.add_site(SiteId("idle"))
    registry.touch(SiteId("ship-a"))
    segments = chain("ship-a", "telemetry", 6)
    for segment in segments[:2] + segments[4:]:  # 3 and 4 missing
        ledger.commit(segment.manifest, clock())
    # A seq whose predecessor is missing cannot be checked; a break needs a committed predecessor.
    ledger.commit(make_segment("ship-b", "telemetry", 1, rows_table(0, 1)).manifest, clock())
    ledger.quarantine(segments[1].manifest.segment, "schema conflict: column 'x'", clock())
    clock.advance(30)
    report = fleet_report(ledger, registry, clock)
    sites = {s["site"]: s for s in report["sites"]}
    telemetry = sites["ship-a"]["tables"]["telemetry"]
    assert (telemetry["watermark"], telemetry["highest_seq"], telemetry["gaps"]) == (2, 6, [[3, 4]])
    assert telemetry["segments_quarantined"] == 1 and sites["ship-a"]["quarantined"][0]["seq"] == 2
    assert sites["ship-a"]["seconds_since_contact"] == 30
    assert sites["idle"]["tables"] == {} and sites["ship-b"]["registered"] is False
    assert report["merge_lag_seconds"] == 30
    text = format_report(report)
    assert "3-4" in text and "quarantined segments: 1" in text and "schema conflict" in text
