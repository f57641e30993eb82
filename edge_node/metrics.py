"""The edge's ``GET /metrics`` (prometheus_client): what the ship still has to send, and how the link does.

Everything comes from the report ``/v1/status`` serves, built at scrape time, plus the count of writes the
node refused by error code: so "this ship's backlog keeps growing", "its oldest unsent row is hours old",
"its link has been down all day" and "applications keep getting 507" can be alerted on from the ship's own
Prometheus, while the link to the hub is down. The hub's /metrics has the fleet's view of the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import DEFAULT_PRIORITY

LINK_STATES = ("good", "thin", "down", "unknown")


def _family(kind, name: str, doc: str, labels: list[str], samples) -> Metric:
    family = kind(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


class EdgeCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]], refused: Counter[str]) -> None:
        self._status, self._refused = status, refused

    def collect(self) -> Iterator[Metric]:
        report = self._status()
        tables = report["tables"]

        def per_table(key: str) -> list[tuple[list[str], float]]:
            return [([t["table"], str(t["priority"] if t["priority"] is not None else DEFAULT_PRIORITY)], t[key])
                    for t in tables]

        yield _family(GaugeMetricFamily, "harbour_edge_pending_rows", "Rows not yet committed at the hub.",
                      ["table", "priority"], per_table("pending_rows"))
        yield _family(GaugeMetricFamily, "harbour_edge_pending_bytes", "Bytes on board not yet committed at the hub.",
                      ["table", "priority"], per_table("pending_bytes"))
        yield _family(GaugeMetricFamily, "harbour_edge_oldest_pending_seconds",
                      "Age of the table's oldest row the hub does not have yet.", ["table"],
                      [([t["table"]], t["oldest_pending_age_seconds"]) for t in tables
                       if t["oldest_pending_age_seconds"] is not None])
        yield _family(GaugeMetricFamily, "harbour_edge_parked_segments",
                      "Segments the hub refused for good (see `harbour edge status`).", ["table"],
                      [([t["table"]], t["parked_segments"]) for t in tables])
        yield _family(CounterMetricFamily, "harbour_edge_acked_rows", "Rows the hub has durably committed.",
                      ["table"], [([t["table"]], t["acked_rows"]) for t in tables])
        disk = report["disk"]
        yield _family(GaugeMetricFamily, "harbour_edge_disk_used_bytes", "Bytes of the data directory in use.", [],
                      [([], disk["used_bytes"])])
        if disk.get("max_bytes"):
            yield _family(GaugeMetricFamily, "harbour_edge_disk_quota_bytes", "The disk quota (--max-disk).", [],
                          [([], disk["max_bytes"])])
        ingest = report.get("ingest") or {}
        yield _family(CounterMetricFamily, "harbour_edge_writes", "Writes acknowledged since start.", [],
                      [([], ingest.get("writes", 0))])
        yield _family(CounterMetricFamily, "harbour_edge_rows_written", "Rows acknowledged since start.", [],
                      [([], ingest.get("rows", 0))])
        yield _family(CounterMetricFamily, "harbour_edge_writes_refused", "Writes refused since start, by error code.",
                      ["code"], [([code], n) for code, n in sorted(self._refused.items())])
        yield from self._sync(report.get("sync"))

    @staticmethod
    def _sync(sync: dict[str, Any] | None) -> Iterator[Metric]:
        if sync is None:  # no --hub: nothing is sent
            return
        link = sync.get("link", {})
        yield _family(GaugeMetricFamily, "harbour_edge_link_state", "The link's state (1 = current).", ["state"],
                      [([state], 1.0 if link.get("state") == state else 0.0) for state in LINK_STATES])
        if link.get("measured_rate_bps"):
            yield _family(GaugeMetricFamily, "harbour_edge_link_rate_bits_per_second",
                          "What the link carried while busy (at least this much).", [],
                          [([], link["measured_rate_bps"])])
        if link.get("rtt_ms") is not None:
            yield _family(GaugeMetricFamily, "harbour_edge_link_rtt_seconds", "The link's round trip.", [],
                          [([], link["rtt_ms"] / 1000)])
        yield _family(GaugeMetricFamily, "harbour_edge_hub_reachable",
                      "1 while the hub answers and takes this site's token, 0 while it does not.", [],
                      [([], 0.0 if sync.get("hub_problem") else 1.0)])
        yield _family(CounterMetricFamily, "harbour_edge_sent_bytes", "Segment bytes sent to the hub since start.",
                      [], [([], sync.get("bytes_sent", 0))])
        yield _family(CounterMetricFamily, "harbour_edge_acked_segments", "Segments the hub acknowledged since start.",
                      [], [([], sync.get("acked_segments", 0))])


def make_render(status: Callable[[], dict[str, Any]], refused: Counter[str]) -> Callable[[], str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EdgeCollector(status, refused))
    return lambda: generate_latest(registry).decode()
