"""Prometheus text exposition for ``GET /metrics``.

Counters live in the hub process (they restart at zero, as Prometheus counters may); gauges that
describe the ledger (merge lag, quarantine, segments by state) are read from it at scrape time, so
they are right even for work done before a restart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .ledger import SqliteLedger
from .merger import MergeStats
from .uploads import UploadStats


class RequestMetrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.rejections: Counter[str] = Counter()

    def observe(self, method: str, route: str, status: int) -> None:
        self.requests[(method, route, status)] += 1

    def rejected(self, code: str) -> None:
        self.rejections[code] += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(
    metrics: RequestMetrics, uploads: UploadStats, merges: MergeStats, ledger: SqliteLedger, clock: Callable[[], float],
) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")

    metric("harbour_hub_requests_total", "counter", "HTTP requests by method, route and status.",
           [({"method": m, "route": r, "status": str(s)}, n) for (m, r, s), n in sorted(metrics.requests.items())])
    metric("harbour_hub_rejections_total", "counter", "Rejected requests by error code.",
           [({"code": c}, n) for c, n in sorted(metrics.rejections.items())])
    metric("harbour_hub_received_bytes_total", "counter", "Chunk bytes written to staging.",
           [({}, uploads.bytes_received)])
    metric("harbour_hub_chunks_total", "counter", "Chunks by outcome.",
           [({"outcome": "kept"}, uploads.chunks_kept), ({"outcome": "dropped"}, uploads.chunks_dropped)])
    metric("harbour_hub_segments_committed_total", "counter", "Segments committed to the ledger.",
           [({}, uploads.segments_committed)])
    metric("harbour_hub_segment_digest_failures_total", "counter", "Uploads discarded for a wrong sha256.",
           [({}, uploads.digest_failures)])
    metric("harbour_hub_merged_rows_total", "counter", "Rows appended to the Delta tables.",
           [({}, merges.rows)])
    metric("harbour_hub_merge_commits_total", "counter", "Delta commits made by the merger.",
           [({}, merges.commits)])
    oldest = ledger.oldest_pending_commit()
    lag = 0.0 if oldest is None else max(0.0, clock() - oldest)
    metric("harbour_hub_merge_lag_seconds", "gauge", "Age of the oldest committed segment not yet merged.",
           [({}, round(lag, 3))])
    metric("harbour_hub_quarantined_segments", "gauge", "Segments set aside because they cannot be merged.",
           [({}, len(ledger.quarantined()))])
    return "\n".join(out) + "\n"
