"""Prometheus text: every metric has HELP and TYPE, labels are escaped, gauges come from the ledger."""

from __future__ import annotations

from hub.merger import MergeStats
from hub.metrics import RequestMetrics, render
from hub.uploads import UploadStats

from .conftest import chain


def test_render(ledger, clock):
    ledger.commit(chain("ship-a", "telemetry", 1)[0].manifest, clock())
    clock.advance(12.5)
    requests = RequestMetrics()
    requests.observe("PATCH", '/v1/sync/uploads/{key}"', 204)
    requests.rejected("unauthorized")
    text = render(requests, UploadStats(bytes_received=99), MergeStats(rows=7, commits=1), ledger, clock)
    lines = text.splitlines()
    assert 'harbour_hub_requests_total{method="PATCH",route="/v1/sync/uploads/{key}\\"",status="204"} 1' in lines
    assert 'harbour_hub_rejections_total{code="unauthorized"} 1' in lines
    assert "harbour_hub_received_bytes_total 99" in lines
    assert "harbour_hub_merged_rows_total 7" in lines
    assert "harbour_hub_merge_lag_seconds 12.5" in lines
    names = {line.split()[2] for line in lines if line.startswith("# TYPE")}
    assert names == {line.split()[2] for line in lines if line.startswith("# HELP")}
