"""``GET /metrics`` through prometheus_client: fleet-wide series and one series per site.

Counters of this process (requests, chunks, merges) restart at zero, as Prometheus counters may. Everything
about the fleet is read at scrape time from the same report ``/v1/fleet`` serves (``hub.status``), so the
series are right after a restart and for work done by another process: per site the last contact, what its
edge last reported (backlog bytes and rows, age of the oldest row not yet at the hub, link state), rows merged,
segments missing (gaps) and quarantined. Those are what the alert rules in docs/operations.md watch: a ship
silent for hours, a backlog that keeps growing, a gap, a quarantine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .merger import MergeStats
from .uploads import UploadStats

LINK_STATES = ("good", "thin", "down", "unknown")


class RequestMetrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.rejections: Counter[str] = Counter()

    def observe(self, method: str, route: str, status: int) -> None:
        self.requests[(method, route, status)] += 1

    def rejected(self, code: str) -> None:
        self.rejections[code] += 1


def _counter(name: str, doc: str, labels: list[str], samples: list[tuple[list[str], float]]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(name: str, doc: str, labels: list[str], samples: list[tuple[list[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


class HubCollector(Collector):
    """Builds every family at scrape time (no state of its own to go stale)."""

    def __init__(self, requests: RequestMetrics, uploads: UploadStats, merges: MergeStats,
                 fleet: Callable[[], dict]) -> None:
        self._requests, self._uploads, self._merges, self._fleet = requests, uploads, merges, fleet

    def collect(self) -> Iterator[Metric]:
        yield from self._process()
        yield from self._sites(self._fleet())

    def _process(self) -> Iterator[Metric]:
        requests, uploads, merges = self._requests, self._uploads, self._merges
        yield _counter("harbour_hub_requests", "HTTP requests by method, route and status.",
                       ["method", "route", "status"],
                       [([m, r, str(s)], n) for (m, r, s), n in sorted(requests.requests.items())])
        yield _counter("harbour_hub_rejections", "Rejected requests by error code.", ["code"],
                       [([c], n) for c, n in sorted(requests.rejections.items())])
        yield _counter("harbour_hub_received_bytes", "Chunk bytes written to staging.", [],
                       [([], uploads.bytes_received)])
        yield _counter("harbour_hub_chunks", "Chunks by outcome.", ["outcome"],
                       [(["kept"], uploads.chunks_kept), (["dropped"], uploads.chunks_dropped)])
        yield _counter("harbour_hub_segments_committed", "Segments committed to the ledger.", [],
                       [([], uploads.segments_committed)])
        yield _counter("harbour_hub_segment_digest_failures", "Uploads discarded for a wrong sha256.", [],
                       [([], uploads.digest_failures)])
        yield _counter("harbour_hub_merged_rows", "Rows appended to the Delta tables by this process.", [],
                       [([], merges.rows)])
        yield _counter("harbour_hub_merge_commits", "Delta commits made by the merger.", [], [([], merges.commits)])

    def _sites(self, report: dict) -> Iterator[Metric]:
        sites = report["sites"]
        yield _gauge("harbour_hub_merge_lag_seconds", "Age of the oldest committed segment not yet merged.", [],
                     [([], report["merge_lag_seconds"])])
        yield _gauge("harbour_hub_quarantined_segments", "Segments set aside because they cannot be merged.", [],
                     [([], sum(len(s["quarantined"]) for s in sites))])
        contact = [([s["site"]], _epoch(s["last_contact"])) for s in sites if s["last_contact"]]
        yield _gauge("harbour_hub_site_last_contact_timestamp_seconds",
                     "When the site last made an authenticated request (Unix time).", ["site"], contact)
        yield _gauge("harbour_hub_site_registered", "1 while the site's token is valid, 0 once revoked.", ["site"],
                     [([s["site"]], 1.0 if s["registered"] else 0.0) for s in sites])
        yield _gauge("harbour_hub_site_token_refused_seconds",
                     "Seconds since a request claiming the site came with a refused token (after its last contact).",
                     ["site"], [([s["site"]], s["seconds_since_token_refused"]) for s in sites
                                if s.get("seconds_since_token_refused") is not None])
        tables = [(s["site"], name, t) for s in sites for name, t in s["tables"].items()]
        yield _counter("harbour_hub_site_rows_merged", "Rows of the site merged into the fleet tables.",
                       ["site", "table"], [([site, name], t["rows_merged"]) for site, name, t in tables])
        yield _gauge("harbour_hub_site_missing_segments", "Segments missing below the highest committed seq (gaps).",
                     ["site", "table"],
                     [([site, name], sum(b - a + 1 for a, b in t["gaps"])) for site, name, t in tables])
        yield _gauge("harbour_hub_site_quarantined_segments", "The site's segments set aside by the merger.",
                     ["site"], [([s["site"]], len(s["quarantined"])) for s in sites])
        reported = [(s["site"], s["backlog"]) for s in sites if s.get("backlog")]
        yield _gauge("harbour_hub_site_backlog_bytes", "Bytes the site's edge still has to send, as it last reported.",
                     ["site"], [([site], b["backlog_bytes"]) for site, b in reported])
        yield _gauge("harbour_hub_site_backlog_rows", "Rows the site's edge still has to send, as it last reported.",
                     ["site"], [([site], b["pending_rows"]) for site, b in reported if b["pending_rows"] is not None])
        yield _gauge("harbour_hub_site_oldest_pending_seconds",
                     "Age of the oldest row the site's edge has not delivered, as it last reported.", ["site"],
                     [([site], b["oldest_pending_seconds"]) for site, b in reported
                      if b["oldest_pending_seconds"] is not None])
        yield _gauge("harbour_hub_site_report_age_seconds", "Seconds since the site's edge last reported.", ["site"],
                     [([site], b["seconds_since_report"]) for site, b in reported])
        yield _gauge("harbour_hub_site_link_state", "The link state the site's edge last reported (1 = current).",
                     ["site", "state"],
                     [([site, state], 1.0 if b["link_state"] == state else 0.0)
                      for site, b in reported for state in LINK_STATES])
        yield from self._downlink(sites)

    def _downlink(self, sites: list[dict]) -> Iterator[Metric]:
        downlink = [(s["site"], s["downlink"]) for s in sites if s.get("downlink")]
        yield _gauge("harbour_hub_site_datasets_pending",
                     "Datasets offered to the site in a newer version than it reports holding.", ["site"],
                     [([site], sum(1 for d in status["datasets"].values() if d["state"] != "in sync"))
                      for site, status in downlink])
        managed = [(site, status["settings"]) for site, status in downlink if status["settings"]["revision"]]
        yield _gauge("harbour_hub_site_settings_pending",
                     "1 while the site reports an older revision of its managed settings than the hub's.", ["site"],
                     [([site], 0.0 if settings["state"][:1] == ["in sync"] else 1.0) for site, settings in managed])
        yield _gauge("harbour_hub_site_settings_refused", "Managed settings the site's edge reports refusing.",
                     ["site"], [([site], len(status["settings"]["refused"])) for site, status in downlink])


def make_render(requests: RequestMetrics, uploads: UploadStats, merges: MergeStats,
                fleet: Callable[[], dict]) -> Callable[[], str]:
    """The ``/metrics`` text, built from a registry of its own (never the process-global default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(requests, uploads, merges, fleet))
    return lambda: generate_latest(registry).decode()
