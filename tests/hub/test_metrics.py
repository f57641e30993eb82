"""/metrics through prometheus_client: the process's counters and one series per site, read at scrape time
from the same report /v1/fleet serves; the text parses as Prometheus exposition."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from hub.dataset_files import convert
from hub.datasets import DatasetStore
from hub.downlink import Downlink
from hub.managed_settings import SettingsStore
from hub.merger import MergeStats
from hub.metrics import RequestMetrics, make_render
from hub.registry import SiteRegistry
from hub.site_reports import SiteReportStore, parse_report
from hub.status import fleet_report
from hub.uploads import UploadStats
from sync_protocol.identifiers import SiteId, TableName

from .conftest import chain


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_process_counters_and_per_site_series(ledger, database, clock):
    registry, reports = SiteRegistry(database, clock), SiteReportStore(database, clock)
    registry.add_site(SiteId("ship-a"))
    registry.add_site(SiteId("ship-b"))
    registry.touch(SiteId("ship-a"))
    first, _, third = chain("ship-a", "telemetry", 3)
    ledger.commit(first.manifest, clock())
    ledger.commit(third.manifest, clock())  # seq 2 missing: a gap
    report = {"backlog_bytes": 123_456, "pending_segments": 3, "parked_segments": 0, "pending_rows": 900,
              "oldest_pending_at": clock() - 600, "reported_at": clock(),
              "link": {"state": "thin", "measured_rate_bps": 512_000, "rtt_ms": 640, "last_error": None}}
    reports.save(SiteId("ship-a"), parse_report(json.dumps(report).encode(), SiteId("ship-a")))
    clock.advance(12.5)
    requests = RequestMetrics()
    requests.observe("PATCH", '/v1/sync/uploads/{key}"', 204)
    requests.rejected("unauthorized")
    render = make_render(requests, UploadStats(bytes_received=99), MergeStats(rows=7, commits=1),
                         lambda: fleet_report(ledger, registry, clock, reports))
    got = samples(render())
    assert got[("harbour_hub_requests_total", (("method", "PATCH"), ("route", '/v1/sync/uploads/{key}"'),
                                               ("status", "204")))] == 1
    assert got[("harbour_hub_rejections_total", (("code", "unauthorized"),))] == 1
    assert got[("harbour_hub_received_bytes_total", ())] == 99
    assert got[("harbour_hub_merged_rows_total", ())] == 7
    assert got[("harbour_hub_merge_lag_seconds", ())] == 12.5
    assert got[("harbour_hub_site_last_contact_timestamp_seconds", (("site", "ship-a"),))] > 0
    assert ("harbour_hub_site_last_contact_timestamp_seconds", (("site", "ship-b"),)) not in got  # never in contact
    assert got[("harbour_hub_site_missing_segments", (("site", "ship-a"), ("table", "telemetry")))] == 1
    assert got[("harbour_hub_site_backlog_bytes", (("site", "ship-a"),))] == 123_456
    assert got[("harbour_hub_site_backlog_rows", (("site", "ship-a"),))] == 900
    assert got[("harbour_hub_site_oldest_pending_seconds", (("site", "ship-a"),))] == 600
    assert got[("harbour_hub_site_link_state", (("site", "ship-a"), ("state", "thin")))] == 1
    assert got[("harbour_hub_site_link_state", (("site", "ship-a"), ("state", "good")))] == 0
    assert got[("harbour_hub_site_registered", (("site", "ship-b"),))] == 1


def test_downlink_series(ledger, database, clock, layout, tmp_path):
    registry, reports = SiteRegistry(database, clock), SiteReportStore(database, clock)
    registry.add_site(SiteId("ship-a"))
    downlink = Downlink(DatasetStore(database, layout.datasets, clock), SettingsStore(database, clock))
    (tmp_path / "offers.csv").write_text("sku\na\n")
    converted = convert(tmp_path / "offers.csv", downlink.datasets.staging_file("m"))
    downlink.datasets.publish(TableName("offers"), converted, None, ["ship-a"])
    downlink.settings.configure(["*"], {"metered": "true"}, [])
    report = {"backlog_bytes": 0, "pending_segments": 0, "reported_at": clock(), "link": {"state": "good"},
              "downlink": {"datasets": {}, "settings": {"revision": 0, "refused": {"metered": "no such flag"}}}}
    reports.save(SiteId("ship-a"), parse_report(json.dumps(report).encode(), SiteId("ship-a")))
    render = make_render(RequestMetrics(), UploadStats(), MergeStats(),
                         lambda: fleet_report(ledger, registry, clock, reports, downlink))
    got = samples(render())
    assert got[("harbour_hub_site_datasets_pending", (("site", "ship-a"),))] == 1
    assert got[("harbour_hub_site_settings_pending", (("site", "ship-a"),))] == 1
    assert got[("harbour_hub_site_settings_refused", (("site", "ship-a"),))] == 1
