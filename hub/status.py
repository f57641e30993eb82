"""The fleet report: what ``harbour hub status`` prints and ``GET /v1/fleet`` returns.

Per site: registration, last contact; per (site, table): segments and rows committed, rows merged into
the Delta table, segments waiting for the merger, the contiguous seq watermark, gaps and chain breaks
from the manifests' hash chain (G8), and the quarantined segments with the reason each was set aside.
With a ``SiteReportStore``, also the backlog and link state the site's edge last reported, and the rows
merged since midnight (UTC: the hub serves ships in every time zone, so "today" is the hub's UTC day).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sync_protocol.units import format_size

from .downlink import Downlink
from .ledger import SqliteLedger
from .ledger_summary import DAY_SECONDS
from .registry import SiteRegistry
from .site_reports import SiteReportStore, StoredReport


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _backlog(stored: StoredReport | None, now: float) -> dict | None:
    """The edge's last report as the fleet API shows it; ages use the hub's clock where they can."""
    if stored is None:
        return None
    report = stored.report
    oldest = report.oldest_pending_at
    return {
        "backlog_bytes": report.backlog_bytes,
        "pending_segments": report.pending_segments,
        "pending_rows": report.pending_rows,
        "oldest_pending_seconds": None if oldest is None else round(max(0.0, report.reported_at - oldest), 1),
        "parked_segments": report.parked_segments,
        "link_state": report.link.state,
        "link_rate_bps": report.link.measured_rate_bps,
        "link_rtt_ms": report.link.rtt_ms,
        "link_last_error": report.link.last_error,
        "reported_at": _iso(report.reported_at),
        "received_at": _iso(stored.received_at),
        "seconds_since_report": round(max(0.0, now - stored.received_at), 1),
    }


def _new_site(name: str, registered: bool, last_contact: float | None, now: float,
              token_refused_at: float | None = None) -> dict:
    refused = None
    if token_refused_at is not None and (last_contact is None or token_refused_at > last_contact):
        refused = token_refused_at
    return {
        "site": name,
        "registered": registered,
        "last_contact": _iso(last_contact),
        "seconds_since_contact": None if last_contact is None else round(now - last_contact, 1),
        # the ship tried with a token the hub refused, after its last good contact: not silent, misconfigured
        "seconds_since_token_refused": None if refused is None else round(now - refused, 1),
        "backlog": None,
        "downlink": None,
        "rows_merged_today": 0,
        "tables": {},
        "quarantined": [],
    }


def fleet_report(ledger: SqliteLedger, registry: SiteRegistry, clock: Callable[[], float],
                 reports: SiteReportStore | None = None, downlink: Downlink | None = None) -> dict:
    """With ``downlink``, each site also has ``downlink``: its dataset versions held against the newest offered,
    and its managed settings against what it reported (``hub.downlink.ship_status``)."""
    now = clock()
    sites: dict[str, dict] = {}
    for row in registry.sites():
        sites[row["site"]] = _new_site(row["site"], row["revoked_at"] is None, row["last_contact"], now,
                                       row["token_refused_at"])
    for progress in ledger.progress():
        site = sites.setdefault(progress.site, _new_site(progress.site, False, None, now))
        chain = progress.chain
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
    latest = reports.latest() if reports else {}
    for name, stored in latest.items():
        if name in sites:
            sites[name]["backlog"] = _backlog(stored, now)
    if downlink is not None:
        reported = {name: latest[name].report.downlink if name in latest else None for name in sites}
        for name, status in downlink.fleet_status(reported).items():
            sites[name]["downlink"] = status
    for name, rows in ledger.rows_merged_since(now - now % DAY_SECONDS).items():
        if name in sites:
            sites[name]["rows_merged_today"] = rows
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
    lines.append("backlog reported by the edges:")
    lines += [f"  {site['site']:<20} {_format_backlog(site['backlog'])}" for site in report["sites"]]
    downlink = [(site["site"], site["downlink"]) for site in report["sites"] if site.get("downlink")]
    if any(status["datasets"] or status["settings"]["revision"] for _, status in downlink):
        lines.append("downlink (datasets held/newest offered; managed settings):")
        lines += [f"  {site:<20} {downlink_text(status)}" for site, status in downlink]
    return "\n".join(lines)


def downlink_text(status: dict) -> str:
    """One line: ``offers v2/v3 pending, menus v1/v1; settings revision 3: pending; pinned locally: K=V``."""
    datasets = ", ".join(
        f"{name} v{d['held'] if d['held'] is not None else '-'}/v{d['offered'] if d['offered'] is not None else '-'}"
        + ("" if d["state"] == "in sync" else f" {d['state']}") for name, d in status["datasets"].items())
    settings = status["settings"]
    text = datasets or "no datasets"
    if settings["revision"] or settings["state"]:
        text += f"; settings revision {settings['revision']}: " + "; ".join(settings["state"] or ["not managed"])
    return text


def _format_backlog(backlog: dict | None) -> str:
    if backlog is None:
        return "no report yet (the edge sends one every 30 s while its sync agent runs)"
    text = f"{format_size(backlog['backlog_bytes'])} in {backlog['pending_segments']} segments"
    if backlog["pending_rows"] is not None:
        text += f", {backlog['pending_rows']} rows"
    if backlog["parked_segments"]:
        text += f", {backlog['parked_segments']} parked"
    text += f", link {backlog['link_state']}"
    if backlog["link_last_error"] and backlog["link_state"] == "down":
        text += f" ({backlog['link_last_error'][:80]})"
    return text + f"; reported {backlog['received_at']} ({backlog['seconds_since_report']:.0f} s ago)"
