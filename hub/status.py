"""The fleet report: what ``harbour hub status`` prints and ``GET /v1/fleet`` returns.

Per site: registration, last contact; per (site, table): segments and rows committed, rows merged into
the Delta table, segments waiting for the merger, the contiguous seq watermark, gaps and chain breaks
from the manifests' hash chain (G8), and the quarantined segments with the reason each was set aside.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sync_protocol.chain import chain_status

from .ledger import SqliteLedger
from .registry import SiteRegistry


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def fleet_report(ledger: SqliteLedger, registry: SiteRegistry, clock: Callable[[], float]) -> dict:
    now = clock()
    sites: dict[str, dict] = {}
    for row in registry.sites():
        sites[row["site"]] = {
            "site": row["site"],
            "registered": row["revoked_at"] is None,
            "last_contact": _iso(row["last_contact"]),
            "seconds_since_contact": None if row["last_contact"] is None else round(now - row["last_contact"], 1),
            "tables": {},
            "quarantined": [],
        }
    for progress in ledger.progress():
        site = sites.setdefault(progress.site, {
            "site": progress.site, "registered": False, "last_contact": None, "seconds_since_contact": None,
            "tables": {}, "quarantined": [],
        })
        chain = chain_status(progress.links)
        site["tables"][progress.table] = {
            "segments_committed": progress.segments_committed,
            "rows_committed": progress.rows_committed,
            "rows_merged": progress.rows_merged,
            "segments_pending_merge": progress.segments_pending,
            "segments_quarantined": progress.quarantined,
            "watermark": chain.watermark,
            "highest_seq": chain.highest,
            "gaps": [list(gap) for gap in chain.gaps],
            "chain_breaks": list(chain.breaks),
        }
    for entry in ledger.quarantined():
        sites[str(entry.segment.site)]["quarantined"].append({
            "table": str(entry.segment.table), "seq": entry.segment.seq, "reason": entry.reason, "at": _iso(entry.at),
        })
    oldest = ledger.oldest_pending_commit()
    return {
        "generated_at": _iso(now),
        "merge_lag_seconds": 0.0 if oldest is None else round(max(0.0, now - oldest), 3),
        "sites": sorted(sites.values(), key=lambda s: s["site"]),
    }


def format_report(report: dict) -> str:
    """The report as text for a terminal: one line per (site, table), then the quarantine."""
    lines = [f"merge lag: {report['merge_lag_seconds']} s"]
    header = f"{'site':<20} {'table':<20} {'rows merged':>12} {'pending':>8} {'watermark':>10}  gaps  last contact"
    lines.append(header)
    quarantine = []
    for site in report["sites"]:
        state = "" if site["registered"] else " (revoked/unknown)"
        if not site["tables"]:
            lines.append(f"{site['site'] + state:<20} {'-':<20} {0:>12} {0:>8} {0:>10}  -     {site['last_contact']}")
        for table, t in sorted(site["tables"].items()):
            gaps = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in t["gaps"]) or "-"
            if t["chain_breaks"]:
                gaps += " breaks:" + ",".join(map(str, t["chain_breaks"]))
            lines.append(
                f"{site['site'] + state:<20} {table:<20} {t['rows_merged']:>12} {t['segments_pending_merge']:>8} "
                f"{t['watermark']:>10}  {gaps:<5} {site['last_contact']}"
            )
        quarantine += [(site["site"], q) for q in site["quarantined"]]
    lines.append(f"quarantined segments: {len(quarantine)}")
    for site, q in quarantine:
        lines.append(f"  {site}/{q['table']}/{q['seq']}: {q['reason']}")
    return "\n".join(lines)
