"""What ``GET /v1/status`` and ``harbour edge status`` report, built the same way for both.

Per table: rows still in the write-ahead log, sealed segments waiting for the hub (pending), parked
ones, acked totals, and the age of the oldest row not yet acked by the hub -- the number a ship's crew
watches to see how far behind the link is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sync_protocol.units import format_size

from . import wal
from .config import DEFAULT_PRIORITY
from .ledger import SegmentLedger, TableCounts
from .quota import Usage


def table_report(counts: TableCounts | None, log: wal.PendingLog, name: str, now: float) -> dict[str, Any]:
    oldest = [ms for ms in (counts.oldest_pending_ms if counts else None, log.first_ms) if ms is not None]
    return {
        "table": name,
        "priority": counts.priority if counts else None,
        "log_rows": log.rows,
        "log_bytes": log.size,
        "pending_segments": counts.pending_segments if counts else 0,
        "pending_rows": (counts.pending_rows if counts else 0) + log.rows,
        "pending_bytes": (counts.pending_bytes if counts else 0) + log.size,
        "parked_segments": counts.parked_segments if counts else 0,
        "acked_segments": counts.acked_segments if counts else 0,
        "acked_rows": counts.acked_rows if counts else 0,
        "oldest_pending_age_seconds": round(max(0.0, now - min(oldest) / 1000), 3) if oldest else None,
        "last_acked_at": counts.last_acked_at if counts else None,
    }


def build_status(
    site: str | None, ledger: SegmentLedger, logs: dict[str, wal.PendingLog], usage: Usage, max_disk: int | None,
    now: float, sync_state: str, ingest: dict[str, int] | None = None,
) -> dict[str, Any]:
    counts = {c.table: c for c in ledger.table_counts()}
    names = sorted(set(counts) | {name for name, log in logs.items() if log.rows})
    acked_times = [c.last_acked_at for c in counts.values() if c.last_acked_at is not None]
    return {
        "site": site,
        "tables": [table_report(counts.get(n), logs.get(n, wal.PendingLog()), n, now) for n in names],
        "last_successful_sync": max(acked_times) if acked_times else None,
        "link": sync_state,
        "disk": {"used_bytes": usage.total, "max_bytes": max_disk, "pending_segment_bytes": usage.pending_segment_bytes,
                 "log_bytes": usage.log_bytes},
        # Writes acknowledged and fsync groups since start: writes per group is group commit at work.
        "ingest": ingest,
        # Segments the hub refused for good, with its reason: fix the cause, then `harbour edge release`.
        "parked": [{"segment": str(segment), "reason": reason} for segment, reason in ledger.parked()],
    }


def backlog_by_class(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pending rows and bytes per priority class, most urgent first: what the link policy holds back."""
    classes: dict[int, dict[str, Any]] = {}
    for table in tables:
        priority = table["priority"] if table["priority"] is not None else DEFAULT_PRIORITY
        entry = classes.setdefault(priority, {"priority": priority, "tables": [], "pending_rows": 0,
                                              "pending_bytes": 0})
        entry["tables"].append(table["table"])
        entry["pending_rows"] += table["pending_rows"]
        entry["pending_bytes"] += table["pending_bytes"]
    return [classes[p] for p in sorted(classes)]


def offline_logs(data_dir: Path) -> dict[str, wal.PendingLog]:
    """Unsealed log contents read from disk, for ``harbour edge status`` (the node may be running: a
    record being appended right now reads as a torn tail and is simply not counted yet)."""
    result = {}
    root = data_dir / "wal"
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        summary = wal.PendingLog()
        for path in wal.list_logs(directory):
            try:
                scan = wal.scan_log(path)
            except FileNotFoundError:  # sealed and deleted while we looked
                continue
            summary.rows += scan.rows
            summary.size += scan.good_bytes
            if scan.first_ms is not None:
                summary.first_ms = min(summary.first_ms or scan.first_ms, scan.first_ms)
        result[directory.name] = summary
    return result


def render_text(report: dict[str, Any]) -> str:
    source = f"asked the running node at {report['node']}" if report.get("source") == "node" else "read from disk"
    head = (f"site {report['site'] or '(none yet)'} ({source})\n{link_line(report)}" if "source" in report
            else f"site {report['site'] or '(none yet)'} -- link: {report['link']}")
    lines = [head,
             f"disk: {format_size(report['disk']['used_bytes'])} used"
             + (f" of {format_size(report['disk']['max_bytes'])}" if report["disk"]["max_bytes"] else "")]
    header = ("table", "pending rows", "pending bytes", "segments", "parked", "acked rows", "oldest pending")
    rows = [header]
    for t in report["tables"]:
        age = t["oldest_pending_age_seconds"]
        rows.append((t["table"], str(t["pending_rows"]), format_size(t["pending_bytes"]), str(t["pending_segments"]),
                     str(t["parked_segments"]), str(t["acked_rows"]), "-" if age is None else f"{age:.0f} s"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += downlink_lines(report)
    if report.get("parked"):
        lines.append(f"parked segments ({len(report['parked'])}): fix the cause, then `harbour edge release`")
        lines += [f"  {p['segment']}: {p['reason'] or 'no reason recorded'}" for p in report["parked"]]
    return "\n".join(lines)


def downlink_lines(report: dict[str, Any]) -> list[str]:
    """Reference datasets on board (and downloads under way), and the managed settings run with."""
    lines = []
    downloads = {d["name"]: d for d in (report.get("sync") or {}).get("downloads", [])}
    for held in report.get("datasets", []):
        rows = "?" if held.get("rows") is None else held["rows"]
        lines.append(f"dataset {held['name']}: version {held['version']}, {format_size(held['size'])}, {rows} rows")
    for name, d in sorted(downloads.items()):
        if d.get("fetching") is not None:
            why = f" -- waiting: {d['waiting']}" if d.get("waiting") else ""
            lines.append(f"dataset {name}: fetching version {d['fetching']} ({format_size(d['offset'] or 0)} of "
                         f"{format_size(d['size'] or 0)}, class {d['priority']}){why}")
    managed = report.get("managed_settings")
    if managed and (managed["applied"] or managed["pinned"] or managed["refused"]):
        parts = [f"managed settings (revision {managed['revision']}):"]
        parts += [f"{k}={v} (from the hub)" for k, v in sorted(managed["applied"].items())]
        parts += [f"{k}={v} (pinned locally)" for k, v in sorted(managed["pinned"].items())]
        parts += [f"{k} refused: {v}" for k, v in sorted(managed["refused"].items())]
        lines.append(" ".join(parts[:1]) + " " + "; ".join(parts[1:]))
    return lines


def link_line(report: dict[str, Any]) -> str:
    """One line on the link, in words: state, rate and round trip, the last error, the backlog and its ETA."""
    if report.get("source") != "node":
        return f"link: unknown -- read from disk: {report.get('why', 'no node answered')}"
    sync = report.get("sync")
    if sync is None:
        return "link: none -- the node runs without --hub and keeps everything on board"
    link = sync.get("link", {})
    parts = [f"link: {link.get('state', 'unknown')}"]
    if link.get("measured_rate"):
        parts.append(("at least " if link.get("rate_is_lower_bound") else "") + link["measured_rate"])
    if link.get("rtt_ms") is not None:
        parts.append(f"RTT {link['rtt_ms']} ms")
    line = ", ".join(parts) + f" (to {sync.get('hub')})"
    if sync.get("hub_problem"):
        line += f"\nproblem: {sync['hub_problem']}"
    elif link.get("last_error") and link.get("state") in ("down", "unknown"):
        line += f"\nlast error: {link['last_error']}"
    backlog = sync.get("backlog_bytes") or 0
    if backlog:
        eta = sync.get("eta_seconds")
        when = f"ETA {eta:.0f} s" if eta and link.get("state") not in ("down", None) else "waiting for a link"
        line += f"\nbacklog: {format_size(backlog)}, {when}; {len(sync.get('in_flight', []))} upload(s) in flight"
    else:
        line += "\nbacklog: nothing to send"
    return line
